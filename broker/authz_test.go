package broker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	packets3 "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/testkit"
	"github.com/parley-im/parley/internal/wire"
)

// The authorization matrix: for every topic pattern and every REST route,
// every kind of user gets exactly the access that docs/protocol.md and
// docs/api.md (with docs/openapi.yaml) promise.
//
// In every group of these tests alice is the owner, bob a member, carol a
// member who was removed, and dave a stranger; erin is a bystander whom
// everybody may write to. The group conversation reads: 1 group.created,
// 2 a message, 3 member.removed (carol), 4 a message carol must never see.

// authzKinds are the authenticated kinds of user, in the order of the want
// columns of the tables.
var authzKinds = []struct{ kind, user string }{
	{"Owner", "alice"}, {"Member", "bob"}, {"Removed", "carol"}, {"Stranger", "dave"},
}

// expiredToken returns a token of user that expired an hour ago.
func expiredToken(t testing.TB, user string) string {
	t.Helper()
	tok, err := (&auth.Tokens{Secret: testSecret}).Sign(user, -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// authzEnv is a broker with ACL "* readwrite devices/{user}/#", a direct
// conversation alice-bob, and watchers: one device per user, subscribed to
// its inbox from the start, that records everything its user receives.
type authzEnv struct {
	*env
	watch map[string]*client
	n     int
	// files are uploads of alice attached in group "files" before carol's
	// removal ({file}) and after it ({later}); partial is a resumable upload
	// of alice in progress ({partial}).
	file, later, partial string
}

func authzSetup(t *testing.T, mod ...func(*broker.Options)) *authzEnv {
	t.Helper()
	// A webhook (which also offers the "webhook" push provider) so that the
	// push routes serve.
	hook := newReceiver(t, []byte("s"))
	e := setup(t, testkit.OpenSQLite(t), append([]func(*broker.Options){withACL(t, "* readwrite devices/{user}/#\n"), func(o *broker.Options) {
		o.WebhookURLs, o.WebhookSecret = []string{hook.srv.URL}, []byte("s")
		o.BlobDir = t.TempDir()
	}}, mod...)...)
	a := &authzEnv{env: e, watch: map[string]*client{}}
	a.file, a.later = a.files(t)
	a.partial = strings.TrimPrefix(e.tusCreate("alice", "text/plain", 10), "/v1/uploads/")
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		a.watch[u] = e.dial(u+"/watch", u, dialOpts{v5: true})
	}
	a.watch["alice"].send("im/send/u/bob", 1, `{"cid":"hello","body":"dm"}`)
	return a
}

// group creates group id with the story told above and waits until carol
// was told of her removal.
func (a *authzEnv) group(t *testing.T, id string, extra ...string) {
	t.Helper()
	members, _ := json.Marshal(append([]string{"bob", "carol"}, extra...))
	if code := a.do("POST", "/v1/groups", "alice", fmt.Sprintf(`{"id":%q,"name":%q,"members":%s}`, id, id, members), nil); code != 201 {
		t.Fatalf("create group %s: %d", id, code)
	}
	if code := a.do("POST", "/v1/conversations/g:"+id+"/messages", "alice", `{"body":"before the removal"}`, nil); code != 201 {
		t.Fatalf("send to %s: %d", id, code)
	}
	if code := a.do("DELETE", "/v1/groups/"+id+"/members/carol", "alice", "", nil); code != 200 {
		t.Fatalf("remove carol from %s: %d", id, code)
	}
	if code := a.do("POST", "/v1/conversations/g:"+id+"/messages", "alice", `{"body":"after the removal"}`, nil); code != 201 {
		t.Fatalf("send to %s: %d", id, code)
	}
}

// files tells the story of group "files" with an attachment before carol's
// removal and one after it, and returns the two upload ids.
func (a *authzEnv) files(t *testing.T) (before, after string) {
	t.Helper()
	if code := a.do("POST", "/v1/groups", "alice", `{"id":"files","name":"F","members":["bob","carol"]}`, nil); code != 201 {
		t.Fatalf("create group files: %d", code)
	}
	send := func() string {
		_, up, _ := a.postFile("alice", "text/plain", []byte("secret"))
		if code := a.do("POST", "/v1/conversations/g:files/messages", "alice", `{"body":"f","attachments":[{"id":"`+up.ID+`","name":"f.txt"}]}`, nil); code != 201 {
			t.Fatalf("send a file to files: %d", code)
		}
		return up.ID
	}
	before = send()
	if code := a.do("DELETE", "/v1/groups/files/members/carol", "alice", "", nil); code != 200 {
		t.Fatalf("remove carol from files: %d", code)
	}
	return before, send()
}

// checkWatchers drains the watchers and checks that nobody received what is
// not theirs: only their own inbox, only their conversations, a removed
// member nothing of the group after its removal, a stranger nothing of the
// groups, and nobody an error event (they never publish).
func (a *authzEnv) checkWatchers(t *testing.T) {
	t.Helper()
	// A fence: a message from zed to each watcher's user, written to the
	// watcher after everything before it. A watcher that receives it is
	// live, so the checks below prove something even when it got nothing
	// else.
	a.n++
	fence := fmt.Sprintf("fence-%d", a.n)
	for user := range a.watch {
		if code := a.do("POST", "/v1/users/"+user+"/messages", "zed", fmt.Sprintf(`{"cid":%q,"body":"fence"}`, fence), nil); code != 201 {
			t.Fatalf("fence to %s: status %d", user, code)
		}
	}
	for user, c := range a.watch {
		for {
			ev := c.next()
			if ev.Kind == "message" && ev.From == "zed" && ev.CID == fence {
				break
			}
			if ev.topic != "im/inbox/"+user {
				t.Errorf("%s's watcher got a delivery on %s: %s", user, ev.topic, ev.raw)
				continue
			}
			if ev.Kind == "error" {
				t.Errorf("%s's watcher got an error event meant for another connection: %s", user, ev.raw)
			}
			if ev.Conv == "" {
				continue
			}
			if rest, ok := strings.CutPrefix(ev.Conv, "dm:"); ok {
				if a, b, _ := strings.Cut(rest, ":"); a != user && b != user {
					t.Errorf("%s got an event of %s: %s", user, ev.Conv, ev.raw)
				}
				continue
			}
			if !strings.HasPrefix(ev.Conv, "g:team") {
				continue // groups made by the matrix itself
			}
			switch {
			case user == "dave" || user == "erin":
				t.Errorf("%s, a stranger, got an event of %s: %s", user, ev.Conv, ev.raw)
			case user == "carol" && ev.Seq > 3:
				t.Errorf("carol, removed at seq 3, got seq %d of %s: %s", ev.Seq, ev.Conv, ev.raw)
			case user == "carol" && ev.Kind != "message" && ev.Kind != "settings":
				t.Errorf("carol, removed, got a %s event of %s: %s", ev.Kind, ev.Conv, ev.raw)
			}
		}
	}
}

// mqttRow is one topic pattern. {self} in topic and payload stands for the
// connecting user and {n} for a number unique in the test. want holds, for
// owner, member, removed and stranger:
//   - subscriptions: "ok" (granted QoS 1) or "refused" (0x80 on MQTT
//     3.1.1; on MQTT 5 0x87 under the prefix, 0x80 for plain filters);
//   - publishes: "ok" (a success ack, no error event), "acl" (refused by
//     the MQTT layer: 0x87 on MQTT 5, disconnected on MQTT 3.1.1, no error
//     event), or a send error code (its reason code on MQTT 5, a normal
//     PUBACK on MQTT 3.1.1, and an error event with the code on both).
type mqttRow struct {
	name    string
	sub     bool
	topic   string
	payload string
	want    [4]string
}

var authzTopics = []mqttRow{
	{name: "SubOwnInbox", sub: true, topic: "im/inbox/{self}", want: same("ok")},
	{name: "SubOwnersInbox", sub: true, topic: "im/inbox/alice", want: [4]string{"ok", "refused", "refused", "refused"}},
	{name: "SubMembersInbox", sub: true, topic: "im/inbox/bob", want: [4]string{"refused", "ok", "refused", "refused"}},
	{name: "SubInboxWildcard", sub: true, topic: "im/inbox/+", want: same("refused")},
	{name: "SubPrefixWildcard", sub: true, topic: "im/#", want: same("refused")},
	// Filters that begin with a wildcard are plain filters: this ACL does
	// not cover them; where one does, they are granted but never deliver
	// Parley's topics (TestWildcardsNeverDeliverParley).
	{name: "SubEverything", sub: true, topic: "#", want: same("refused")},
	{name: "SubAnyPrefix", sub: true, topic: "+/inbox/{self}", want: same("refused")},
	{name: "SubSharedOwnInbox", sub: true, topic: "$share/g/im/inbox/{self}", want: same("refused")},
	{name: "SubSendDirect", sub: true, topic: "im/send/u/{self}", want: same("refused")},
	{name: "SubSendGroup", sub: true, topic: "im/send/g/team", want: same("refused")},
	{name: "SubRead", sub: true, topic: "im/read", want: same("refused")},
	{name: "SubOwnPresence", sub: true, topic: "im/presence/{self}", want: same("ok")},
	{name: "SubOwnersPresence", sub: true, topic: "im/presence/alice", want: [4]string{"ok", "ok", "refused", "refused"}},
	{name: "SubMembersPresence", sub: true, topic: "im/presence/bob", want: [4]string{"ok", "ok", "refused", "refused"}},
	{name: "SubPresenceWildcard", sub: true, topic: "im/presence/+", want: same("refused")},
	{name: "SubOtherPrefixTopic", sub: true, topic: "im/other", want: same("refused")},
	{name: "SubPlainOwn", sub: true, topic: "devices/{self}/#", want: same("ok")},
	{name: "SubPlainOwners", sub: true, topic: "devices/alice/#", want: [4]string{"ok", "refused", "refused", "refused"}},
	{name: "SubPlainUnlisted", sub: true, topic: "plain/topic", want: same("refused")},

	{name: "PubGroup", topic: "im/send/g/team", payload: `{"cid":"g{n}","body":"to the team"}`, want: [4]string{"ok", "ok", "not_member", "not_member"}},
	{name: "PubNoSuchGroup", topic: "im/send/g/nosuch", payload: `{"cid":"x{n}","body":1}`, want: same("no_such_group")},
	{name: "PubBadGroupID", topic: "im/send/g/bad!id", payload: `{"cid":"x{n}","body":1}`, want: same("no_such_group")},
	{name: "PubDirect", topic: "im/send/u/erin", payload: `{"cid":"d{n}","body":"hi erin"}`, want: same("ok")},
	{name: "PubDirectSelf", topic: "im/send/u/{self}", payload: `{"cid":"s{n}","body":1}`, want: same("invalid_peer")},
	{name: "PubDirectBadID", topic: "im/send/u/bad!id", payload: `{"cid":"b{n}","body":1}`, want: same("invalid_peer")},
	{name: "PubEdit", topic: "im/send/g/team", payload: `{"op":"edit","cid":"e{n}","target":2,"body":"edited"}`, want: [4]string{"ok", "not_allowed", "not_member", "not_member"}},
	{name: "PubReact", topic: "im/send/g/team", payload: `{"op":"react","cid":"r{n}","target":2,"emoji":"👍{n}"}`, want: [4]string{"ok", "ok", "not_member", "not_member"}},
	{name: "PubDeleteEvent", topic: "im/send/g/team", payload: `{"op":"delete","cid":"x{n}","target":1}`, want: [4]string{"not_allowed", "not_allowed", "not_member", "not_member"}},
	{name: "PubEditUnknown", topic: "im/send/g/team", payload: `{"op":"edit","cid":"x{n}","target":99,"body":1}`, want: [4]string{"no_such_message", "no_such_message", "not_member", "not_member"}},
	{name: "PubMentionStranger", topic: "im/send/g/team", payload: `{"cid":"x{n}","body":1,"mentions":["dave"]}`, want: [4]string{"invalid_payload", "invalid_payload", "not_member", "not_member"}},
	{name: "PubDeleteOthers", topic: "im/send/g/team", payload: `{"op":"delete","cid":"x{n}","target":4}`, want: [4]string{"ok", "not_allowed", "not_member", "not_member"}},
	{name: "PubReadGroup", topic: "im/read", payload: `{"conv":"g:team","seq":1}`, want: [4]string{"ok", "ok", "not_member", "not_member"}},
	{name: "PubReadDirect", topic: "im/read", payload: `{"conv":"dm:alice:bob","seq":1}`, want: [4]string{"ok", "ok", "not_member", "not_member"}},
	{name: "PubOwnInbox", topic: "im/inbox/{self}", payload: `{"kind":"message","conv":"dm:alice:bob","seq":99,"body":"forged"}`, want: same("acl")},
	{name: "PubOwnersInbox", topic: "im/inbox/alice", payload: `{"kind":"message","conv":"dm:alice:bob","seq":99,"body":"forged"}`, want: same("acl")},
	{name: "PubPresence", topic: "im/presence/{self}", payload: `{"user":"{self}","online":true}`, want: same("acl")},
	{name: "PubOtherPrefixTopic", topic: "im/other", payload: `{}`, want: same("acl")},
	{name: "PubPlainOwn", topic: "devices/{self}/t", payload: `{"t":1}`, want: same("ok")},
	{name: "PubPlainOwners", topic: "devices/alice/t", payload: `{"t":1}`, want: [4]string{"ok", "acl", "acl", "acl"}},
	{name: "PubPlainUnlisted", topic: "plain/topic", payload: `{"t":1}`, want: same("acl")},
}

// TestAuthzTopics runs the topic matrix on MQTT 5 and MQTT 3.1.1.
func TestAuthzTopics(t *testing.T) {
	a := authzSetup(t)
	a.group(t, "team")
	for _, v5 := range []bool{true, false} {
		proto := "V311"
		if v5 {
			proto = "V5"
		}
		t.Run(proto, func(t *testing.T) {
			for ki, k := range authzKinds {
				id := fmt.Sprintf("%s/m%s", k.user, strings.ToLower(proto))
				var c *client
				conn := func() *client {
					if c == nil {
						c = a.dial(id, k.user, dialOpts{v5: v5, noSub: true})
					}
					return c
				}
				for _, row := range authzTopics {
					t.Run(k.kind+"/"+row.name, func(t *testing.T) {
						a.n++
						topic := strings.ReplaceAll(row.topic, "{self}", k.user)
						payload := strings.NewReplacer("{self}", k.user, "{n}", strconv.Itoa(a.n)).Replace(row.payload)
						want := row.want[ki]
						if row.sub {
							checkSub(t, conn(), topic, v5, want)
							return
						}
						if checkPub(t, conn(), topic, payload, v5, want) {
							c = nil // MQTT 3.1.1 disconnected: reconnect for the next row
						}
					})
				}
				if c != nil {
					// Every error event was expected and consumed: a send to
					// oneself is refused with an error event to this
					// connection, after any earlier one.
					a.n++
					fence := fmt.Sprintf("fence-%d", a.n)
					c.publish("im/send/u/"+k.user, 1, fmt.Sprintf(`{"cid":%q,"body":1}`, fence))
					for {
						ev := c.next()
						if ev.Kind != "error" {
							continue
						}
						if ev.CID == fence && ev.Code == "invalid_peer" {
							break
						}
						t.Errorf("%s: unexpected error event %s", id, ev.raw)
					}
				}
			}
		})
	}
	a.checkWatchers(t)
	// The group received exactly, after the four messages of its story, per
	// protocol version: the owner's and the member's sends and reactions,
	// the owner's edit, and the owner's delete of its message 4 (once: the
	// second delete changes nothing).
	var page messagesOut
	if code := a.do("GET", "/v1/conversations/g:team/messages?after=4", "alice", "", &page); code != 200 {
		t.Errorf("g:team after seq 4: status %d", code)
	}
	types := map[string]int{}
	for _, m := range page.Messages {
		types[m.Type]++
		if m.From != "alice" && m.From != "bob" {
			t.Errorf("g:team has a message from %s", m.From)
		}
	}
	if want := map[string]int{"text": 4, "message.edited": 2, "reaction.added": 4, "message.deleted": 1}; fmt.Sprint(types) != fmt.Sprint(want) {
		t.Errorf("g:team after seq 4 holds %v, want %v", types, want)
	}
}

func checkSub(t *testing.T, c *client, filter string, v5 bool, want string) {
	t.Helper()
	got := c.subscribe(filter, 1)
	ok, refused := byte(1), byte(0x80)
	if v5 && (filter == "im" || strings.HasPrefix(filter, "im/") || strings.HasPrefix(strings.ToLower(filter), "$share/g/im/")) {
		refused = 0x87 // Parley's own topics; a plain filter the ACL denies gets 0x80
	}
	switch {
	case want == "ok" && got != ok:
		t.Errorf("SUBACK %#x, want granted QoS 1", got)
	case want == "refused" && got != refused:
		t.Errorf("SUBACK %#x, want %#x", got, refused)
	}
}

// checkPub publishes at QoS 1 and checks the outcome; it reports whether
// the (MQTT 3.1.1) connection is gone.
func checkPub(t *testing.T, c *client, topic, payload string, v5 bool, want string) (gone bool) {
	t.Helper()
	if v5 {
		code, err := c.publish(topic, 1, payload)
		if err != nil {
			t.Fatalf("no PUBACK: %v", err)
		}
		switch want {
		case "ok":
			if code >= 0x80 {
				t.Errorf("PUBACK %#x, want success", code)
			}
		case "acl":
			if code != 0x87 {
				t.Errorf("PUBACK %#x, want 0x87", code)
			}
		default:
			if wantCode := byte(wire.ReasonCode(want).Code); code != wantCode {
				t.Errorf("PUBACK %#x, want %#x (%s)", code, wantCode, want)
			}
			if ev := c.nextKind("error"); ev.Code != want || ev.topic != "im/inbox/"+auth.UserOf(c.id) {
				t.Errorf("error event %s, want code %s on the own inbox", ev.raw, want)
			}
		}
		return false
	}
	tok := c.v3.Publish(topic, 1, false, payload)
	if want == "acl" {
		deadline := time.Now().Add(5 * time.Second)
		for c.v3.IsConnectionOpen() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if c.v3.IsConnectionOpen() {
			t.Errorf("MQTT 3.1.1 client still connected after a refused QoS 1 publish")
		}
		if tok.WaitTimeout(10*time.Millisecond) && tok.Error() == nil {
			t.Errorf("refused publish was acknowledged")
		}
		c.v3.Disconnect(0)
		return true
	}
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("no PUBACK: %v", tok.Error())
	}
	if want != "ok" {
		if ev := c.nextKind("error"); ev.Code != want {
			t.Errorf("error event %s, want code %s", ev.raw, want)
		}
	}
	return false
}

