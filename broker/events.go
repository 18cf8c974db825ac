package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/outbox"
	"github.com/parley-im/parley/internal/outbox/kafka"
	"github.com/parley-im/parley/internal/push"
)

// events runs the outbox: a dispatcher per configured sink and the pruner.
type events struct {
	dispatchers []*outbox.Dispatcher
	pruner      *outbox.Pruner
	closers     []func() error // sinks to close after the dispatchers stop
	stop        context.CancelFunc
	done        sync.WaitGroup
}

// pushProviders returns the push providers that opts configure, by name.
func pushProviders(opts Options) (map[string]push.Provider, error) {
	ps := map[string]push.Provider{}
	if opts.FCMCredentialsFile != "" {
		f, err := push.NewFCM(opts.FCMCredentialsFile, push.FCMOptions{Endpoint: opts.FCMEndpoint, HTTPClient: opts.PushHTTPClient})
		if err != nil {
			return nil, fmt.Errorf("broker: FCM: %w", err)
		}
		ps[f.Name()] = f
	}
	if opts.APNsKeyFile != "" {
		a, err := push.NewAPNs(push.APNsConfig{KeyFile: opts.APNsKeyFile, KeyID: opts.APNsKeyID, TeamID: opts.APNsTeamID,
			Topic: opts.APNsTopic, Endpoint: opts.APNsEndpoint, HTTPClient: opts.PushHTTPClient})
		if err != nil {
			return nil, fmt.Errorf("broker: APNs: %w", err)
		}
		ps[a.Name()] = a
	}
	return ps, nil
}

// newEvents builds the sinks of opts over the store's outbox, and returns
// the names of the push providers that devices may register for.
// imageURL, when set, signs the URL of a thumbnail for push previews
// (absolute with Options.PublicURL).
func newEvents(opts Options, m *outbox.Metrics, users func(context.Context, string) ([]string, error), imageURL func(string) string) (*events, []string, error) {
	providers, err := pushProviders(opts)
	if err != nil {
		return nil, nil, err
	}
	ob, ok := opts.Store.(history.Outboxer)
	if !ok {
		if len(opts.WebhookURLs) > 0 || len(providers) > 0 || len(opts.KafkaBrokers) > 0 {
			return nil, nil, errors.New("broker: webhooks and push need a store with an outbox (history.Outboxer)")
		}
		return nil, nil, nil
	}
	leaser, _ := opts.Store.(history.Leaser)
	e := &events{}
	var sinks []outbox.Sink
	var webhooks []*outbox.Webhook
	for _, u := range opts.WebhookURLs {
		w := &outbox.Webhook{URL: u, Secret: opts.WebhookSecret}
		webhooks = append(webhooks, w)
		sinks = append(sinks, w)
	}
	if len(opts.KafkaBrokers) > 0 {
		k, err := kafka.New(kafka.Config{Brokers: opts.KafkaBrokers, Topic: opts.KafkaTopic})
		if err != nil {
			return nil, nil, fmt.Errorf("broker: Kafka: %w", err)
		}
		e.closers = append(e.closers, k.Close)
		sinks = append(sinks, k)
	}
	var names []string
	for name := range providers {
		names = append(names, name)
	}
	if len(webhooks) > 0 {
		names = append(names, "webhook")
	}
	sort.Strings(names)
	if len(names) > 0 {
		sinks = append(sinks, &outbox.Push{Store: ob, Users: users, Providers: providers, Webhooks: webhooks,
			Delay: opts.PushDelay, Preview: !opts.PushHidePreview, ImageURL: imageURL, Metrics: m, Log: opts.Logger})
	}
	var sinkNames []string
	for _, s := range sinks {
		sinkNames = append(sinkNames, s.Name())
		e.dispatchers = append(e.dispatchers, &outbox.Dispatcher{Store: ob, Sink: s, Leaser: leaser,
			Poll: opts.OutboxPoll, MinBackoff: opts.OutboxMinBackoff, Metrics: m, Log: opts.Logger})
	}
	e.pruner = &outbox.Pruner{Store: ob, Sinks: sinkNames, Every: opts.OutboxPruneEvery, Log: opts.Logger}
	return e, names, nil
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
	if e == nil {
		return
	}
	if e.stop != nil {
		e.stop()
		e.done.Wait()
	}
	for _, c := range e.closers {
		c()
	}
}
