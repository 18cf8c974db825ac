// Package kafka is the Kafka export sink of the outbox: it produces every
// event to one Kafka (or Redpanda) topic with github.com/twmb/franz-go.
//
// Each event becomes one record:
//
//   - key: the conversation id (Event.Conv), so that all events of a
//     conversation land in one partition (the default murmur2 partitioner,
//     the same as the Java client's) and keep their seq order there;
//   - value: the JSON of outbox.Event, {"id","type","ts","conv","seq","data"},
//     the same body webhooks receive;
//   - headers: parley-id, parley-type, parley-conv, parley-seq and
//     content-type: application/json;
//   - timestamp: the event's ts.
//
// The producer is idempotent with acks=all (franz-go's defaults), so its own
// retries within one Deliver neither duplicate nor reorder records. Delivery
// as a whole is at least once: when Deliver fails (or parleyd dies before
// recording its progress), the dispatcher offers the same events again and
// they are produced again with the same id; consumers deduplicate by id or by
// (conv, seq).
package kafka

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/parley-im/parley/internal/outbox"
)

// DefaultTopic is the topic used when Config.Topic is empty.
const DefaultTopic = "parley.events"

// Defaults of the optional durations of Config.
const (
	// DefaultLinger is how long a partition's records wait for more before
	// a produce request is cut. Deliver hands a whole batch at once, so a
	// short linger is enough to fill requests.
	DefaultLinger = 5 * time.Millisecond
	// DefaultDeliveryTimeout bounds one Deliver call when its context has
	// no earlier deadline.
	DefaultDeliveryTimeout = 30 * time.Second
)

// Record header names.
const (
	HeaderID          = "parley-id"
	HeaderType        = "parley-type"
	HeaderConv        = "parley-conv"
	HeaderSeq         = "parley-seq"
	HeaderContentType = "content-type"
)

// SASL mechanisms accepted in Config.SASLMechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Config configures a Sink.
type Config struct {
	// Brokers are the seed brokers, host:port (PARLEY_KAFKA_BROKERS,
	// comma-separated). At least one is required.
	Brokers []string
	// Topic receives the events (PARLEY_KAFKA_TOPIC); DefaultTopic if
	// empty. The topic must exist unless the cluster creates topics
	// automatically.
	Topic string
	// ClientID is the Kafka client id ("parley" if empty).
	ClientID string

	// TLS, if not nil, connects to the brokers over TLS with this
	// configuration.
	TLS *tls.Config
	// SASLMechanism, if not empty, authenticates with SASLUser and
	// SASLPassword: SASLPlain, SASLScramSHA256 or SASLScramSHA512.
	SASLMechanism string
	// SASLUser is the SASL user name.
	SASLUser string
	// SASLPassword is the SASL password.
	SASLPassword string

	// Linger is the producer linger; DefaultLinger if zero.
	Linger time.Duration
	// DeliveryTimeout bounds each Deliver call: records not acknowledged
	// by then fail and Deliver returns an error. DefaultDeliveryTimeout if
	// zero.
	DeliveryTimeout time.Duration

	// Opts are extra franz-go options, appended last (tests, tuning).
	Opts []kgo.Opt
}

// Sink produces outbox events to a Kafka topic. It implements outbox.Sink.
// Deliver must not be called concurrently (the dispatcher never does).
type Sink struct {
	cl      *kgo.Client
	topic   string
	timeout time.Duration
}

var _ outbox.Sink = (*Sink)(nil)