// TestAuthzConnect: without valid credentials there is no connection at
// all, on either protocol version, in default and in open mode (where only
// clients with no credentials at all get in, and never under the prefix).
func TestAuthzConnect(t *testing.T) {
	for _, open := range []bool{false, true} {
		name := "Default"
		if open {
			name = "OpenMode"
		}
		t.Run(name, func(t *testing.T) {
			a := authzSetup(t, func(o *broker.Options) { o.Anonymous = open })
			a.group(t, "team")
			cases := []struct {
				name, id, username, password string
			}{
				{"ExpiredOwner", "alice/x", "alice", expiredToken(t, "alice")},
				{"ExpiredStranger", "dave/x", "dave", expiredToken(t, "dave")},
				{"NoPasswordOwnersName", "alice/x", "alice", ""},
			}
			if !open {
				cases = append(cases, struct{ name, id, username, password string }{"Anonymous", "alice/x", "", ""})
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					if _, ca, err := a.connectV5(tc.id, tc.username, tc.password); err == nil || ca == nil || ca.ReasonCode != 0x86 {
						t.Errorf("MQTT 5: CONNACK %+v, %v; want 0x86", ca, err)
					}
					if tc.password == "" || tc.username != "" { // MQTT 3.1.1 needs a user name with a password
						if _, err := a.connectV3(tc.id, tc.username, tc.password); !errors.Is(err, packets3.ErrorRefusedBadUsernameOrPassword) {
							t.Errorf("MQTT 3.1.1: %v, want %v", err, packets3.ErrorRefusedBadUsernameOrPassword)
						}
					}
				})
			}
			if !open {
				a.checkWatchers(t)
				return
			}
			// Open mode: anonymous clients get in, but nothing under the
			// prefix, whatever client id they claim.
			anon, _, err := a.connectV5("alice/watch", "", "")
			if err != nil {
				t.Fatalf("anonymous connect in open mode: %v", err)
			}
			for _, f := range []string{"im/inbox/alice", "im/inbox/+", "im/#", "im/presence/alice", "$share/g/im/inbox/alice"} {
				if code := anon.subscribe(f, 1); code != 0x87 {
					t.Errorf("anonymous SUBSCRIBE %s: %#x, want 0x87", f, code)
				}
			}
			// A plain filter the ACL denies: 0x80 (see TestPahoSubscribeFailure).
			if code := anon.subscribe("#", 1); code != 0x80 {
				t.Errorf("anonymous SUBSCRIBE #: %#x, want 0x80", code)
			}
			for _, p := range []struct{ topic, payload string }{
				{"im/send/u/alice", `{"cid":"anon","body":1}`}, {"im/send/g/team", `{"cid":"anon","body":1}`},
				{"im/read", `{"conv":"g:team","seq":1}`}, {"im/inbox/alice", `{"kind":"message"}`},
			} {
				if code, err := anon.publish(p.topic, 1, p.payload); err != nil || code != 0x87 {
					t.Errorf("anonymous PUBLISH %s: %#x, %v; want 0x87", p.topic, code, err)
				}
			}
			// The watcher alice/watch was not taken over by the anonymous
			// client with the same id.
			a.watch["alice"].send("im/send/u/bob", 1, `{"cid":"still-here","body":1}`)
			for ev := a.watch["alice"].nextKind("message"); ev.CID != "still-here"; ev = a.watch["alice"].nextKind("message") {
			}
			a.checkWatchers(t)
		})
	}
}

