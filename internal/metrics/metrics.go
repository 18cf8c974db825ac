// Package metrics holds Parley's Prometheus metrics, registered on a
// registry the caller passes in, and a store wrapper that times store calls.
package metrics

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/history"
)

// Metrics are Parley's Prometheus collectors. NewMetrics registers them on a
// registry that the caller owns; there is no global state.
type Metrics struct {
	Received     *prometheus.CounterVec // parley_messages_received_total{result}
	Delivered    prometheus.Counter     // parley_messages_delivered_total
	StoreLatency *prometheus.HistogramVec
	StoreErrors  *prometheus.CounterVec
	Refused      *prometheus.CounterVec // parley_connections_refused_total{reason}
	Catchups     prometheus.Counter     // parley_catchups_total
	Pruned       prometheus.Counter     // parley_devices_pruned_total

	// answered is when a store call last completed without the store being
	// unavailable (UnixNano).
	answered atomic.Int64
}

// StoreAnswered returns when a store call made through InstrumentStore last
// completed with the store available (a domain error such as "not found"
// counts: the store answered); zero before any.
func (m *Metrics) StoreAnswered() time.Time {
	if n := m.answered.Load(); n > 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Received: counterVec("parley_messages_received_total", "result",
			"Messages received from clients, by result (stored, duplicate, ephemeral, or an error code)."),
		Delivered: counter("parley_messages_delivered_total",
			"PUBLISH packets written to clients on Parley's topics (deliveries, events, resends)."),
		StoreLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_store_latency_seconds",
			Help:    "Latency of store operations.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}, []string{"op"}),
		StoreErrors: counterVec("parley_store_errors_total", "op",
			"Store operations that failed because the store was unavailable or broken."),
		Refused: counterVec("parley_connections_refused_total", "reason",
			"CONNECT packets refused, by reason."),
		Catchups: counter("parley_catchups_total",
			"Catch-up passes started for devices (after a connect, a gap or an overflow)."),
		Pruned: counter("parley_devices_pruned_total",
			"Devices (client ids) forgotten, with their cursors, after going unseen for the device TTL."),
	}
	reg.MustRegister(m.Received, m.Delivered, m.StoreLatency, m.StoreErrors, m.Refused, m.Catchups, m.Pruned)
	return m
}

// counter is a new counter called name.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// counterVec is a new counter called name with one label.
func counterVec(name, label, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
}

// InstrumentStore returns a history.Store that records the latency and the
// failures of every call to s in m.
func InstrumentStore(s history.Store, m *Metrics) history.Store {
	return &instrumented{s: s, m: m}
}

type instrumented struct {
	s history.Store
	m *Metrics
}

func (i *instrumented) observe(op string, start time.Time, err error) {
	now := time.Now()
	i.m.StoreLatency.WithLabelValues(op).Observe(now.Sub(start).Seconds())
	if history.ErrorCode(err) == history.EUNAVAILABLE {
		i.m.StoreErrors.WithLabelValues(op).Inc()
		return
	}
	i.m.answered.Store(now.UnixNano())
}

func (i *instrumented) Ping(ctx context.Context) (err error) {
	defer func(t time.Time) { i.observe("ping", t, err) }(time.Now())
	return i.s.Ping(ctx)
}

func (i *instrumented) Append(ctx context.Context, m history.NewMessage) (_ history.Message, _ bool, err error) {
	defer func(t time.Time) { i.observe("append", t, err) }(time.Now())
	return i.s.Append(ctx, m)
}

func (i *instrumented) AppendBatch(ctx context.Context, ms []history.NewMessage) (_ []history.AppendResult, err error) {
	defer func(t time.Time) { i.observe("append_batch", t, err) }(time.Now())
	return i.s.AppendBatch(ctx, ms)
}

func (i *instrumented) Messages(ctx context.Context, conv string, after int64, limit int) (_ []history.Message, err error) {
	defer func(t time.Time) { i.observe("messages", t, err) }(time.Now())
	return i.s.Messages(ctx, conv, after, limit)
}

func (i *instrumented) CreateGroup(ctx context.Context, g history.Group, ms []history.Member, nm history.NewMessage) (_ history.Message, err error) {
	defer func(t time.Time) { i.observe("create_group", t, err) }(time.Now())
	return i.s.CreateGroup(ctx, g, ms, nm)
}

