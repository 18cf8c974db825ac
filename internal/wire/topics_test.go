package wire_test

import (
	"strings"
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
	"github.com/parley-im/parley/internal/wire"
)

// inboxIn is the input of Topics.Inbox.
type inboxIn struct {
	topics wire.Topics
	user   string
}

// prefixed is a topic or filter checked under a prefix ("": the default).
type prefixed struct{ prefix, topic string }

// sendOut, inboxOut and stripOut are the results of ParseSend, ParseInbox
// and StripShare.
type sendOut struct {
	kind, target string
	ok, valid    bool
}

type inboxOut struct {
	user string
	ok   bool
}

type stripOut struct {
	filter string
	shared bool
}

func TestTopicsInbox(t *testing.T) {
	testkit.RunCases(t, "Inbox", []testkit.Case[inboxIn, string]{
		{Name: "DefaultPrefix", In: inboxIn{wire.Topics{}, "alice"}, Want: "im/inbox/alice"},
		{Name: "ExplicitDefault", In: inboxIn{wire.Topics{Prefix: wire.DefaultPrefix}, "alice"}, Want: "im/inbox/alice"},
		{Name: "CustomPrefix", In: inboxIn{wire.Topics{Prefix: "chat"}, "bob@example.com"}, Want: "chat/inbox/bob@example.com"},
	}, func(in inboxIn) string { return in.topics.Inbox(in.user) })
}

func TestTopicsParseSend(t *testing.T) {
	long := strings.Repeat("a", history.MaxIDLen)
	testkit.RunCases(t, "ParseSend", []testkit.Case[prefixed, sendOut]{
		{Name: "User", In: prefixed{"", "im/send/u/bob"}, Want: sendOut{wire.TargetUser, "bob", true, true}},
		{Name: "UserWithAt", In: prefixed{"", "im/send/u/bob@example.com"}, Want: sendOut{wire.TargetUser, "bob@example.com", true, true}},
		{Name: "UserMaxLen", In: prefixed{"", "im/send/u/" + long}, Want: sendOut{wire.TargetUser, long, true, true}},
		{Name: "Group", In: prefixed{"", "im/send/g/team-1"}, Want: sendOut{wire.TargetGroup, "team-1", true, true}},
		{Name: "InvalidPeer", In: prefixed{"", "im/send/u/b*b"}, Want: sendOut{wire.TargetUser, "b*b", true, false}},
		{Name: "PeerTooLong", In: prefixed{"", "im/send/u/" + long + "a"}, Want: sendOut{wire.TargetUser, long + "a", true, false}},
		{Name: "EmptyPeer", In: prefixed{"", "im/send/u/"}, Want: sendOut{wire.TargetUser, "", true, false}},
		{Name: "PeerWithLevels", In: prefixed{"", "im/send/u/bob/phone"}, Want: sendOut{wire.TargetUser, "bob/phone", true, false}},
		{Name: "PeerWildcard", In: prefixed{"", "im/send/u/+"}, Want: sendOut{wire.TargetUser, "+", true, false}},
		{Name: "GroupWithAt", In: prefixed{"", "im/send/g/a@b"}, Want: sendOut{wire.TargetGroup, "a@b", true, false}},
		{Name: "InvalidGroup", In: prefixed{"", "im/send/g/te am"}, Want: sendOut{wire.TargetGroup, "te am", true, false}},
		{Name: "UnknownKind", In: prefixed{"", "im/send/x/bob"}, Want: sendOut{"", "", false, false}},
		{Name: "NoTarget", In: prefixed{"", "im/send/u"}, Want: sendOut{"", "", false, false}},
		{Name: "NoKind", In: prefixed{"", "im/send/"}, Want: sendOut{"", "", false, false}},
		{Name: "Inbox", In: prefixed{"", "im/inbox/bob"}, Want: sendOut{"", "", false, false}},
		{Name: "OtherPrefix", In: prefixed{"", "chat/send/u/bob"}, Want: sendOut{"", "", false, false}},
		{Name: "PrefixOfPrefix", In: prefixed{"", "imx/send/u/bob"}, Want: sendOut{"", "", false, false}},
		{Name: "LeadingSlash", In: prefixed{"", "/im/send/u/bob"}, Want: sendOut{"", "", false, false}},
		{Name: "Empty", In: prefixed{"", ""}, Want: sendOut{"", "", false, false}},
		{Name: "CustomUser", In: prefixed{"chat", "chat/send/u/bob"}, Want: sendOut{wire.TargetUser, "bob", true, true}},
		{Name: "CustomGroup", In: prefixed{"chat", "chat/send/g/team"}, Want: sendOut{wire.TargetGroup, "team", true, true}},
		{Name: "CustomInvalidPeer", In: prefixed{"chat", "chat/send/u/b*b"}, Want: sendOut{wire.TargetUser, "b*b", true, false}},
		{Name: "CustomIgnoresDefault", In: prefixed{"chat", "im/send/u/bob"}, Want: sendOut{"", "", false, false}},
	}, func(in prefixed) sendOut {
		var o sendOut
		o.kind, o.target, o.ok, o.valid = wire.Topics{Prefix: in.prefix}.ParseSend(in.topic)
		return o
	})
}