// restRow is one request. In path and body, {g} stands for a fresh group of
// the story above (alice owner, bob member, carol removed, dave a stranger;
// gina and hank members too), {self} for the caller. want holds, for owner,
// member, removed and stranger: "STATUS" or "STATUS CODE"; noToken, for
// anonymous (no Authorization) and an expired token of the owner, where
// they do not get "401 unauthorized".
type restRow struct {
	route   string // the route of broker.Routes() the row exercises, "" for none
	name    string
	path    string
	body    string
	header  []string // extra request headers: name, value...
	want    [4]string
	noToken [2]string
	// check, when set, looks at a 2xx reply.
	check func(t *testing.T, user string, body []byte)
}

// same is a want row in which owner, member, removed and stranger get the
// same answer.
func same(s string) [4]string {
	return [4]string{s, s, s, s}
}

// wantFor returns the want of the row for kinds[ki] of TestAuthzREST: the
// authzKinds, then anonymous and expired.
func (r restRow) wantFor(ki int) string {
	if ki < len(r.want) {
		return r.want[ki]
	}
	if w := r.noToken[ki-len(r.want)]; w != "" {
		return w
	}
	return "401 unauthorized"
}

// historyCheck: the latest messages of a team group, nothing after its
// removal for the removed member.
func historyCheck(t *testing.T, user string, body []byte) {
	var page messagesOut
	mustUnmarshal(t, body, &page)
	if len(page.Messages) == 0 {
		t.Errorf("%s: empty history", user)
	}
	for _, m := range page.Messages {
		if user == "carol" && m.Seq > 3 {
			t.Errorf("carol, removed at seq 3, reads seq %d", m.Seq)
		}
	}
	if user != "carol" && page.Messages[0].Seq < 4 {
		t.Errorf("%s: latest message has seq %d, want 4 or more", user, page.Messages[0].Seq)
	}
}

