package delivery

import (
	"context"
	"errors"
	"time"
)

// A connect storm brings thousands of devices at once, each needing a
// session claim and its state from the store. A batcher runs such calls of
// one store operation together: calls queue; one goroutine takes all that
// are waiting (up to max) and runs them in one store call, so that a storm
// costs a transaction per batch instead of one per device, and a quiet node
// one transaction per call as before (nothing waits to fill a batch).

// batchTimeout bounds one store call of a batch.
const batchTimeout = 5 * time.Second

// maxBatch bounds the calls run in one store call.
const maxBatch = 256

// errStopped is returned by calls made after the Hub was closed.
var errStopped = errors.New("delivery: hub closed")

type batcher[Q, R any] struct {
	run   func(ctx context.Context, qs []Q) ([]R, error)
	calls chan *batchCall[Q, R]
}

type batchCall[Q, R any] struct {
	q    Q
	r    R
	err  error
	done chan struct{}
}

func newBatcher[Q, R any](run func(ctx context.Context, qs []Q) ([]R, error)) *batcher[Q, R] {
	return &batcher[Q, R]{run: run, calls: make(chan *batchCall[Q, R], maxBatch)}
}

// do runs q in the next batch and returns its result.
func (b *batcher[Q, R]) do(ctx context.Context, stop <-chan struct{}, q Q) (R, error) {
	c := &batchCall[Q, R]{q: q, done: make(chan struct{})}
	var zero R
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-stop:
		return zero, errStopped
	}
	select {
	case <-c.done:
		return c.r, c.err
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-stop:
		return zero, errStopped
	}
}

// loop runs batches until stop is closed.
func (b *batcher[Q, R]) loop(stop <-chan struct{}) {
	batch := make([]*batchCall[Q, R], 0, maxBatch)
	qs := make([]Q, 0, maxBatch)
	for {
		select {
		case <-stop:
			return
		case c := <-b.calls:
			batch = append(batch[:0], c)
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case c := <-b.calls:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		qs = qs[:0]
		for _, c := range batch {
			qs = append(qs, c.q)
		}
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		rs, err := b.run(ctx, qs)
		cancel()
		if err == nil && len(rs) != len(qs) {
			err = errors.New("delivery: store answered a batch with the wrong number of results")
		}
		for i, c := range batch {
			if err != nil {
				c.err = err
			} else {
				c.r = rs[i]
			}
			close(c.done)
		}
		clear(batch)
	}
}
