package auth_test

import (
	"strings"
	"testing"

	"github.com/parley-im/parley/internal/auth"
)

// parseACL parses text as an ACL file and fails the test on error.
func parseACL(t testing.TB, text string) *auth.ACL {
	t.Helper()
	acl, err := auth.ParseACL(strings.NewReader(text))
	if err != nil {
		t.Fatalf("ParseACL: %v", err)
	}
	return acl
}

func TestParseACLErrors(t *testing.T) {
	cases := []struct {
		name string
		text string
		want []string // substrings of the error
	}{
		{"TwoFields", "alice read\n", []string{"acl: line 1:", "want USER ACCESS FILTER"}},
		{"FourFields", "alice read a/# extra\n", []string{"line 1:", "want USER ACCESS FILTER"}},
		{"OneField", "# comment\n\nalice\n", []string{"line 3:"}},
		{"BadAccess", "alice readonly a/#\n", []string{"line 1:", `"readonly"`}},
		{"AccessIsCaseSensitive", "alice READ a/#\n", []string{"line 1:", `"READ"`}},
		{"HashInMiddle", "* read a/#/b\n", []string{"line 1:", `invalid topic filter "a/#/b"`}},
		{"HashInLevel", "* read a/b#\n", []string{"line 1:", "invalid topic filter"}},
		{"PlusInLevel", "* read a/b+/c\n", []string{"line 1:", "invalid topic filter"}},
		{"UserPlaceholderInLevel", "* read devices/{user}+\n", []string{"line 1:", "invalid topic filter"}},
		{"LineNumberCountsCommentsAndBlanks", "# rules\n\n* readwrite devices/{user}/#\n   \nalice read sensors/#\nbob deny a/#/b\n",
			[]string{"acl: line 6:", `"a/#/b"`}},
		{"FirstErrorWins", "* read ok/#\nalice bogus x\n* read a/#/b\n", []string{"line 2:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acl, err := auth.ParseACL(strings.NewReader(tc.text))
			if err == nil {
				t.Fatalf("ParseACL(%q) = %v, nil; want an error", tc.text, acl)
			}
			if acl != nil {
				t.Fatalf("ParseACL(%q) returned a non-nil ACL with error %v", tc.text, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("ParseACL(%q) error %q does not contain %q", tc.text, err, w)
				}
			}
		})
	}
}

func TestParseACLOK(t *testing.T) {
	cases := []struct {
		name string
		text string
	}{
		{"Empty", ""},
		{"CommentsAndBlanks", "# only comments\n\n   \n\t# indented comment\n"},
		{"AllAccessWords", "a read x\nb write x\nc readwrite x\nd deny x\n"},
		{"TabsAndSpaces", "  alice\tread\t\tsensors/#  \n"},
		{"CRLF", "alice read sensors/#\r\n* deny #\r\n"},
		{"NoTrailingNewline", "* readwrite devices/{user}/#"},
		{"Wildcards", "* read +/+/#\n* read #\n* read +\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.ParseACL(strings.NewReader(tc.text)); err != nil {
				t.Fatalf("ParseACL(%q): %v", tc.text, err)
			}
		})
	}
}

func TestACLAllow(t *testing.T) {
	acl := parseACL(t, `
# Everyone owns their devices tree, except the locked part.
*       deny       devices/{user}/locked/#
*       readwrite  devices/{user}/#
alice   read       sensors/#
bob     write      sensors/bob/+
*       read       public/+/news
carol   deny       shared/#
*       readwrite  shared/#
*       read       $SYS/broker/uptime
*       read       #
`)
	cases := []struct {
		name  string
		user  string
		topic string
		write bool
		want  bool
	}{
		{"OwnDeviceWrite", "alice", "devices/alice/t", true, true},
		{"OwnDeviceRead", "alice", "devices/alice/t", false, true},
		{"OwnDeviceRoot", "alice", "devices/alice", true, true},
		{"OtherDeviceWrite", "alice", "devices/bob/t", true, false},
		{"OtherDeviceRead", "alice", "devices/bob/t", false, true}, // only by the final "* read #"
		{"UserWithAt", "a@b.c", "devices/a@b.c/t", true, true},
		{"DenyBeforeReadwrite", "alice", "devices/alice/locked/x", true, false},
		{"DenyBeforeReadwriteRead", "alice", "devices/alice/locked/x", false, false},
		{"ReadOnlyRule", "alice", "sensors/temp", false, true},
		{"ReadOnlyRuleRefusesWrite", "alice", "sensors/temp", true, false},
		{"WriteOnlyRule", "bob", "sensors/bob/temp", true, true},
		{"WriteOnlyRuleRefusesRead", "bob", "sensors/bob/temp", false, false},
		{"WriteOnlyRuleOtherLevel", "bob", "sensors/bob/a/b", true, false},
		{"PlusRule", "dave", "public/eu/news", false, true},
		{"PlusRuleWrite", "dave", "public/eu/news", true, false},
		{"UserDeny", "carol", "shared/x", true, false},
		{"UserDenyOtherUser", "dave", "shared/x", true, true},
		{"CatchAllRead", "erin", "anything/at/all", false, true},
		{"CatchAllWrite", "erin", "anything/at/all", true, false},
		{"SysExact", "erin", "$SYS/broker/uptime", false, true},
		{"SysNotCoveredByHash", "erin", "$SYS/broker/clients", false, false},
		// Wildcard subscriptions are allowed only when a rule covers all of them.
		{"SubOwnPlus", "alice", "devices/alice/+/temp", false, true},
		{"SubOwnHash", "alice", "devices/alice/#", false, true},
		{"SubOwnHashWrite", "alice", "devices/alice/#", true, true},
		{"SubAllDevicesWrite", "alice", "devices/+/temp", true, false},
		{"SubEverythingWrite", "alice", "#", true, false},
		{"SubPlusNewsRead", "dave", "public/+/news", false, true},
		{"SubPublicHashRead", "dave", "public/#", false, true}, // by "* read #"
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := acl.Allow(tc.user, tc.topic, tc.write); got != tc.want {
				t.Fatalf("Allow(%q, %q, write=%v) = %v, want %v", tc.user, tc.topic, tc.write, got, tc.want)
			}
		})
	}
}