// convsCheck: the conversations listed (GET /v1/conversations, /v1/sync)
// are the caller's own.
func convsCheck(t *testing.T, user string, body []byte) {
	var out struct {
		Conversations []struct {
			ID       string
			LastSeq  int64 `json:"last_seq"`
			Messages []messageOut
		}
	}
	mustUnmarshal(t, body, &out)
	for _, c := range out.Conversations {
		if rest, ok := strings.CutPrefix(c.ID, "dm:"); ok {
			if a, b, _ := strings.Cut(rest, ":"); a != user && b != user {
				t.Errorf("%s sees %s", user, c.ID)
			}
			continue
		}
		if !strings.HasPrefix(c.ID, "g:team") {
			continue
		}
		switch user {
		case "dave":
			t.Errorf("dave, a stranger, sees %s", c.ID)
		case "carol":
			if c.LastSeq > 3 {
				t.Errorf("carol, removed at seq 3, sees %s up to seq %d", c.ID, c.LastSeq)
			}
			for _, m := range c.Messages {
				if m.Seq > 3 {
					t.Errorf("carol, removed at seq 3, gets seq %d of %s", m.Seq, c.ID)
				}
			}
		}
	}
}

func groupCheck(t *testing.T, user string, body []byte) {
	var g struct {
		Members []struct{ User, Role string }
	}
	mustUnmarshal(t, body, &g)
	var users []string
	for _, m := range g.Members {
		users = append(users, m.User)
	}
	if !slices.Contains(users, user) || slices.Contains(users, "carol") {
		t.Errorf("%s reads members %v", user, users)
	}
}

