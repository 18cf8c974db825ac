package broker

import (
	"context"
	"errors"
	"sync"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/outbox"
)

// events runs the outbox: a dispatcher per configured sink and the pruner.
type events struct {
	dispatchers []*outbox.Dispatcher
	pruner      *outbox.Pruner
	stop        context.CancelFunc
	done        sync.WaitGroup
}

// newEvents builds the sinks of opts over the store's outbox.
func newEvents(opts Options, m *outbox.Metrics) (*events, error) {
	ob, ok := opts.Store.(history.Outboxer)
	if !ok {
		if len(opts.WebhookURLs) > 0 {
			return nil, errors.New("broker: webhooks need a store with an outbox (history.Outboxer)")
		}
		return nil, nil
	}
	leaser, _ := opts.Store.(history.Leaser)
	e := &events{}
	var sinks []outbox.Sink
	for _, u := range opts.WebhookURLs {
		sinks = append(sinks, &outbox.Webhook{URL: u, Secret: opts.WebhookSecret})
	}
	var names []string
	for _, s := range sinks {
		names = append(names, s.Name())
		e.dispatchers = append(e.dispatchers, &outbox.Dispatcher{Store: ob, Sink: s, Leaser: leaser,
			Poll: opts.OutboxPoll, MinBackoff: opts.OutboxMinBackoff, Metrics: m, Log: opts.Logger})
	}
	e.pruner = &outbox.Pruner{Store: ob, Sinks: names, Every: opts.OutboxPruneEvery, Log: opts.Logger}
	return e, nil
}

// start runs the dispatchers and the pruner until close.
func (e *events) start() {
	if e == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	for _, d := range e.dispatchers {
		e.done.Add(1)
		go func() { defer e.done.Done(); d.Run(ctx) }()
	}
	e.done.Add(1)
	go func() { defer e.done.Done(); e.pruner.Run(ctx) }()
}

// close stops the dispatchers and the pruner and waits for them.
func (e *events) close() {
	if e == nil || e.stop == nil {
		return
	}
	e.stop()
	e.done.Wait()
}