// TestACLAllowCovers checks wildcard subscriptions against ACLs of a single
// rule, so that no later rule can grant them.
func TestACLAllowCovers(t *testing.T) {
	own := parseACL(t, "* readwrite devices/{user}/#\n")
	rooms := parseACL(t, "* read rooms/+/messages\n")
	cases := []struct {
		name   string
		acl    *auth.ACL
		filter string
		want   bool
	}{
		{"Exact", own, "devices/alice/x", true},
		{"Root", own, "devices/alice", true},
		{"OwnPlus", own, "devices/alice/+/temp", true},
		{"OwnHash", own, "devices/alice/#", true},
		{"OwnDeepHash", own, "devices/alice/a/b/#", true},
		{"AnyUser", own, "devices/+/temp", false},
		{"AnyUserHash", own, "devices/+/#", false},
		{"Everything", own, "#", false},
		{"PlusFirst", own, "+/alice/x", false},
		{"DevicesHash", own, "devices/#", false},
		{"OtherUser", own, "devices/bob/x", false},
		{"UserPrefix", own, "devices/alice2/x", false},
		{"Sys", own, "$SYS/devices/alice", false},
		// A single-level rule: rooms/+/messages.
		{"SingleLevelExact", rooms, "rooms/a/messages", true},
		{"SingleLevelPlus", rooms, "rooms/+/messages", true},
		{"SingleLevelExtraLevel", rooms, "rooms/a/messages/x", false},
		{"SingleLevelMissingLevel", rooms, "rooms/a", false},
		{"SingleLevelHashForPlus", rooms, "rooms/#", false},
		{"SingleLevelHashAtEnd", rooms, "rooms/a/#", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.acl.Allow("alice", tc.filter, false); got != tc.want {
				t.Fatalf("Allow(alice, %q) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

func TestACLDeniesByDefault(t *testing.T) {
	t.Run("NilACL", func(t *testing.T) {
		var acl *auth.ACL
		if acl.Allow("alice", "anything", false) {
			t.Fatal("nil ACL allowed a read")
		}
		if acl.Allow("alice", "anything", true) {
			t.Fatal("nil ACL allowed a write")
		}
	})
	t.Run("EmptyACL", func(t *testing.T) {
		acl := parseACL(t, "# nothing\n")
		if acl.Allow("alice", "anything", false) {
			t.Fatal("empty ACL allowed a read")
		}
	})
	t.Run("NoMatchingRule", func(t *testing.T) {
		acl := parseACL(t, "bob readwrite a/#\n")
		if acl.Allow("alice", "a/b", false) {
			t.Fatal("a rule for bob allowed alice")
		}
		if !acl.Allow("bob", "a/b", false) {
			t.Fatal("a rule for bob did not allow bob")
		}
	})
}

// FuzzACL parses arbitrary ACL text and checks arbitrary topics against it:
// neither may panic, and a leading "* deny #" must deny every topic that
// wildcards can match.
func FuzzACL(f *testing.F) {
	f.Add("* readwrite devices/{user}/#\nalice read sensors/#\n", "alice", "devices/alice/+/temp", false)
	f.Add("*       deny       secret/#\n* read #\n", "bob", "secret/x", true)
	f.Add("# comment\n\nalice read a/#/b\n", "alice", "a/b", false)
	f.Add("* read $SYS/#\n", "alice", "$SYS/x", false)
	f.Add("* read +/+\n", "", "/", true)
	f.Fuzz(func(t *testing.T, text, user, topic string, write bool) {
		acl, err := auth.ParseACL(strings.NewReader(text))
		if err != nil {
			if acl != nil {
				t.Fatalf("ParseACL returned an ACL with error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "acl: ") {
				t.Fatalf("ParseACL error %q lacks the acl: prefix", err)
			}
			return
		}
		acl.Allow(user, topic, write)

		denied, err := auth.ParseACL(strings.NewReader("* deny #\n" + text))
		if err != nil {
			t.Fatalf("ParseACL accepted %q but not with a leading deny rule: %v", text, err)
		}
		if !strings.HasPrefix(topic, "$") && denied.Allow(user, topic, write) {
			t.Fatalf("Allow(%q, %q, write=%v) = true despite a leading \"* deny #\"", user, topic, write)
		}
	})
}

func BenchmarkACLAllow(b *testing.B) {
	acl, err := auth.ParseACL(strings.NewReader("* deny secret/#\nalice read sensors/#\n* readwrite devices/{user}/#\n"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if !acl.Allow("bob", "devices/bob/kitchen/temp", true) {
			b.Fatal("denied")
		}
	}
}