// The headers of a tus creation of 10 bytes of text and of a PATCH at
// offset 0.
var (
	tusCreateHeader = []string{"Tus-Resumable", "1.0.0", "Upload-Length", "10", "Upload-Metadata", "content_type dGV4dC9wbGFpbg=="}
	tusPatchHeader  = []string{"Tus-Resumable", "1.0.0", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream"}
)

var authzRoutes = []restRow{
	{route: "GET /v1/conversations", path: "/v1/conversations", want: same("200"), check: convsCheck},
	{route: "GET /v1/conversations/{conv}/messages", name: "Group", path: "/v1/conversations/g:{g}/messages", want: [4]string{"200", "200", "200", "403 not_member"}, check: historyCheck},
	{route: "GET /v1/conversations/{conv}/messages", name: "Direct", path: "/v1/conversations/dm:alice:bob/messages", want: [4]string{"200", "200", "403 not_member", "403 not_member"}},
	{route: "GET /v1/conversations/{conv}/messages", name: "NoSuchGroup", path: "/v1/conversations/g:nosuch/messages", want: same("403 not_member")},
	{route: "GET /v1/conversations/{conv}/messages", name: "BadConv", path: "/v1/conversations/nope/messages", want: same("404 not_found")},
	{route: "POST /v1/conversations/{conv}/messages", name: "Group", path: "/v1/conversations/g:{g}/messages", body: `{"cid":"r-{self}","body":1}`, want: [4]string{"201", "201", "403 not_member", "403 not_member"}},
	{route: "POST /v1/conversations/{conv}/messages", name: "Direct", path: "/v1/conversations/dm:alice:bob/messages", body: `{"body":1}`, want: [4]string{"201", "201", "403 not_member", "403 not_member"}},
	{route: "POST /v1/conversations/{conv}/messages", name: "NoSuchGroup", path: "/v1/conversations/g:nosuch/messages", body: `{"body":1}`, want: same("404 no_such_group")},
	{route: "POST /v1/users/{peer}/messages", name: "Bystander", path: "/v1/users/erin/messages", body: `{"body":"hi erin"}`, want: same("201")},
	{route: "POST /v1/users/{peer}/messages", name: "Self", path: "/v1/users/{self}/messages", body: `{"body":1}`, want: same("400 invalid_peer")},
	{route: "GET /v1/conversations/{conv}/messages/{seq}", name: "Group", path: "/v1/conversations/g:{g}/messages/2", want: [4]string{"200", "200", "200", "403 not_member"}},
	{route: "GET /v1/conversations/{conv}/messages/{seq}", name: "AfterRemoval", path: "/v1/conversations/g:{g}/messages/4", want: [4]string{"200", "200", "404 no_such_message", "403 not_member"}},
	{route: "GET /v1/conversations/{conv}/messages/{seq}", name: "Direct", path: "/v1/conversations/dm:alice:bob/messages/1", want: [4]string{"200", "200", "403 not_member", "403 not_member"}},
	{route: "PATCH /v1/conversations/{conv}/messages/{seq}", name: "Group", path: "/v1/conversations/g:{g}/messages/2", body: `{"body":"edited"}`, want: [4]string{"200", "403 not_allowed", "403 not_member", "403 not_member"}},
	{route: "PATCH /v1/conversations/{conv}/messages/{seq}", name: "Event", path: "/v1/conversations/g:{g}/messages/1", body: `{"body":"edited"}`, want: [4]string{"403 not_allowed", "403 not_allowed", "403 not_member", "403 not_member"}},
	{route: "PATCH /v1/conversations/{conv}/messages/{seq}", name: "Direct", path: "/v1/conversations/dm:alice:bob/messages/1", body: `{"body":"edited"}`, want: [4]string{"200", "403 not_allowed", "403 not_member", "403 not_member"}},
	{route: "DELETE /v1/conversations/{conv}/messages/{seq}", name: "Group", path: "/v1/conversations/g:{g}/messages/2", want: [4]string{"200", "403 not_allowed", "403 not_member", "403 not_member"}},
	{route: "DELETE /v1/conversations/{conv}/messages/{seq}", name: "Unknown", path: "/v1/conversations/g:{g}/messages/99", want: [4]string{"404 no_such_message", "404 no_such_message", "403 not_member", "403 not_member"}},
	{route: "PUT /v1/conversations/{conv}/messages/{seq}/reactions/{emoji}", name: "Group", path: "/v1/conversations/g:{g}/messages/2/reactions/%F0%9F%91%8D", want: [4]string{"200", "200", "403 not_member", "403 not_member"}},
	{route: "DELETE /v1/conversations/{conv}/messages/{seq}/reactions/{emoji}", name: "Group", path: "/v1/conversations/g:{g}/messages/2/reactions/%F0%9F%91%8D", want: [4]string{"200", "200", "403 not_member", "403 not_member"}},
	{route: "PUT /v1/conversations/{conv}/settings", name: "Group", path: "/v1/conversations/g:{g}/settings", body: `{"archived":true}`, want: [4]string{"200", "200", "200", "403 not_member"}},
	{route: "PUT /v1/conversations/{conv}/settings", name: "Direct", path: "/v1/conversations/dm:alice:bob/settings", body: `{"pinned":true}`, want: [4]string{"200", "200", "403 not_member", "403 not_member"}},
	{route: "POST /v1/conversations/{conv}/read", name: "Group", path: "/v1/conversations/g:{g}/read", body: `{"seq":1}`, want: [4]string{"200", "200", "403 not_member", "403 not_member"}},
	{route: "POST /v1/conversations/{conv}/read", name: "Direct", path: "/v1/conversations/dm:alice:bob/read", body: `{"seq":1}`, want: [4]string{"200", "200", "403 not_member", "403 not_member"}},
	{route: "POST /v1/conversations/{conv}/read", name: "NoSuchGroup", path: "/v1/conversations/g:nosuch/read", body: `{"seq":0}`, want: same("403 not_member")},
	{route: "GET /v1/conversations/{conv}/receipts", name: "Group", path: "/v1/conversations/g:{g}/receipts", want: [4]string{"200", "200", "403 not_member", "403 not_member"}, check: receiptsCheck},
	{route: "GET /v1/conversations/{conv}/receipts", name: "Direct", path: "/v1/conversations/dm:bob:alice/receipts", want: [4]string{"200", "200", "403 not_member", "403 not_member"}, check: receiptsCheck},
	{route: "GET /v1/conversations/{conv}/receipts", name: "NoSuchGroup", path: "/v1/conversations/g:nosuch/receipts", want: same("403 not_member")},
	{route: "GET /v1/conversations/{conv}/receipts", name: "BadConv", path: "/v1/conversations/nope/receipts", want: same("404 not_found")},
	{route: "GET /v1/sync", path: "/v1/sync", want: same("200"), check: convsCheck},
	{route: "POST /v1/groups", path: "/v1/groups", body: `{"name":"mine"}`, want: same("201")},
	{route: "PUT /v1/devices/{device}/push", name: "Own", path: "/v1/devices/phone/push", body: `{"provider":"webhook","token":"t-{self}"}`, want: same("200")},
	{route: "PUT /v1/devices/{device}/push", name: "OthersDevice", path: "/v1/devices/bob%2Fphone/push", body: `{"provider":"webhook","token":"t"}`, want: same("400 invalid")},
	{route: "PUT /v1/devices/{device}/push", name: "UnknownProvider", path: "/v1/devices/phone/push", body: `{"provider":"fcm","token":"t"}`, want: same("400 invalid")},
	{route: "DELETE /v1/devices/{device}/push", name: "Own", path: "/v1/devices/phone/push", want: same("200")},
	{route: "GET /v1/groups/{id}", path: "/v1/groups/{g}", want: [4]string{"200", "200", "404 not_found", "404 not_found"}, check: groupCheck},
	{route: "GET /v1/groups/{id}", name: "NoSuchGroup", path: "/v1/groups/nosuch", want: same("404 not_found")},
	{route: "PUT /v1/groups/{id}/members/{user}", name: "Add", path: "/v1/groups/{g}/members/frank", body: `{"role":"member"}`, want: [4]string{"200", "403 forbidden", "404 not_found", "404 not_found"}},
	{route: "PUT /v1/groups/{id}/members/{user}", name: "PromoteSelf", path: "/v1/groups/{g}/members/{self}", body: `{"role":"admin"}`, want: [4]string{"403 forbidden", "403 forbidden", "404 not_found", "404 not_found"}},
	{route: "DELETE /v1/groups/{id}/members/{user}", name: "Remove", path: "/v1/groups/{g}/members/gina", want: [4]string{"200", "403 forbidden", "404 not_found", "404 not_found"}},
	{route: "DELETE /v1/groups/{id}/members/{user}", name: "RemoveOwner", path: "/v1/groups/{g}/members/alice", want: [4]string{"403 forbidden", "403 forbidden", "404 not_found", "404 not_found"}},
	{route: "DELETE /v1/groups/{id}/members/{user}", name: "Leave", path: "/v1/groups/{g}/members/{self}", want: [4]string{"403 forbidden", "200", "404 not_found", "404 not_found"}},
	// No Content-Type: refused after authentication.
	{route: "POST /v1/uploads", name: "NoContentType", path: "/v1/uploads", body: "hello", want: same("400 invalid_payload")},
	{route: "GET /v1/files/{id}", name: "BeforeRemoval", path: "/v1/files/{file}", want: [4]string{"200", "200", "200", "404 not_found"}},
	{route: "GET /v1/files/{id}", name: "AfterRemoval", path: "/v1/files/{later}", want: [4]string{"200", "200", "404 not_found", "404 not_found"}},
	{route: "GET /v1/files/{id}", name: "Unknown", path: "/v1/files/fnope", want: same("404 not_found")},
	{route: "GET /v1/files/{id}", name: "BadSignature", path: "/v1/files/{later}?exp=9999999999&sig=00", want: same("404 not_found"), noToken: [2]string{"404 not_found", "404 not_found"}},
	{route: "POST /v1/files/{id}/url", name: "BeforeRemoval", path: "/v1/files/{file}/url", want: [4]string{"200", "200", "200", "404 not_found"}},
	{route: "POST /v1/files/{id}/url", name: "AfterRemoval", path: "/v1/files/{later}/url", want: [4]string{"200", "200", "404 not_found", "404 not_found"}},
	// Resumable uploads (tus): an upload in progress answers its owner
	// only; {fresh} is a new upload of alice for each request. HEAD
	// answers have no body: the status only.
	{route: "POST /v1/uploads", name: "Resumable", path: "/v1/uploads", header: tusCreateHeader, want: same("201")},
	{route: "HEAD /v1/uploads/{id}", path: "/v1/uploads/{partial}", want: [4]string{"200", "404", "404", "404"}},
	{route: "PATCH /v1/uploads/{id}", path: "/v1/uploads/{partial}", header: tusPatchHeader, want: [4]string{"204", "404 not_found", "404 not_found", "404 not_found"}},
	{route: "DELETE /v1/uploads/{id}", path: "/v1/uploads/{fresh}", header: tusPatchHeader, want: [4]string{"204", "404 not_found", "404 not_found", "404 not_found"}},
	{route: "GET /v1/uploads/{id}", name: "Finished", path: "/v1/uploads/{file}", want: [4]string{"200", "404 not_found", "404 not_found", "404 not_found"}},
	{route: "GET /v1/uploads/{id}", name: "InProgress", path: "/v1/uploads/{partial}", want: [4]string{"409 conflict", "404 not_found", "404 not_found", "404 not_found"}},
	{route: "GET /v1/search", path: "/v1/search?q=removal", want: same("200"), check: searchCheck},
	{route: "GET /v1/search", name: "NoWords", path: "/v1/search?q=%20", want: same("400 invalid")},
	{route: "PUT /v1/conversations/{conv}/retention", name: "Group", path: "/v1/conversations/g:{g}/retention", body: `{"seconds":86400}`, want: [4]string{"200", "403 not_allowed", "403 not_member", "403 not_member"}},
	{route: "PUT /v1/conversations/{conv}/retention", name: "Direct", path: "/v1/conversations/dm:alice:bob/retention", body: `{"seconds":0}`, want: [4]string{"200", "200", "403 not_member", "403 not_member"}},
	{route: "PUT /v1/blocks/{user}", path: "/v1/blocks/erin", want: same("200")},
	{route: "PUT /v1/blocks/{user}", name: "Self", path: "/v1/blocks/{self}", want: same("400 invalid_peer")},
	{route: "GET /v1/blocks", path: "/v1/blocks", want: same("200"), check: blocksCheck},
	{route: "DELETE /v1/blocks/{user}", path: "/v1/blocks/erin", want: same("200")},
	{route: "GET /v1/users/me/export", path: "/v1/users/me/export", want: same("200"), check: exportCheck},
	// Last of the routes: it deletes the caller.
	{route: "DELETE /v1/users/me", path: "/v1/users/me", want: same("200")},
	// Not a route: a listed path with another method.
	{name: "GET /v1/groups", path: "/v1/groups", want: same("404 not_found"), noToken: [2]string{"404 not_found", "404 not_found"}},
}

// method reads the method of a row: the route's, or the first word of a
// row without a route.
func (r restRow) method() string {
	if r.route != "" {
		m, _, _ := strings.Cut(r.route, " ")
		return m
	}
	m, _, _ := strings.Cut(r.name, " ")
	return m
}

// TestAuthzREST runs the route matrix: exact statuses and error codes, and
// never data in an error reply.
func TestAuthzREST(t *testing.T) {
	a := authzSetup(t)
	covered := map[string]bool{}
	for _, row := range authzRoutes {
		covered[row.route] = true
	}
	for _, r := range broker.Routes() {
		if !covered[r] {
			t.Errorf("route %s is not in the matrix", r)
		}
	}
	kinds := append(slices.Clone(authzKinds), struct{ kind, user string }{"Anonymous", ""}, struct{ kind, user string }{"Expired", "alice"})
	checked := false
	for _, row := range authzRoutes {
		if row.route == "DELETE /v1/users/me" && !checked {
			// Account deletion disconnects the watchers: check them first.
			a.checkWatchers(t)
			checked = true
		}
		name := row.route
		if name == "" {
			name = row.name
		} else if row.name != "" {
			name += " " + row.name
		}
		t.Run(name, func(t *testing.T) {
			for ki, k := range kinds {
				t.Run(k.kind, func(t *testing.T) {
					a.n++
					g := fmt.Sprintf("team-r%d", a.n)
					if strings.Contains(row.path, "{g}") {
						a.group(t, g, "gina", "hank")
					}
					self := k.user
					if self == "" {
						self = "anonymous"
					}
					fresh := ""
					if strings.Contains(row.path, "{fresh}") {
						fresh = strings.TrimPrefix(a.tusCreate("alice", "text/plain", 10), "/v1/uploads/")
					}
					rp := strings.NewReplacer("{g}", g, "{self}", self, "{file}", a.file, "{later}", a.later, "{partial}", a.partial, "{fresh}", fresh)
					req, err := http.NewRequest(row.method(), a.http+rp.Replace(row.path), strings.NewReader(rp.Replace(row.body)))
					if err != nil {
						t.Fatal(err)
					}
					for i := 0; i+1 < len(row.header); i += 2 {
						req.Header.Set(row.header[i], row.header[i+1])
					}
					switch k.kind {
					case "Anonymous":
					case "Expired":
						req.Header.Set("Authorization", "Bearer "+expiredToken(t, k.user))
					default:
						req.Header.Set("Authorization", "Bearer "+testkit.Token(t, k.user))
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					want := row.wantFor(ki)
					wantStatus, wantCode, _ := strings.Cut(want, " ")
					if got := strconv.Itoa(resp.StatusCode); got != wantStatus {
						t.Fatalf("status %s, want %s: %s", got, want, body)
					}
					if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="parley"`) {
						t.Errorf("401 without WWW-Authenticate: %q", resp.Header.Get("WWW-Authenticate"))
					}
					if row.method() == "HEAD" {
						return // no body
					}
					if resp.StatusCode < 300 {
						if row.check != nil {
							row.check(t, k.user, body)
						}
						return
					}
					// An error reply is the error object and nothing else.
					var reply map[string]json.RawMessage
					mustUnmarshal(t, body, &reply)
					var e apiErr
					mustUnmarshal(t, body, &e)
					if len(reply) != 1 || reply["error"] == nil || e.Error.Code != wantCode || e.Error.Message == "" {
						t.Errorf("error reply %s, want only {\"error\":{\"code\":%q,...}}", body, wantCode)
					}
					switch {
					case k.kind == "Anonymous" && wantStatus == "401" && !strings.Contains(e.Error.Message, "missing"):
						t.Errorf("anonymous: message %q", e.Error.Message)
					case k.kind == "Expired" && wantStatus == "401" && e.Error.Message != "token expired":
						t.Errorf("expired: message %q, want \"token expired\"", e.Error.Message)
					}
				})
			}
		})
	}
	if !checked {
		a.checkWatchers(t)
	}
}

// receiptsCheck: the receipts of a team group list its other current
// members (never carol, removed, nor the caller) without delivered seqs;
// those of dm:alice:bob the other party with one.
func receiptsCheck(t *testing.T, user string, body []byte) {
	var out struct {
		Conv     string
		Hidden   *bool
		Receipts []struct {
			User         string
			ReadSeq      *int64 `json:"read_seq"`
			DeliveredSeq *int64 `json:"delivered_seq"`
		}
	}
	mustUnmarshal(t, body, &out)
	var users []string
	for _, r := range out.Receipts {
		users = append(users, r.User)
		if r.ReadSeq == nil || (r.DeliveredSeq != nil) != (out.Conv == "dm:alice:bob") {
			t.Errorf("%s: receipt of %s in %s: %s", user, r.User, out.Conv, body)
		}
	}
	want := []string{"alice", "bob", "gina", "hank"}
	if out.Conv == "dm:alice:bob" {
		want = []string{"alice", "bob"}
	} else if !strings.HasPrefix(out.Conv, "g:team") {
		t.Errorf("%s: receipts of %s", user, out.Conv)
	}
	want = slices.DeleteFunc(want, func(u string) bool { return u == user })
	if out.Hidden != nil || !slices.Equal(users, want) {
		t.Errorf("%s reads the receipts of %v, want %v: %s", user, users, want, body)
	}
}

// searchCheck: search results are the caller's, and a removed member finds
// nothing of a group after its removal.
func searchCheck(t *testing.T, user string, body []byte) {
	var out struct {
		Results []struct {
			Conv    string
			Seq     int64
			Message messageOut
		}
	}
	mustUnmarshal(t, body, &out)
	for _, r := range out.Results {
		switch {
		case strings.HasPrefix(r.Conv, "g:team") && user == "dave":
			t.Errorf("dave, a stranger, finds %s/%d", r.Conv, r.Seq)
		case strings.HasPrefix(r.Conv, "g:team") && user == "carol" && r.Seq > 3:
			t.Errorf("carol, removed at seq 3, finds %s/%d", r.Conv, r.Seq)
		case strings.HasPrefix(r.Conv, "dm:") && !strings.Contains(r.Conv, ":"+user):
			t.Errorf("%s finds %s", user, r.Conv)
		}
	}
	if user != "dave" && len(out.Results) == 0 {
		t.Errorf("%s finds nothing", user)
	}
}

// blocksCheck: the caller's blocks are erin, blocked by the row before.
func blocksCheck(t *testing.T, user string, body []byte) {
	var out struct{ Blocks []struct{ User string } }
	mustUnmarshal(t, body, &out)
	if len(out.Blocks) != 1 || out.Blocks[0].User != "erin" {
		t.Errorf("%s: blocks %s", user, body)
	}
}

// exportCheck: the export holds the caller's messages only.
func exportCheck(t *testing.T, user string, body []byte) {
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if len(lines) < 2 || lines[len(lines)-1] != `{"record":"end"}` {
		t.Fatalf("%s: export %s", user, body)
	}
	for _, l := range lines {
		var line struct{ Record, From string }
		mustUnmarshal(t, []byte(l), &line)
		if line.Record == "message" && line.From != user {
			t.Errorf("%s exports a message from %s", user, line.From)
		}
	}
}
