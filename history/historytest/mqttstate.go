package historytest

import (
	"context"
	"testing"

	"github.com/parley-im/parley/history"
)

// RunMQTTState checks a history.MQTTStater: records are replaced by kind,
// client and key, deleted one by one or by client (its session, not the
// retained messages), listed by kind, and listed by client (its session).
func RunMQTTState(t *testing.T, open func(t *testing.T) history.MQTTStater) {
	ctx := context.Background()
	s := open(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutMQTT(ctx,
		history.MQTTRecord{Kind: history.MQTTClient, Client: "c1", Data: []byte("client")},
		history.MQTTRecord{Kind: history.MQTTSubscription, Client: "c1", Key: "a/#", Data: []byte("sub")},
		history.MQTTRecord{Kind: history.MQTTInflight, Client: "c1", Key: "1", Data: []byte("m1")},
		history.MQTTRecord{Kind: history.MQTTInflight, Client: "c1", Key: "2", Data: []byte("m2")},
		history.MQTTRecord{Kind: history.MQTTRetained, Key: "status/c1", Data: []byte{0, 1, 2}},
		history.MQTTRecord{Kind: history.MQTTPending, Client: "c2", Key: "7", Data: []byte("p")},
	))
	must(s.PutMQTT(ctx, history.MQTTRecord{Kind: history.MQTTInflight, Client: "c1", Key: "2", Data: []byte("m2'")}))
	count := func(kind byte) []history.MQTTRecord {
		t.Helper()
		recs, err := s.MQTTState(ctx, kind)
		must(err)
		return recs
	}
	if recs := count(history.MQTTInflight); len(recs) != 2 || string(recs[1].Data) != "m2'" || recs[1].Kind != history.MQTTInflight {
		t.Fatalf("inflight: %+v", recs)
	}
	if recs := count(history.MQTTRetained); len(recs) != 1 || string(recs[0].Data) != "\x00\x01\x02" || recs[0].Key != "status/c1" {
		t.Fatalf("retained: %+v", recs)
	}
	session, err := s.MQTTSession(ctx, "c1")
	must(err)
	var kinds []byte
	for _, r := range session {
		if r.Client != "c1" {
			t.Fatalf("session of c1: a record of %q", r.Client)
		}
		kinds = append(kinds, r.Kind)
	}
	if string(kinds) != "ciis" {
		t.Fatalf("session of c1: kinds %q, want the client, two messages and a subscription", kinds)
	}
	if none, err := s.MQTTSession(ctx, "c2"); err != nil || len(none) != 0 {
		t.Fatalf("session of c2 (pending only): %+v, %v", none, err)
	}
	must(s.DeleteMQTT(ctx, history.MQTTInflight, "c1", "1"))
	if recs := count(history.MQTTInflight); len(recs) != 1 || recs[0].Key != "2" {
		t.Fatalf("inflight after delete: %+v", recs)
	}
	must(s.DeleteMQTTClient(ctx, "c1"))
	for _, k := range []byte{history.MQTTClient, history.MQTTSubscription, history.MQTTInflight} {
		if recs := count(k); len(recs) != 0 {
			t.Fatalf("kind %c after DeleteMQTTClient: %+v", k, recs)
		}
	}
	if len(count(history.MQTTRetained)) != 1 || len(count(history.MQTTPending)) != 1 {
		t.Fatal("DeleteMQTTClient deleted retained or pending records")
	}
}
