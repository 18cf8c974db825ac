package wire_test

import (
	"strings"
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

func TestTopicsInbox(t *testing.T) {
	cases := []struct {
		name   string
		topics wire.Topics
		user   string
		want   string
	}{
		{"DefaultPrefix", wire.Topics{}, "alice", "im/inbox/alice"},
		{"ExplicitDefault", wire.Topics{Prefix: wire.DefaultPrefix}, "alice", "im/inbox/alice"},
		{"CustomPrefix", wire.Topics{Prefix: "chat"}, "bob@example.com", "chat/inbox/bob@example.com"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.topics.Inbox(tc.user); got != tc.want {
				t.Fatalf("Inbox(%q) = %q, want %q", tc.user, got, tc.want)
			}
		})
	}
}

func TestTopicsParseSend(t *testing.T) {
	long := strings.Repeat("a", history.MaxIDLen)
	cases := []struct {
		name      string
		prefix    string
		topic     string
		kind      string
		target    string
		ok, valid bool
	}{
		{"User", "", "im/send/u/bob", wire.TargetUser, "bob", true, true},
		{"UserWithAt", "", "im/send/u/bob@example.com", wire.TargetUser, "bob@example.com", true, true},
		{"UserMaxLen", "", "im/send/u/" + long, wire.TargetUser, long, true, true},
		{"Group", "", "im/send/g/team-1", wire.TargetGroup, "team-1", true, true},
		{"InvalidPeer", "", "im/send/u/b*b", wire.TargetUser, "b*b", true, false},
		{"PeerTooLong", "", "im/send/u/" + long + "a", wire.TargetUser, long + "a", true, false},
		{"EmptyPeer", "", "im/send/u/", wire.TargetUser, "", true, false},
		{"PeerWithLevels", "", "im/send/u/bob/phone", wire.TargetUser, "bob/phone", true, false},
		{"PeerWildcard", "", "im/send/u/+", wire.TargetUser, "+", true, false},
		{"GroupWithAt", "", "im/send/g/a@b", wire.TargetGroup, "a@b", true, false},
		{"InvalidGroup", "", "im/send/g/te am", wire.TargetGroup, "te am", true, false},
		{"UnknownKind", "", "im/send/x/bob", "", "", false, false},
		{"NoTarget", "", "im/send/u", "", "", false, false},
		{"NoKind", "", "im/send/", "", "", false, false},
		{"Inbox", "", "im/inbox/bob", "", "", false, false},
		{"OtherPrefix", "", "chat/send/u/bob", "", "", false, false},
		{"PrefixOfPrefix", "", "imx/send/u/bob", "", "", false, false},
		{"LeadingSlash", "", "/im/send/u/bob", "", "", false, false},
		{"Empty", "", "", "", "", false, false},
		{"CustomUser", "chat", "chat/send/u/bob", wire.TargetUser, "bob", true, true},
		{"CustomGroup", "chat", "chat/send/g/team", wire.TargetGroup, "team", true, true},
		{"CustomInvalidPeer", "chat", "chat/send/u/b*b", wire.TargetUser, "b*b", true, false},
		{"CustomIgnoresDefault", "chat", "im/send/u/bob", "", "", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kind, target, ok, valid := wire.Topics{Prefix: tc.prefix}.ParseSend(tc.topic)
			if kind != tc.kind || target != tc.target || ok != tc.ok || valid != tc.valid {
				t.Fatalf("ParseSend(%q) = %q, %q, %v, %v; want %q, %q, %v, %v",
					tc.topic, kind, target, ok, valid, tc.kind, tc.target, tc.ok, tc.valid)
			}
		})
	}
}

func TestTopicsParseInbox(t *testing.T) {
	cases := []struct {
		name   string
		prefix string
		topic  string
		user   string
		ok     bool
	}{
		{"User", "", "im/inbox/alice", "alice", true},
		{"UserWithAt", "", "im/inbox/alice@example.com", "alice@example.com", true},
		{"PlusWildcard", "", "im/inbox/+", "", false},
		{"HashWildcard", "", "im/inbox/#", "", false},
		{"ExtraLevel", "", "im/inbox/alice/x", "", false},
		{"Empty", "", "im/inbox/", "", false},
		{"NoUser", "", "im/inbox", "", false},
		{"SendTopic", "", "im/send/u/alice", "", false},
		{"OtherPrefix", "", "chat/inbox/alice", "", false},
		{"InvalidUser", "", "im/inbox/al ice", "", false},
		{"CustomPrefix", "chat", "chat/inbox/alice", "alice", true},
		{"CustomIgnoresDefault", "chat", "im/inbox/alice", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user, ok := wire.Topics{Prefix: tc.prefix}.ParseInbox(tc.topic)
			if user != tc.user || ok != tc.ok {
				t.Fatalf("ParseInbox(%q) = %q, %v; want %q, %v", tc.topic, user, ok, tc.user, tc.ok)
			}
		})
	}
}

func TestTopicsOwns(t *testing.T) {
	cases := []struct {
		name   string
		prefix string
		topic  string
		want   bool
	}{
		{"Prefix", "", "im", true},
		{"Inbox", "", "im/inbox/alice", true},
		{"AnyLevel", "", "im/whatever", true},
		{"Filter", "", "im/#", true},
		{"PrefixOfWord", "", "imx/inbox/alice", false},
		{"Other", "", "sensors/temp", false},
		{"Wildcard", "", "#", false},
		{"Empty", "", "", false},
		{"LeadingSlash", "", "/im/inbox/alice", false},
		{"Shared", "", "$share/g/im/inbox/a", false},
		{"CustomPrefix", "chat", "chat/inbox/alice", true},
		{"CustomIgnoresDefault", "chat", "im/inbox/alice", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (wire.Topics{Prefix: tc.prefix}).Owns(tc.topic); got != tc.want {
				t.Fatalf("Owns(%q) = %v, want %v", tc.topic, got, tc.want)
			}
		})
	}
}