// New returns a Sink producing to cfg.Topic on cfg.Brokers. It does not
// contact the brokers: an unreachable cluster shows as Deliver errors.
func New(cfg Config) (*Sink, error) {
	var seeds []string
	for _, b := range cfg.Brokers {
		if b = strings.TrimSpace(b); b != "" {
			seeds = append(seeds, b)
		}
	}
	if len(seeds) == 0 {
		return nil, errors.New("kafka: no brokers")
	}
	topic := cfg.Topic
	if topic == "" {
		topic = DefaultTopic
	}
	clientID := cfg.ClientID
	if clientID == "" {
		clientID = "parley"
	}
	linger := cfg.Linger
	if linger <= 0 {
		linger = DefaultLinger
	}
	timeout := cfg.DeliveryTimeout
	if timeout <= 0 {
		timeout = DefaultDeliveryTimeout
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ClientID(clientID),
		kgo.DefaultProduceTopic(topic),
		// Idempotent (the default) with acks=all, as idempotency requires.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(linger),
		// No kgo.RecordDeliveryTimeout: franz-go measures it from the
		// record's timestamp, which is the event's ts (possibly old when
		// the sink catches up); Deliver bounds itself with a context.
		//
		// Let a timed out or canceled Deliver fail records that are in
		// flight. The idempotent producer still keeps its own retries free
		// of duplicates; a record failed while in flight may have been
		// written and is produced again by the dispatcher's redelivery,
		// which at-least-once allows.
		kgo.AllowIdempotentProduceCancellation(),
	}
	if cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.TLS.Clone()))
	}
	if cfg.SASLMechanism != "" {
		m, err := mechanism(cfg.SASLMechanism, cfg.SASLUser, cfg.SASLPassword)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	opts = append(opts, cfg.Opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return &Sink{cl: cl, topic: topic, timeout: timeout}, nil
}

func mechanism(name, user, pass string) (sasl.Mechanism, error) {
	switch strings.ToUpper(name) {
	case SASLPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case SASLScramSHA512:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka: unknown SASL mechanism %q", name)
}

// Name returns "kafka:" + the topic; the store keys the sink's progress by it.
func (s *Sink) Name() string { return "kafka:" + s.topic }

// Topic returns the topic the sink produces to.
func (s *Sink) Topic() string { return s.topic }

// Record returns the Kafka record of ev: key, value, headers and timestamp
// as the package documentation describes; the topic is left to the client.
func Record(ev outbox.Event) (*kgo.Record, error) {
	value, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("kafka: event %s: %w", ev.ID, err)
	}
	return &kgo.Record{
		Key:       []byte(ev.Conv),
		Value:     value,
		Timestamp: ev.TS,
		Headers: []kgo.RecordHeader{
			{Key: HeaderID, Value: []byte(ev.ID)},
			{Key: HeaderType, Value: []byte(ev.Type)},
			{Key: HeaderConv, Value: []byte(ev.Conv)},
			{Key: HeaderSeq, Value: []byte(strconv.FormatInt(ev.Seq, 10))},
			{Key: HeaderContentType, Value: []byte("application/json")},
		},
	}, nil
}

// Deliver produces evs and waits until the brokers acknowledge them (acks
// all) or the delivery fails. It returns how many of evs, from the first,
// were acknowledged, and the error of evs[n] if n < len(evs).
//
// Records of one partition are acknowledged in order and a failure fails
// every later record of that partition, so every event of a conversation
// after a failed one fails too. Records of other partitions that follow
// the first failure may already be written: the dispatcher offers evs[n:]
// again and those become duplicates with the same id (at least once).
//
// Deliver gives up when ctx is done or Config.DeliveryTimeout has passed,
// failing the records not yet acknowledged, including ones in flight whose
// fate is unknown (they may have been written). franz-go notices this at
// its next retry, which can wait for a metadata refresh: Deliver returns
// a few seconds after the deadline at most.
func (s *Sink) Deliver(ctx context.Context, evs []outbox.Event) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	recs := make([]*kgo.Record, 0, len(evs))
	var encErr error
	for _, ev := range evs {
		r, err := Record(ev)
		if err != nil {
			// Produce what precedes the event that cannot be encoded.
			encErr = err
			break
		}
		r.Topic = s.topic
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return 0, encErr
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// ProduceSync reports results in completion order, not in the order
	// of recs: find the first failed record by position.
	index := make(map[*kgo.Record]int, len(recs))
	for i, r := range recs {
		index[r] = i
	}
	n, err := len(recs), encErr
	for _, res := range s.cl.ProduceSync(ctx, recs...) {
		if res.Err == nil {
			continue
		}
		if i, ok := index[res.Record]; ok && i < n {
			n = i
			err = fmt.Errorf("kafka: produce event %s: %w", evs[i].ID, res.Err)
		}
	}
	return n, err
}

// Close closes the client. Deliver waits for its records, so nothing that
// was reported delivered is lost; a Deliver running concurrently fails.
func (s *Sink) Close() error {
	s.cl.Close()
	return nil
}
