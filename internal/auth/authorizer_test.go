package auth_test

import (
	"strings"
	"testing"

	"github.com/parley-im/parley/internal/auth"
)

// FuzzAuthACLCheck checks every publish, subscription and delivery decision
// of the Auth hook (without an ACL file, store or open mode) against the
// rules of docs/protocol.md, derived here independently: nothing outside the
// prefix is allowed; under the prefix (or for a filter whose first level is
// a wildcard), no shared subscription and no wildcard filter is allowed, a
// publish only to im/send/u/..., im/send/g/... or im/read, and a
// subscription or delivery only on the client's own inbox or own presence.
func FuzzAuthACLCheck(f *testing.F) {
	for _, s := range []struct {
		id, topic string
		write     bool
	}{
		{"alice/phone", "im/inbox/alice", false},
		{"alice", "im/inbox/bob", false},
		{"alice", "im/inbox/+", false},
		{"alice", "+/inbox/alice", false},
		{"alice", "#", false},
		{"alice", "$share/g/im/inbox/alice", false},
		{"alice", "$share/g/#", false},
		{"alice", "$SHARE/g/im/inbox/alice", false},
		{"alice", "$Share/g/#", false},
		{"alice", "im/send/u/bob", true},
		{"alice", "im/send/u/bob", false},
		{"alice", "im/send/g/team/x", true},
		{"alice", "im/read", true},
		{"alice", "im/presence/alice", false},
		{"alice", "im/presence/bob", false},
		{"alice", "im/inbox/alice", true},
		{"alice", "devices/alice/t", true},
		{"alice", "im", false},
		{"alice/", "im/inbox/alice/", false},
		{"a:b", "im/inbox/a:b", false},
	} {
		f.Add(s.id, s.topic, s.write)
	}
	authz := &auth.Authorizer{}
	open := &auth.Authorizer{Anonymous: true}
	f.Fuzz(func(t *testing.T, id, topic string, write bool) {
		// In open mode too, nothing under the prefix or beginning with $
		// is delivered other than through a direct subscription.
		if (strings.HasPrefix(topic, "im/") || strings.HasPrefix(topic, "$")) && open.AllowDelivery(id, topic, false) {
			t.Fatalf("%s would receive %q through a wildcard", id, topic)
		}
		allowed := authz.Allow(id, topic, write)
		if !allowed {
			return
		}
		user, _, _ := strings.Cut(id, "/")
		eff, shared := topic, false
		if len(topic) >= 7 && strings.EqualFold(topic[:7], "$share/") {
			shared = true
			_, eff, _ = strings.Cut(topic[7:], "/")
		}
		first, _, _ := strings.Cut(eff, "/")
		if first != "im" && first != "+" && first != "#" {
			t.Fatalf("%s may %s %q outside the prefix without an ACL", id, verb(write), topic)
		}
		// (Topic names with wildcards never reach a publish check: the MQTT
		// layer refuses them first.)
		if shared || (!write && strings.ContainsAny(eff, "+#")) {
			t.Fatalf("%s may %s the filter %q under the prefix", id, verb(write), topic)
		}
		if write {
			if eff != "im/read" && !strings.HasPrefix(eff, "im/send/u/") && !strings.HasPrefix(eff, "im/send/g/") {
				t.Fatalf("%s may publish to %q", id, topic)
			}
			return
		}
		if eff != "im/inbox/"+user && eff != "im/presence/"+user {
			t.Fatalf("%s (user %q) may read %q", id, user, topic)
		}
	})
}

func verb(write bool) string {
	if write {
		return "publish to"
	}
	return "read"
}

// TestWillChecks: a will is allowed only on a topic outside the prefix that
// the client may publish to, and OnWill sends a will that is not allowed to
// the void topic without its payload.
func TestWillChecks(t *testing.T) {
	acl, err := auth.ParseACL(strings.NewReader("* readwrite chat/#\nalice write alerts/alice\n* read alerts/#\n"))
	if err != nil {
		t.Fatal(err)
	}
	authz := &auth.Authorizer{ACL: acl}
	for _, c := range []struct {
		id, topic string
		ok        bool
	}{
		{"alice", "chat/room", true},
		{"alice", "alerts/alice", true},
		{"bob", "alerts/alice", false},
		{"alice", "im/inbox/bob", false},
		{"alice", "im/presence/alice", false},
		{"alice", "im/send/u/bob", false},
		{"alice", "im/read", false},
		{"alice", "im", false},
		{"alice", "chat/+", false},
		{"alice", "chat/#", false},
		{"alice", "$SYS/x", false},
		{"alice", "$share/g/chat/room", false},
		{"alice", auth.VoidTopic, false},
		{"alice", "", false},
		{"alice", "other/x", false},
	} {
		if got := authz.WillAllowed(c.id, c.topic); got != c.ok {
			t.Errorf("WillAllowed(%s, %q) = %v, want %v", c.id, c.topic, got, c.ok)
		}
		if authz.Allow(c.id, auth.VoidTopic, false) {
			t.Errorf("%s may subscribe to the void topic", c.id)
		}
	}
}

// TestAllowDelivery: in open mode a filter beginning with a wildcard is a
// plain filter and granted, but a topic under the prefix (or a $ topic) is
// delivered only through a direct subscription, never through a wildcard;
// another user's inbox stays refused either way.
func TestAllowDelivery(t *testing.T) {
	acl, err := auth.ParseACL(strings.NewReader("* deny test/nosubscribe\n* readwrite #\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, authz := range []*auth.Authorizer{{Anonymous: true}, {Anonymous: true, ACL: acl}} {
		for _, c := range []struct {
			name, id, topic string
			direct, want    bool
		}{
			{"PlainThroughWildcard", "anon:x", "sensors/1", false, true},
			{"OwnInboxThroughWildcard", "alice", "im/inbox/alice", false, false},
			{"OwnInboxDirect", "alice", "im/inbox/alice", true, true},
			{"OthersInboxDirect", "alice", "im/inbox/bob", true, false},
			{"OwnPresenceThroughWildcard", "alice", "im/presence/alice", false, false},
			{"AnonInbox", "anon:alice", "im/inbox/alice", false, false},
			{"SysThroughWildcard", "anon:x", "$SYS/broker/uptime", false, false},
		} {
			if got := authz.AllowDelivery(c.id, c.topic, c.direct); got != c.want {
				t.Errorf("%s: AllowDelivery(%s, %s, %v) = %v, want %v", c.name, c.id, c.topic, c.direct, got, c.want)
			}
		}
		for _, f := range []string{"#", "+/+", "+/inbox/alice", "$share/g/#"} {
			if !authz.Allow("alice", f, false) || !authz.Allow("anon:x", f, false) {
				t.Errorf("subscribe %s refused in open mode", f)
			}
		}
		for _, f := range []string{"im/#", "im/inbox/+", "im/inbox/bob", "$share/g/im/inbox/alice"} {
			if authz.Allow("alice", f, false) {
				t.Errorf("alice may subscribe %s", f)
			}
		}
		if authz.ACL != nil && authz.Allow("anon:x", "test/nosubscribe", false) {
			t.Error("the ACL's deny rule did not refuse test/nosubscribe")
		}
	}
}
