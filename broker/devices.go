package broker

import (
	"context"
	"time"
)

// pruneInterval is how often a node forgets the devices unseen for ttl and
// marks its connected devices seen: a quarter of ttl, at most an hour, so
// that a device connected to any node is always seen well within ttl.
func pruneInterval(ttl time.Duration) time.Duration {
	return max(min(ttl/4, time.Hour), 10*time.Millisecond)
}

// pruneDevices forgets the devices unseen for Options.DeviceTTL (positive),
// at once and then every pruneInterval, until ctx ends. The devices
// connected here are marked seen and never forgotten.
func (b *Broker) pruneDevices(ctx context.Context) {
	defer close(b.pruned)
	ttl := b.opts.DeviceTTL
	tick := time.NewTicker(pruneInterval(ttl))
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		n, err := b.store.PruneDevices(pctx, time.Now().Add(-ttl), b.hub.Connected())
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			b.log.Warn("prune devices", "error", err)
		case n > 0:
			b.metrics.Pruned.Add(float64(n))
			b.log.Info("pruned devices", "devices", n, "unseen_for", ttl.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
