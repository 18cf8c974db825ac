package broker_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// nulPayloads are sends that PostgreSQL's text type would refuse (U+0000,
// escaped in JSON, in cid or type) or that are not JSON at all (a raw NUL).
// %d makes each cid unique.
var nulPayloads = []string{
	`{"cid":"a\u0000b%d","body":"x"}`,
	`{"type":"x\u0000","body":"x%d"}`,
	`{"cid":"m%d","type":"t\u0000ext","body":{"t":"x"}}`,
	`{"cid":"\u0000","body":%d}`,
	"{\"cid\":\"raw\x00%d\",\"body\":1}",
}

// TestNULCannotPoisonGroupCommit: while some clients send payloads with
// U+0000 in cid or type, over MQTT v3 and v5 and REST, concurrent legitimate
// sends from other users share their group commits. Every legitimate send is
// acked, stored and delivered, and no legitimate client is disconnected; each
// NUL-carrying send alone is refused with invalid_payload (v5: PUBACK 0x99
// and an error event; v3: a PUBACK and an error event; REST: 400), the same
// on both stores.
func TestNULCannotPoisonGroupCommit(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s)
		const perClient = 20
		bob := e.dial("bob/phone", "bob", dialOpts{v5: true})
		legitMQTT := map[string]*client{
			"v3a": e.dial("v3a/1", "v3a", dialOpts{}),
			"v3b": e.dial("v3b/1", "v3b", dialOpts{}),
			"v5a": e.dial("v5a/1", "v5a", dialOpts{v5: true}),
			"v5b": e.dial("v5b/1", "v5b", dialOpts{v5: true}),
		}
		legitREST := []string{"resta", "restb"}
		mal3 := e.dial("mal3/1", "mal3", dialOpts{})
		mal5 := e.dial("mal5/1", "mal5", dialOpts{v5: true})
		const malREST = "malr"
		members := `["v3a","v5a","resta","mal3","mal5","malr"]`
		if code := e.do("POST", "/v1/groups", "bob", `{"id":"room","name":"Room","members":`+members+`}`, nil); code != 201 {
			t.Fatalf("create group: %d", code)
		}
		inRoom := map[string]bool{"v3a": true, "v5a": true, "resta": true}
		// topic returns where user's i-th send goes: the group every other
		// time for its members, else the direct conversation with bob.
		topic := func(user string, i int) (mqttTopic, restPath, conv string) {
			if inRoom[user] && i%2 == 1 {
				return "im/send/g/room", "/v1/conversations/g:room/messages", "g:room"
			}
			return "im/send/u/bob", "/v1/users/bob/messages", history.DirectConvID(user, "bob")
		}
		for _, c := range append([]*client{bob, mal3, mal5}, legitMQTT["v3a"], legitMQTT["v5a"]) {
			c.nextKind("message") // group.created
		}

		var mu sync.Mutex
		want := map[string][]string{} // conv -> legitimate cids
		record := func(conv, cid string) {
			mu.Lock()
			want[conv] = append(want[conv], cid)
			mu.Unlock()
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		run := func(f func()) {
			wg.Add(1)
			go func() { defer wg.Done(); <-start; f() }()
		}
		for user, c := range legitMQTT {
			run(func() {
				var toks []pahov3.Token
				for i := 0; i < perClient; i++ {
					tp, _, conv := topic(user, i)
					cid := fmt.Sprintf("%s-%d", user, i)
					record(conv, cid)
					payload := fmt.Sprintf(`{"cid":%q,"body":{"text":"hello %d"}}`, cid, i)
					if c.v3 != nil { // pipelined, as a busy v3 client would
						toks = append(toks, c.v3.Publish(tp, 1, false, payload))
						continue
					}
					if code, err := c.publish(tp, 1, payload); err != nil || code != 0 {
						t.Errorf("%s: legitimate send %s: PUBACK %#x, %v", user, cid, code, err)
					}
				}
				for i, tok := range toks {
					if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
						t.Errorf("%s: legitimate send %d not acked: %v", user, i, tok.Error())
					}
				}
			})
		}
		for _, user := range legitREST {
			run(func() {
				for i := 0; i < perClient/2; i++ {
					_, path, conv := topic(user, i)
					cid := fmt.Sprintf("%s-%d", user, i)
					record(conv, cid)
					var m messageOut
					if code := e.do("POST", path, user, fmt.Sprintf(`{"cid":%q,"body":%d}`, cid, i), &m); code != 201 || m.CID != cid {
						t.Errorf("%s: legitimate REST send %s = %d %+v, want 201", user, cid, code, m)
					}
				}
			})
		}
		const attacks = perClient
		run(func() { // v3: acked so that it stops resending, and an error event
			var toks []pahov3.Token
			for i := 0; i < attacks; i++ {
				tp, _, _ := topic("mal3", i)
				toks = append(toks, mal3.v3.Publish(tp, 1, false, fmt.Sprintf(nulPayloads[i%len(nulPayloads)], i)))
			}
			for i, tok := range toks {
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Errorf("mal3: NUL send %d not acked: %v", i, tok.Error())
				}
			}
		})
		run(func() { // v5: PUBACK 0x99
			for i := 0; i < attacks; i++ {
				tp, _, _ := topic("mal5", i)
				if code, err := mal5.publish(tp, 1, fmt.Sprintf(nulPayloads[i%len(nulPayloads)], i)); err != nil || code != 0x99 {
					t.Errorf("mal5: NUL send %d: PUBACK %#x, %v; want 0x99", i, code, err)
				}
			}
		})
		run(func() { // REST: 400 invalid_payload
			for i := 0; i < attacks; i++ {
				_, path, _ := topic(malREST, i)
				var ae apiErr
				if code := e.do("POST", path, malREST, fmt.Sprintf(nulPayloads[i%len(nulPayloads)], i), &ae); code != 400 || ae.Error.Code != "invalid_payload" {
					t.Errorf("malr: NUL send %d = %d %+v, want 400 invalid_payload", i, code, ae)
				}
			}
		})
		close(start)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}

		// Every attacker got one invalid_payload error event per send, and
		// a cid holding U+0000 is never echoed.
		for _, c := range []*client{mal3, mal5} {
			for i := 0; i < attacks; i++ {
				ev := c.nextKind("error")
				if ev.Code != "invalid_payload" || strings.ContainsRune(ev.CID, 0) || strings.Contains(string(ev.raw), `\u0000`) {
					t.Fatalf("%s: error event %s, want invalid_payload without U+0000", c.id, ev.raw)
				}
			}
		}

		// Legitimate clients are still connected and were sent no error.
		for user, c := range legitMQTT {
			if c.v3 != nil && !c.v3.IsConnectionOpen() {
				t.Fatalf("%s was disconnected", user)
			}
			c.send("im/send/u/bob", 1, fmt.Sprintf(`{"cid":"%s-after","body":1}`, user))
			record(history.DirectConvID(user, "bob"), user+"-after")
		}
		if !mal3.v3.IsConnectionOpen() {
			t.Fatal("mal3 was disconnected: a refused v3 send is acked, not dropped")
		}

		// Stored: exactly the legitimate messages, each conversation in the
		// order its sender sent them.
		for conv, cids := range want {
			msgs, err := s.Messages(context.Background(), conv, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			first := int64(0)
			if conv == "g:room" {
				first = 1 // group.created
			}
			got := map[string]bool{}
			for _, m := range msgs[first:] {
				if strings.ContainsRune(m.CID, 0) || strings.ContainsRune(m.Type, 0) || strings.HasPrefix(m.From, "mal") {
					t.Fatalf("%s: stored %+v from an attacker", conv, m)
				}
				got[m.CID] = true
			}
			if len(msgs)-int(first) != len(cids) {
				t.Fatalf("%s: stored %d messages, want %d", conv, len(msgs)-int(first), len(cids))
			}
			for _, cid := range cids {
				if !got[cid] {
					t.Fatalf("%s: %s acked but not stored", conv, cid)
				}
			}
		}

		// Delivered: bob receives every legitimate message and nothing else.
		total := 0
		for _, cids := range want {
			total += len(cids)
		}
		col := newCollector()
		col.start["g:room"] = 2 // group.created was read above
		received := map[string]bool{}
		deadline := time.After(30 * time.Second)
		for col.n < total {
			select {
			case ev := <-bob.events:
				if ev.Kind == "error" {
					t.Fatalf("bob got an error event %s", ev.raw)
				}
				if ev.Kind != "message" {
					continue
				}
				if strings.HasPrefix(ev.From, "mal") {
					t.Fatalf("bob got %s from an attacker", ev.raw)
				}
				col.add(t, ev)
				received[ev.CID] = true
			case <-deadline:
				t.Fatalf("bob received %d of %d messages within 30s", col.n, total)
			}
		}
		var missing []string
		for _, cids := range want {
			for _, cid := range cids {
				if !received[cid] {
					missing = append(missing, cid)
				}
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Fatalf("bob did not receive %v", missing)
		}
		for user, c := range legitMQTT {
			for {
				select {
				case ev := <-c.events:
					if ev.Kind == "error" {
						t.Fatalf("%s got an error event %s", user, ev.raw)
					}
					continue
				default:
				}
				break
			}
		}
	})
}

