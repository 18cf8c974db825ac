package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/parley-im/parley/history"
)

// pruneBatch bounds one delete of the pruner, so that pruning never holds
// the outbox long.
const pruneBatch = 10000

// Pruner deletes the events that every configured sink consumed (all of
// them when no sink is configured), so that the outbox stays small. A sink
// that never ran holds pruning at its start, until it runs.
type Pruner struct {
	Store history.Outboxer
	Sinks []string
	// Every is the time between passes; default one minute.
	Every time.Duration
	Log   *slog.Logger
}

// Run prunes every Every until ctx is done.
func (p *Pruner) Run(ctx context.Context) {
	every := p.Every
	if every <= 0 {
		every = time.Minute
	}
	log := p.Log
	if log == nil {
		log = slog.Default()
	}
	for sleep(ctx, nil, every) {
		if _, err := p.Prune(ctx); err != nil && ctx.Err() == nil {
			log.Warn("outbox: prune", "error", err)
		}
	}
}

// Prune deletes what every sink consumed and returns how many events it
// deleted.
func (p *Pruner) Prune(ctx context.Context) (int, error) {
	upTo, err := p.Store.OutboxHead(ctx)
	if err != nil {
		return 0, err
	}
	for _, s := range p.Sinks {
		pos, _, err := p.Store.SinkPosition(ctx, s)
		if err != nil {
			return 0, err
		}
		upTo = min(upTo, pos)
	}
	total := 0
	for upTo > 0 {
		n, err := p.Store.PruneOutbox(ctx, upTo, pruneBatch)
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
	}
	return total, nil
}
