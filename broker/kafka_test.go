package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// TestKafkaExport: every event reaches the Kafka topic, keyed by
// conversation, in seq order per key (a fake Kafka cluster: no Kafka server
// runs here).
func TestKafkaExport(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "parley.events"))
		if err != nil {
			t.Fatal(err)
		}
		defer kc.Close()
		e := setup(t, s, func(o *broker.Options) {
			o.KafkaBrokers = kc.ListenAddrs()
			o.OutboxPoll = 20 * time.Millisecond
		})
		alice := e.dial("alice", "alice", dialOpts{})
		for i := range 10 {
			for _, peer := range []string{"bob", "carol", "dave"} {
				alice.post("im/send/u/"+peer, fmt.Sprintf(`{"cid":"%s%d","body":%d}`, peer, i, i))
			}
		}
		alice.post("im/send/u/bob", `{"op":"edit","cid":"e1","target":1,"body":"edited"}`)

		cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ConsumeTopics("parley.events"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		last := map[string]int64{}
		n := 0
		for n < 31 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("Kafka has %d events after 20s, want 31", n)
			}
			fs.EachRecord(func(r *kgo.Record) {
				var ev hookEvent
				if err := json.Unmarshal(r.Value, &ev); err != nil || string(r.Key) != ev.Conv || ev.ID == "" {
					t.Errorf("record key %q value %s: %v", r.Key, r.Value, err)
				}
				if ev.Seq != last[ev.Conv]+1 {
					t.Errorf("%s: seq %d after %d", ev.Conv, ev.Seq, last[ev.Conv])
				}
				last[ev.Conv] = ev.Seq
				n++
			})
		}
		if last["dm:alice:bob"] != 11 || last["dm:alice:carol"] != 10 || last["dm:alice:dave"] != 10 {
			t.Fatalf("last seqs %v", last)
		}
	})
}