func TestTopicsParseInbox(t *testing.T) {
	testkit.RunCases(t, "ParseInbox", []testkit.Case[prefixed, inboxOut]{
		{Name: "User", In: prefixed{"", "im/inbox/alice"}, Want: inboxOut{"alice", true}},
		{Name: "UserWithAt", In: prefixed{"", "im/inbox/alice@example.com"}, Want: inboxOut{"alice@example.com", true}},
		{Name: "PlusWildcard", In: prefixed{"", "im/inbox/+"}, Want: inboxOut{"", false}},
		{Name: "HashWildcard", In: prefixed{"", "im/inbox/#"}, Want: inboxOut{"", false}},
		{Name: "ExtraLevel", In: prefixed{"", "im/inbox/alice/x"}, Want: inboxOut{"", false}},
		{Name: "Empty", In: prefixed{"", "im/inbox/"}, Want: inboxOut{"", false}},
		{Name: "NoUser", In: prefixed{"", "im/inbox"}, Want: inboxOut{"", false}},
		{Name: "SendTopic", In: prefixed{"", "im/send/u/alice"}, Want: inboxOut{"", false}},
		{Name: "OtherPrefix", In: prefixed{"", "chat/inbox/alice"}, Want: inboxOut{"", false}},
		{Name: "InvalidUser", In: prefixed{"", "im/inbox/al ice"}, Want: inboxOut{"", false}},
		{Name: "CustomPrefix", In: prefixed{"chat", "chat/inbox/alice"}, Want: inboxOut{"alice", true}},
		{Name: "CustomIgnoresDefault", In: prefixed{"chat", "im/inbox/alice"}, Want: inboxOut{"", false}},
	}, func(in prefixed) inboxOut {
		var o inboxOut
		o.user, o.ok = wire.Topics{Prefix: in.prefix}.ParseInbox(in.topic)
		return o
	})
}

func TestTopicsOwns(t *testing.T) {
	testkit.RunCases(t, "Owns", []testkit.Case[prefixed, bool]{
		{Name: "Prefix", In: prefixed{"", "im"}, Want: true},
		{Name: "Inbox", In: prefixed{"", "im/inbox/alice"}, Want: true},
		{Name: "AnyLevel", In: prefixed{"", "im/whatever"}, Want: true},
		{Name: "Filter", In: prefixed{"", "im/#"}, Want: true},
		{Name: "PrefixOfWord", In: prefixed{"", "imx/inbox/alice"}, Want: false},
		{Name: "Other", In: prefixed{"", "sensors/temp"}, Want: false},
		{Name: "Wildcard", In: prefixed{"", "#"}, Want: false},
		{Name: "Empty", In: prefixed{"", ""}, Want: false},
		{Name: "LeadingSlash", In: prefixed{"", "/im/inbox/alice"}, Want: false},
		{Name: "Shared", In: prefixed{"", "$share/g/im/inbox/a"}, Want: false},
		{Name: "CustomPrefix", In: prefixed{"chat", "chat/inbox/alice"}, Want: true},
		{Name: "CustomIgnoresDefault", In: prefixed{"chat", "im/inbox/alice"}, Want: false},
	}, func(in prefixed) bool { return wire.Topics{Prefix: in.prefix}.Owns(in.topic) })
}

func TestHasWildcards(t *testing.T) {
	testkit.RunCases(t, "HasWildcards", []testkit.Case[string, bool]{
		{Name: "Hash", In: "#", Want: true},
		{Name: "PlusFirst", In: "+/inbox/a", Want: true},
		{Name: "HashLast", In: "im/#", Want: true},
		{Name: "PlusMiddle", In: "im/+/alice", Want: true},
		{Name: "Plain", In: "im/inbox/a", Want: false},
		{Name: "Empty", In: "", Want: false},
		{Name: "Shared", In: "$share/g/im/inbox/a", Want: false},
		{Name: "SharedWildcard", In: "$share/g/im/#", Want: true},
	}, wire.HasWildcards)
}

func TestStripShare(t *testing.T) {
	testkit.RunCases(t, "StripShare", []testkit.Case[string, stripOut]{
		{Name: "Shared", In: "$share/g/im/inbox/a", Want: stripOut{"im/inbox/a", true}},
		{Name: "SharedHash", In: "$share/g/#", Want: stripOut{"#", true}},
		{Name: "SharedSingleLevel", In: "$share/group/sensors", Want: stripOut{"sensors", true}},
		{Name: "NoFilter", In: "$share/g", Want: stripOut{"", true}},
		{Name: "Plain", In: "im/inbox/a", Want: stripOut{"im/inbox/a", false}},
		{Name: "Hash", In: "#", Want: stripOut{"#", false}},
		{Name: "SimilarPrefix", In: "$sharex/g/a", Want: stripOut{"$sharex/g/a", false}},
		{Name: "Sys", In: "$SYS/broker", Want: stripOut{"$SYS/broker", false}},
		{Name: "Empty", In: "", Want: stripOut{"", false}},
	}, func(filter string) stripOut {
		var o stripOut
		o.filter, o.shared = wire.StripShare(filter)
		return o
	})
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

func BenchmarkTopicsParseSend(b *testing.B) {
	t := wire.Topics{}
	for i := 0; i < b.N; i++ {
		if _, _, ok, valid := t.ParseSend("im/send/u/bob"); !ok || !valid {
			b.Fatal("not a send topic")
		}
	}
}
