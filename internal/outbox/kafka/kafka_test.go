package kafka

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/parley-im/parley/internal/outbox"
	"github.com/parley-im/parley/internal/testkit"
)

const partitions = 6

// cluster starts a kfake cluster of three brokers with DefaultTopic in
// `partitions` partitions.
func cluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(3), kfake.SeedTopics(partitions, DefaultTopic)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newSink(t *testing.T, c *kfake.Cluster, cfg Config) *Sink {
	t.Helper()
	cfg.Brokers = c.ListenAddrs()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// events returns n events over convs conversations in outbox order: the
// conversations interleave, and each conversation's seqs increase from 1.
func events(n, convs int) []outbox.Event {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seq := make([]int64, convs)
	evs := make([]outbox.Event, n)
	for i := range evs {
		c := (i*7 + i/convs) % convs // an uneven interleaving
		seq[c]++
		conv := fmt.Sprintf("g:conv%02d", c)
		data, _ := json.Marshal(map[string]any{"conv": conv, "seq": seq[c], "body": fmt.Sprintf("message %d", i)})
		evs[i] = outbox.Event{
			ID:   fmt.Sprintf("ev%05d", i),
			Type: outbox.TypeMessageCreated,
			TS:   base.Add(time.Duration(i) * time.Millisecond),
			Conv: conv,
			Seq:  seq[c],
			Data: data,
		}
	}
	return evs
}

// deliverAll delivers evs in batches of size batch and fails on any error.
func deliverAll(t *testing.T, s *Sink, evs []outbox.Event, batch int) {
	t.Helper()
	for len(evs) > 0 {
		b := evs[:min(batch, len(evs))]
		n, err := s.Deliver(context.Background(), b)
		if err != nil || n != len(b) {
			t.Fatalf("Deliver(%d events) = %d, %v", len(b), n, err)
		}
		evs = evs[len(b):]
	}
}

// consume reads the records of DefaultTopic from the start of every
// partition: at least atLeast of them (failing after a timeout), then until
// nothing more comes for a moment.
func consume(t *testing.T, c *kfake.Cluster, atLeast int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(DefaultTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	deadline := time.Now().Add(20 * time.Second)
	var recs []*kgo.Record
	for {
		wait := 500 * time.Millisecond
		if len(recs) < atLeast {
			wait = time.Until(deadline)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		got := fs.Records()
		recs = append(recs, got...)
		if len(got) == 0 {
			if len(recs) >= atLeast {
				return recs
			}
			if time.Now().After(deadline) {
				t.Fatalf("consumed %d records, want at least %d", len(recs), atLeast)
			}
		}
	}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkRecord checks r against the event it carries and returns the event.
func checkRecord(t *testing.T, r *kgo.Record, byID map[string]outbox.Event) outbox.Event {
	t.Helper()
	id := header(r, HeaderID)
	ev, ok := byID[id]
	if !ok {
		t.Fatalf("record with unknown %s %q", HeaderID, id)
	}
	want, _ := json.Marshal(ev)
	if !bytes.Equal(r.Value, want) {
		t.Fatalf("value of %s = %s, want %s", id, r.Value, want)
	}
	var got outbox.Event
	if err := json.Unmarshal(r.Value, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != ev.ID || got.Type != ev.Type || !got.TS.Equal(ev.TS) || got.Conv != ev.Conv || got.Seq != ev.Seq || !bytes.Equal(got.Data, ev.Data) {
		t.Fatalf("decoded %+v, want %+v", got, ev)
	}
	if string(r.Key) != ev.Conv {
		t.Fatalf("key of %s = %q, want %q", id, r.Key, ev.Conv)
	}
	for k, v := range map[string]string{
		HeaderType:        ev.Type,
		HeaderConv:        ev.Conv,
		HeaderSeq:         strconv.FormatInt(ev.Seq, 10),
		HeaderContentType: "application/json",
	} {
		if got := header(r, k); got != v {
			t.Fatalf("header %s of %s = %q, want %q", k, id, got, v)
		}
	}
	if !r.Timestamp.Equal(ev.TS) {
		t.Fatalf("timestamp of %s = %v, want %v", id, r.Timestamp, ev.TS)
	}
	return ev
}

func byID(evs []outbox.Event) map[string]outbox.Event {
	m := make(map[string]outbox.Event, len(evs))
	for _, ev := range evs {
		m[ev.ID] = ev
	}
	return m
}

// checkAtLeastOnce checks that recs carry every event of evs, each with its
// key, value and headers, and that per key the records come in seq order,
// allowing redeliveries: a record may repeat earlier seqs (a redelivery
// starts again from an earlier event) but never skips one, so the first
// occurrences are exactly 1, 2, 3, ... It returns the number of
// duplicates.
func checkAtLeastOnce(t *testing.T, recs []*kgo.Record, evs []outbox.Event) int {
	t.Helper()
	ids := byID(evs)
	maxSeq := map[string]int64{}
	partition := map[string]int32{}
	seen := map[string]bool{}
	dups := 0
	for _, r := range recs {
		ev := checkRecord(t, r, ids)
		if p, ok := partition[ev.Conv]; ok && p != r.Partition {
			t.Fatalf("%s in partitions %d and %d", ev.Conv, p, r.Partition)
		}
		partition[ev.Conv] = r.Partition
		switch {
		case ev.Seq == maxSeq[ev.Conv]+1:
			maxSeq[ev.Conv] = ev.Seq
		case ev.Seq <= maxSeq[ev.Conv]:
			// A redelivery.
		default:
			t.Fatalf("%s: seq %d after %d", ev.Conv, ev.Seq, maxSeq[ev.Conv])
		}
		if seen[ev.ID] {
			dups++
		}
		seen[ev.ID] = true
	}
	if len(seen) != len(evs) {
		t.Fatalf("consumed %d distinct events, want %d", len(seen), len(evs))
	}
	return dups
}

func TestDeliverOrderedPerConversation(t *testing.T) {
	c := cluster(t)
	s := newSink(t, c, Config{ClientID: "parley-test"})
	if got, want := s.Name(), "kafka:"+DefaultTopic; got != want {
		t.Fatalf("Name() = %q, want %q", got, want)
	}
	evs := events(400, 13)
	deliverAll(t, s, evs, 37)
	recs := consume(t, c, len(evs))
	if len(recs) != len(evs) {
		t.Fatalf("consumed %d records, want %d", len(recs), len(evs))
	}
	if dups := checkAtLeastOnce(t, recs, evs); dups != 0 {
		t.Fatalf("%d duplicates without redelivery", dups)
	}
	used := map[int32]bool{}
	for _, r := range recs {
		used[r.Partition] = true
	}
	if len(used) < 3 {
		t.Fatalf("13 conversations used only %d of %d partitions", len(used), partitions)
	}
}

// A redelivered batch (the dispatcher did not record its progress, e.g.
// parleyd was killed after Deliver returned) is produced again: consumers
// see duplicates with the same ids, in order per conversation.
func TestRedeliveryDuplicatesWithSameID(t *testing.T) {
	c := cluster(t)
	s := newSink(t, c, Config{})
	evs := events(120, 5)
	deliverAll(t, s, evs[:80], 80)
	deliverAll(t, s, evs[40:80], 40) // redelivery of the last 40
	deliverAll(t, s, evs[80:], 40)
	recs := consume(t, c, 160)
	if len(recs) != 160 {
		t.Fatalf("consumed %d records, want 160", len(recs))
	}
	if dups := checkAtLeastOnce(t, recs, evs); dups != 40 {
		t.Fatalf("%d duplicates, want 40", dups)
	}
	count := map[string]int{}
	for _, r := range recs {
		count[header(r, HeaderID)]++
	}
	for i, ev := range evs {
		want := 1
		if i >= 40 && i < 80 {
			want = 2
		}
		if count[ev.ID] != want {
			t.Fatalf("%s consumed %d times, want %d", ev.ID, count[ev.ID], want)
		}
	}
}

// While no broker answers produce requests, Deliver fails within its
// timeout with n < len(evs); once they answer again, the redelivery from n
// succeeds and every event is there, in order per conversation.
func TestBrokerOutage(t *testing.T) {
	c := cluster(t)
	var down atomic.Bool
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if down.Load() {
			return nil, errors.New("outage"), true // closes the connection
		}
		return nil, nil, false
	})
	// franz-go notices a canceled context when it retries, after a
	// metadata refresh (at most every MetadataMinAge, 5 s by default).
	s := newSink(t, c, Config{DeliveryTimeout: time.Second, Opts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}})
	evs := events(300, 9)
	deliverAll(t, s, evs[:100], 50)

	down.Store(true)
	start := time.Now()
	n, err := s.Deliver(context.Background(), evs[100:200])
	if err == nil || n >= 100 {
		t.Fatalf("Deliver during the outage = %d, %v; want an error and n < 100", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Deliver during the outage took %v", d)
	}
	t.Logf("during the outage: n=%d err=%v after %v", n, err, time.Since(start))
	start = time.Now()
	// A canceled context fails Deliver too.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	n2, err := s.Deliver(ctx, evs[100+n:200])
	cancel()
	t.Logf("canceled: n=%d err=%v after %v", n2, err, time.Since(start))
	if err == nil || n2 >= 100-n {
		t.Fatalf("Deliver with a canceled context = %d, %v", n2, err)
	}
	n += n2

	down.Store(false)
	start = time.Now()
	deliverAll(t, s, evs[100+n:], 50) // the dispatcher's redelivery
	t.Logf("after the outage: delivered in %v", time.Since(start))
	start = time.Now()
	recs := consume(t, c, len(evs))
	t.Logf("consumed in %v", time.Since(start))
	checkAtLeastOnce(t, recs, evs)
}

// A partition whose leader rejects the records fails them, and every later
// event of that partition; Deliver returns the index of the first failed
// event, every event before it is written, and the redelivery from there
// succeeds.
func TestPartialFailure(t *testing.T) {
	c := cluster(t)
	// Partition 0 alone on broker 0, the others on brokers 1 and 2.
	for p := int32(0); p < partitions; p++ {
		node := int32(0)
		if p > 0 {
			node = 1 + p%2
		}
		if err := c.MoveTopicPartition(DefaultTopic, p, node); err != nil {
			t.Fatal(err)
		}
	}
	var reject atomic.Bool
	c.ControlKey(kmsg.Produce.Int16(), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !reject.Load() || c.CurrentNode() != 0 {
			return nil, nil, false
		}
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.InvalidRecord.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	s := newSink(t, c, Config{})
	evs := events(200, 13)
	deliverAll(t, s, evs[:50], 50) // every conversation once at least

	partition := map[string]int32{}
	for _, r := range consume(t, c, 50) {
		partition[string(r.Key)] = r.Partition
	}
	if len(partition) != 13 {
		t.Fatalf("%d conversations in the first 50 events, want 13", len(partition))
	}

	reject.Store(true)
	batch := evs[50:150]
	n, err := s.Deliver(context.Background(), batch)
	if !errors.Is(err, kerr.InvalidRecord) || n >= len(batch) {
		t.Fatalf("Deliver = %d, %v; want n < %d and %v", n, err, len(batch), kerr.InvalidRecord)
	}
	for i, ev := range batch {
		if partition[ev.Conv] == 0 {
			if i != n {
				t.Fatalf("n = %d, but the first event of partition 0 is %d", n, i)
			}
			break
		}
	}
	written := map[string]bool{}
	for _, r := range consume(t, c, 50+n) {
		written[header(r, HeaderID)] = true
	}
	for i, ev := range batch {
		switch {
		case i < n && !written[ev.ID]:
			t.Fatalf("event %d of the batch (before n = %d) was not written", i, n)
		case partition[ev.Conv] == 0 && written[ev.ID]:
			t.Fatalf("event %d of the batch, in the rejected partition, was written", i)
		}
	}
	t.Logf("n=%d; %d events of the batch written, err=%v", n, len(written)-50, err)

	reject.Store(false)
	deliverAll(t, s, evs[50+n:], 40) // the dispatcher's redelivery
	all := consume(t, c, len(evs))
	dups := checkAtLeastOnce(t, all, evs)
	if want := len(written) - 50 - n; dups != want {
		t.Fatalf("%d duplicates, want %d (written after the failed event)", dups, want)
	}
}

func TestSASL(t *testing.T) {
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := cluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "parley", "secret"))
			s := newSink(t, c, Config{SASLMechanism: mech, SASLUser: "parley", SASLPassword: "secret"})
			evs := events(20, 3)
			deliverAll(t, s, evs, 20)

			bad := newSink(t, c, Config{SASLMechanism: mech, SASLUser: "parley", SASLPassword: "wrong", DeliveryTimeout: time.Second})
			if n, err := bad.Deliver(context.Background(), evs); err == nil || n != 0 {
				t.Fatalf("Deliver with a wrong password = %d, %v", n, err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Config{Brokers: []string{" ", ""}}); err == nil {
		t.Fatal("New without brokers succeeded")
	}
	if _, err := New(Config{Brokers: []string{"localhost:9092"}, SASLMechanism: "GSSAPI"}); err == nil {
		t.Fatal("New with an unknown SASL mechanism succeeded")
	}
	s, err := New(Config{Brokers: []string{"localhost:9092"}, Topic: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Name() != "kafka:audit" || s.Topic() != "audit" {
		t.Fatalf("Name() = %q, Topic() = %q", s.Name(), s.Topic())
	}
	if n, err := s.Deliver(context.Background(), nil); n != 0 || err != nil {
		t.Fatalf("Deliver(nil) = %d, %v", n, err)
	}
}

// An event whose data is not JSON cannot be encoded: the events before it
// are delivered and Deliver reports it.
func TestUnencodableEvent(t *testing.T) {
	c := cluster(t)
	s := newSink(t, c, Config{})
	evs := events(10, 2)
	evs[6].Data = json.RawMessage("{not json")
	n, err := s.Deliver(context.Background(), evs)
	if n != 6 || err == nil {
		t.Fatalf("Deliver = %d, %v; want 6 and an error", n, err)
	}
	if recs := consume(t, c, 6); len(recs) != 6 {
		t.Fatalf("consumed %d records, want 6", len(recs))
	}
}

// With every broker gone, Deliver fails within its timeout.
func TestNoBroker(t *testing.T) {
	c := cluster(t)
	addrs := c.ListenAddrs()
	c.Close()
	s, err := New(Config{Brokers: addrs, DeliveryTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	n, err := s.Deliver(context.Background(), events(10, 2))
	if n != 0 || err == nil {
		t.Fatalf("Deliver = %d, %v; want 0 and an error", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Deliver took %v", d)
	}
	t.Logf("%v after %v", err, time.Since(start))
}

func TestTLS(t *testing.T) {
	pki := testkit.NewPKI(t)
	c := cluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.Issue(t, x509.ExtKeyUsageServerAuth)}}))
	s := newSink(t, c, Config{TLS: &tls.Config{RootCAs: pki.Pool}})
	evs := events(20, 3)
	deliverAll(t, s, evs, 20)

	plainText := newSink(t, c, Config{DeliveryTimeout: time.Second})
	if n, err := plainText.Deliver(context.Background(), evs); err == nil || n != 0 {
		t.Fatalf("Deliver without TLS = %d, %v", n, err)
	}
}
