package outbox

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/history"
)

// Metrics are the outbox's Prometheus metrics, per sink. A nil *Metrics
// records nothing.
type Metrics struct {
	LagEvents   *prometheus.GaugeVec
	LagSeconds  *prometheus.GaugeVec
	Delivered   *prometheus.CounterVec
	Failures    *prometheus.CounterVec
	DeadLetters *prometheus.CounterVec
	Push        *prometheus.CounterVec
}

// NewMetrics registers the outbox metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	sink := []string{"sink"}
	m := &Metrics{
		LagEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "parley_outbox_lag_events",
			Help: "Events stored but not yet delivered to the sink."}, sink),
		LagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "parley_outbox_lag_seconds",
			Help: "Age of the oldest event not yet delivered to the sink."}, sink),
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_outbox_delivered_total",
			Help: "Events delivered to the sink (a redelivery counts again)."}, sink),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_outbox_failures_total",
			Help: "Failed deliveries to the sink (each is retried)."}, sink),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_outbox_dead_letters_total",
			Help: "Events given up on after failing for the dead-letter time (24 h)."}, sink),
		Push: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_notifications_total",
			Help: "Push notifications by provider and result (sent, invalid_token, failed)."}, []string{"provider", "result"}),
	}
	reg.MustRegister(m.LagEvents, m.LagSeconds, m.Delivered, m.Failures, m.DeadLetters, m.Push)
	return m
}

func (m *Metrics) lag(sink string, s history.Outboxer, ctx context.Context, pos int64, pending []history.OutboxEvent) {
	if m == nil {
		return
	}
	if head, err := s.OutboxHead(ctx); err == nil {
		m.LagEvents.WithLabelValues(sink).Set(float64(max(head-pos, 0)))
	}
	age := 0.0
	if len(pending) > 0 {
		age = time.Since(pending[0].TS).Seconds()
	}
	m.LagSeconds.WithLabelValues(sink).Set(max(age, 0))
}

func (m *Metrics) delivered(sink string, n int) {
	if m != nil && n > 0 {
		m.Delivered.WithLabelValues(sink).Add(float64(n))
	}
}

func (m *Metrics) failed(sink string) {
	if m != nil {
		m.Failures.WithLabelValues(sink).Inc()
	}
}

func (m *Metrics) dead(sink string) {
	if m != nil {
		m.DeadLetters.WithLabelValues(sink).Inc()
	}
}

func (m *Metrics) push(provider, result string) {
	if m != nil {
		m.Push.WithLabelValues(provider, result).Inc()
	}
}