func TestTopicsMayOverlap(t *testing.T) {
	cases := []struct {
		name   string
		prefix string
		filter string
		want   bool
	}{
		{"Hash", "", "#", true},
		{"PlusInbox", "", "+/inbox/a", true},
		{"PlusOnly", "", "+", true},
		{"PrefixHash", "", "im/#", true},
		{"PrefixPlus", "", "im/+/alice", true},
		{"Sensors", "", "sensors/#", false},
		{"PrefixOfWord", "", "imx/#", false},
		{"SysTopics", "", "$SYS/#", false},
		{"CustomHash", "chat", "#", true},
		{"CustomPrefixHash", "chat", "chat/#", true},
		{"CustomIgnoresDefault", "chat", "im/#", false},
		// Wildcards at the first level never match topics starting with $.
		{"DollarPrefixHash", "$parley", "#", false},
		{"DollarPrefixPlus", "$parley", "+/inbox/a", false},
		{"DollarPrefixOwn", "$parley", "$parley/+/a", true},
		{"DollarPrefixOther", "$parley", "$SYS/#", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (wire.Topics{Prefix: tc.prefix}).MayOverlap(tc.filter); got != tc.want {
				t.Fatalf("MayOverlap(%q) with prefix %q = %v, want %v", tc.filter, tc.prefix, got, tc.want)
			}
		})
	}
}

func TestHasWildcards(t *testing.T) {
	cases := []struct {
		name   string
		filter string
		want   bool
	}{
		{"Hash", "#", true},
		{"PlusFirst", "+/inbox/a", true},
		{"HashLast", "im/#", true},
		{"PlusMiddle", "im/+/alice", true},
		{"Plain", "im/inbox/a", false},
		{"Empty", "", false},
		{"Shared", "$share/g/im/inbox/a", false},
		{"SharedWildcard", "$share/g/im/#", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := wire.HasWildcards(tc.filter); got != tc.want {
				t.Fatalf("HasWildcards(%q) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

func TestStripShare(t *testing.T) {
	cases := []struct {
		name   string
		filter string
		want   string
		shared bool
	}{
		{"Shared", "$share/g/im/inbox/a", "im/inbox/a", true},
		{"SharedHash", "$share/g/#", "#", true},
		{"SharedSingleLevel", "$share/group/sensors", "sensors", true},
		{"NoFilter", "$share/g", "", true},
		{"Plain", "im/inbox/a", "im/inbox/a", false},
		{"Hash", "#", "#", false},
		{"SimilarPrefix", "$sharex/g/a", "$sharex/g/a", false},
		{"Sys", "$SYS/broker", "$SYS/broker", false},
		{"Empty", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, shared := wire.StripShare(tc.filter)
			if got != tc.want || shared != tc.shared {
				t.Fatalf("StripShare(%q) = %q, %v; want %q, %v", tc.filter, got, shared, tc.want, tc.shared)
			}
		})
	}
}

// TestSharedInboxFilter follows a shared subscription filter through the
// steps the ACL check takes: strip the share, then recognise the inbox.
func TestSharedInboxFilter(t *testing.T) {
	var topics wire.Topics
	f, shared := wire.StripShare("$share/g/im/inbox/a")
	if !shared {
		t.Fatalf("StripShare: shared = false, want true")
	}
	if !topics.Owns(f) {
		t.Fatalf("Owns(%q) = false, want true", f)
	}
	if user, ok := topics.ParseInbox(f); !ok || user != "a" {
		t.Fatalf("ParseInbox(%q) = %q, %v; want \"a\", true", f, user, ok)
	}
}

// FuzzParseSend checks that ParseSend never panics, that a valid target is a
// valid id of its kind, and that ok results rebuild the topic.
func FuzzParseSend(f *testing.F) {
	for _, s := range []string{
		"im/send/u/bob", "im/send/u/b*b", "im/send/g/team", "im/send/x/bob", "im/send/u",
		"im/send/u/bob/x", "im/inbox/+", "", "im/send/", "im/send//",
	} {
		f.Add("", s)
	}
	f.Add("chat", "chat/send/u/bob")
	f.Fuzz(func(t *testing.T, prefix, topic string) {
		topics := wire.Topics{Prefix: prefix}
		kind, target, ok, valid := topics.ParseSend(topic)
		if !ok {
			if kind != "" || target != "" || valid {
				t.Fatalf("ParseSend(%q) = %q, %q, false, %v; want empty results when not ok", topic, kind, target, valid)
			}
			return
		}
		p := prefix
		if p == "" {
			p = wire.DefaultPrefix
		}
		if got := p + "/send/" + kind + "/" + target; got != topic {
			t.Fatalf("ParseSend(%q): rebuilt topic %q differs", topic, got)
		}
		switch kind {
		case wire.TargetUser:
			if valid != history.ValidUserID(target) {
				t.Fatalf("ParseSend(%q): valid = %v for user %q", topic, valid, target)
			}
		case wire.TargetGroup:
			if valid != history.ValidGroupID(target) {
				t.Fatalf("ParseSend(%q): valid = %v for group %q", topic, valid, target)
			}
		default:
			t.Fatalf("ParseSend(%q): kind = %q, want u or g", topic, kind)
		}
		if valid && strings.ContainsAny(target, "/+#") {
			t.Fatalf("ParseSend(%q): valid target %q contains a topic separator or wildcard", topic, target)
		}
	})
}