func (i *instrumented) Group(ctx context.Context, id string) (_ history.Group, _ []history.Member, err error) {
	defer func(t time.Time) { i.observe("group", t, err) }(time.Now())
	return i.s.Group(ctx, id)
}

func (i *instrumented) ChangeMember(ctx context.Context, c history.MemberChange) (_ history.Message, _ []history.Member, err error) {
	defer func(t time.Time) { i.observe("change_member", t, err) }(time.Now())
	return i.s.ChangeMember(ctx, c)
}

func (i *instrumented) Device(ctx context.Context, device, user string) (_ history.DeviceState, err error) {
	defer func(t time.Time) { i.observe("device", t, err) }(time.Now())
	return i.s.Device(ctx, device, user)
}

func (i *instrumented) Devices(ctx context.Context, devs []history.DeviceRef) (_ []history.DeviceState, err error) {
	defer func(t time.Time) { i.observe("devices", t, err) }(time.Now())
	return i.s.Devices(ctx, devs)
}

func (i *instrumented) Claims(ctx context.Context, devices []string) (_ []int64, err error) {
	defer func(t time.Time) { i.observe("claims", t, err) }(time.Now())
	return i.s.Claims(ctx, devices)
}

func (i *instrumented) SaveCursors(ctx context.Context, cs []history.Cursor) (err error) {
	defer func(t time.Time) { i.observe("save_cursors", t, err) }(time.Now())
	return i.s.SaveCursors(ctx, cs)
}

func (i *instrumented) Claim(ctx context.Context, device string) (_ int64, err error) {
	defer func(t time.Time) { i.observe("claim", t, err) }(time.Now())
	return i.s.Claim(ctx, device)
}

func (i *instrumented) PruneDevices(ctx context.Context, before time.Time, connected []string) (_ int, err error) {
	defer func(t time.Time) { i.observe("prune_devices", t, err) }(time.Now())
	return i.s.PruneDevices(ctx, before, connected)
}

func (i *instrumented) MarkRead(ctx context.Context, user, conv string, seq int64) (_ int64, _ bool, err error) {
	defer func(t time.Time) { i.observe("mark_read", t, err) }(time.Now())
	return i.s.MarkRead(ctx, user, conv, seq)
}

func (i *instrumented) SharesConversation(ctx context.Context, a, b string) (_ bool, err error) {
	defer func(t time.Time) { i.observe("shares_conversation", t, err) }(time.Now())
	return i.s.SharesConversation(ctx, a, b)
}

func (i *instrumented) History(ctx context.Context, q history.HistoryQuery) (_ []history.Message, _ history.ConvHead, err error) {
	defer func(t time.Time) { i.observe("history", t, err) }(time.Now())
	return i.s.History(ctx, q)
}

func (i *instrumented) Conversations(ctx context.Context, user, cursor string, limit int) (_ []history.ConversationView, _ string, err error) {
	defer func(t time.Time) { i.observe("conversations", t, err) }(time.Now())
	return i.s.Conversations(ctx, user, cursor, limit)
}

func (i *instrumented) Changes(ctx context.Context, user, since string, limit int) (_ []history.ConversationView, _ string, _ bool, err error) {
	defer func(t time.Time) { i.observe("changes", t, err) }(time.Now())
	return i.s.Changes(ctx, user, since, limit)
}

func (i *instrumented) Close() error { return i.s.Close() }

func (i *instrumented) Counts(ctx context.Context, user, conv string) (_, _ int64, err error) {
	defer func(t time.Time) { i.observe("counts", t, err) }(time.Now())
	return i.s.Counts(ctx, user, conv)
}

func (i *instrumented) SetSettings(ctx context.Context, user, conv string, s history.Settings) (_ history.Settings, err error) {
	defer func(t time.Time) { i.observe("set_settings", t, err) }(time.Now())
	return i.s.SetSettings(ctx, user, conv, s)
}

func (i *instrumented) Receipts(ctx context.Context, user, conv string, groupMax int) (_ history.Receipts, err error) {
	defer func(t time.Time) { i.observe("receipts", t, err) }(time.Now())
	return i.s.Receipts(ctx, user, conv, groupMax)
}
