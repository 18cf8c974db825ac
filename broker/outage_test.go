package broker_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/testkit"
)

func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within 30s", url, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDatabaseOutage stops PostgreSQL under a running broker: /readyz turns
// 503, publishes get no success ack (v5: 0x80, v3: no ack and a closed
// connection), and once PostgreSQL is back /readyz turns 200 without a
// restart, retries with the same cid succeed, and the store holds every
// acknowledged message once with seqs 1..N.
func TestDatabaseOutage(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	store := testkit.OpenPostgres(t, cluster.DB(t))
	e := setup(t, store)
	alice5, alice3, bob := e.dialV5("alice/5", "alice"), e.dialV3("alice/3", "alice"), e.dialV5("bob", "bob")
	waitStatus(t, e.http+"/readyz", 200)

	alice5.send("im/send/u/bob", 1, `{"cid":"before","body":1}`)
	if ev := bob.nextKind("message"); ev.Seq != 1 {
		t.Fatalf("bob: %+v", ev)
	}

	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e.http+"/readyz", 503)

	var restErr apiErr
	if code := e.do("GET", "/v1/conversations", "alice", "", &restErr); code != 503 || restErr.Error.Code != "unavailable" {
		t.Fatalf("REST during outage: %d %+v", code, restErr)
	}
	if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"cid":"rest","body":0}`, &restErr); code != 503 || restErr.Error.Code != "unavailable" {
		t.Fatalf("REST send during outage: %d %+v", code, restErr)
	}
	code, err := alice5.publish("im/send/u/bob", 1, `{"cid":"during5","body":2}`)
	if err != nil || code != 0x80 {
		t.Fatalf("v5 publish during outage: code %#x, %v; want 0x80", code, err)
	}
	if ev := alice5.nextKind("error"); ev.Code != "unavailable" || ev.CID != "during5" {
		t.Fatalf("v5 error event = %+v", ev)
	}
	code, err = alice5.publish("im/send/u/bob", 2, `{"cid":"during5q2","body":3}`)
	if err != nil || code != 0x80 {
		t.Fatalf("v5 QoS 2 publish during outage: code %#x, %v; want 0x80", code, err)
	}
	if _, err := alice3.publish("im/send/u/bob", 1, `{"cid":"during3","body":4}`); err == nil {
		t.Fatal("v3 publish during outage was acknowledged")
	}
	deadline := time.Now().Add(5 * time.Second)
	for alice3.v3.IsConnectionOpen() {
		if time.Now().After(deadline) {
			t.Fatal("v3 client still connected after an unacknowledged publish")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e.http+"/readyz", 200)

	// Retries with the same cids succeed, in the order the apps resend them.
	alice5.send("im/send/u/bob", 1, `{"cid":"during5","body":2}`)
	alice5.send("im/send/u/bob", 2, `{"cid":"during5q2","body":3}`)
	alice3 = e.dialV3("alice/3", "alice")
	alice3.send("im/send/u/bob", 1, `{"cid":"during3","body":4}`)
	alice3.send("im/send/u/bob", 1, `{"cid":"during3","body":4}`) // and once more: no duplicate

	for i, cid := range []string{"during5", "during5q2", "during3"} {
		ev := bob.nextKind("message")
		if ev.CID != cid || ev.Seq != int64(i+2) {
			t.Fatalf("bob got %+v, want cid %s seq %d", ev, cid, i+2)
		}
	}
	bob.quiet(200 * time.Millisecond)
	msgs, err := store.Messages(context.Background(), "dm:alice:bob", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("seq gap at %d: %d", i, m.Seq)
		}
		got = append(got, m.CID)
	}
	if fmt.Sprint(got) != "[before during5 during5q2 during3]" {
		t.Fatalf("stored %v", got)
	}
}