// TestTextFieldsBothStores: what reaches a text column is refused or kept
// the same way on SQLite and PostgreSQL. A group name or member id with
// U+0000 is refused with 400 invalid; a body, stored as sent (a json column,
// not jsonb, on PostgreSQL), keeps escapes that jsonb would refuse and comes
// back byte for byte.
func TestTextFieldsBothStores(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s)
		bob := e.dial("bob/phone", "bob", dialOpts{v5: true})
		for name, body := range map[string]string{
			"NULInName":     `{"id":"g1","name":"a\u0000b","members":["bob"]}`,
			"NULInMember":   `{"id":"g1","name":"G","members":["bob\u0000"]}`,
			"RawNULInName":  "{\"id\":\"g1\",\"name\":\"a\x00b\"}",
			"NULInGroupID":  `{"id":"g\u0000","name":"G"}`,
			"BadUTF8InName": "{\"id\":\"g1\",\"name\":\"a\xffb\"}",
		} {
			var ae apiErr
			if code := e.do("POST", "/v1/groups", "alice", body, &ae); code != 400 || ae.Error.Code != "invalid" {
				t.Errorf("%s: POST /v1/groups = %d %+v, want 400 invalid", name, code, ae)
			}
		}
		var g struct{ Name string }
		if code := e.do("GET", "/v1/groups/g1", "alice", "", &g); code != 404 {
			t.Fatalf("GET /v1/groups/g1 = %d %+v: a refused group was created", code, g)
		}

		const body = `{"t":"a\u0000b","\u0000":"\ud800","n":[1e400]}`
		if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"cid":"esc","body":`+body+`}`, nil); code != 201 {
			t.Fatalf("POST a body with escapes = %d", code)
		}
		if ev := bob.nextKind("message"); string(ev.Body) != body {
			t.Fatalf("delivered body %s, want %s", ev.Body, body)
		}
		msgs, err := s.Messages(context.Background(), "dm:alice:bob", 0, 10)
		if err != nil || len(msgs) != 1 || string(msgs[0].Body) != body {
			t.Fatalf("stored %+v (%v), want one message with body %s", msgs, err, body)
		}
	})
}
