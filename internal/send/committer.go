package send

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/defaults"
)

// DefaultMaxBatch bounds the messages of one group commit.
const DefaultMaxBatch = 256

// Committer is group commit in front of a store: sends from many connections
// that arrive while a transaction is in flight share the next transaction
// (one commit, one fsync), and each sender is answered only after its
// message is committed. Conversations are spread over Partitions
// committers by id, so each conversation has at most one transaction in
// flight on this node, and its messages are handed to the deliver callbacks
// in seq order. Group changes run through the same partition as the
// conversation's sends, in order. A message whose value the store refuses
// fails alone: the rest of its batch is retried without it (see appendBatch).
type Committer struct {
	Store history.Store
	// Partitions is the number of concurrent committers; default 1.
	Partitions int
	// MaxBatch bounds one transaction; default DefaultMaxBatch.
	MaxBatch int

	once  sync.Once
	parts []chan *commitReq
	wg    sync.WaitGroup
	done  chan struct{}
	// mu orders queueing against Close: senders queue under the read lock
	// after checking closed, Close sets closed under the write lock, so
	// nothing is queued once the partitions may have drained and returned.
	mu     sync.RWMutex
	closed bool
}

type commitReq struct {
	ctx     context.Context
	m       history.NewMessage
	op      func() // an exclusive operation instead of a message
	deliver func(history.AppendResult)
	res     history.AppendResult
	fin     chan struct{}
}

// ErrCommitterClosed is returned after Close.
var ErrCommitterClosed = errors.New("send: committer closed")

func (c *Committer) start() {
	c.once.Do(func() {
		defaults.Positive(&c.Partitions, 1)
		defaults.Positive(&c.MaxBatch, DefaultMaxBatch)
		c.done = make(chan struct{})
		c.parts = make([]chan *commitReq, c.Partitions)
		for i := range c.parts {
			c.parts[i] = make(chan *commitReq, c.MaxBatch)
			c.wg.Add(1)
			go c.run(c.parts[i])
		}
	})
}

func (c *Committer) part(conv string) chan *commitReq {
	h := fnv.New32a()
	h.Write([]byte(conv))
	return c.parts[h.Sum32()%uint32(len(c.parts))]
}

// Append stores m in the next group commit of its partition; deliver, when
// set, runs after the commit on the partition's goroutine, in seq order, and
// must not block.
func (c *Committer) Append(ctx context.Context, m history.NewMessage, deliver func(history.AppendResult)) (history.Message, bool, error) {
	c.start()
	r := &commitReq{ctx: ctx, m: m, deliver: deliver, fin: make(chan struct{})}
	if err := c.queue(ctx, m.Conv, r); err != nil {
		return history.Message{}, false, err
	}
	// Wait for the outcome even if ctx ends: the message may be committed.
	<-r.fin
	return r.res.Message, r.res.Created, r.res.Err
}

// Do runs op on conv's partition, between group commits, and waits for it.
func (c *Committer) Do(ctx context.Context, conv string, op func()) error {
	c.start()
	r := &commitReq{op: op, fin: make(chan struct{})}
	if err := c.queue(ctx, conv, r); err != nil {
		return err
	}
	<-r.fin
	return nil
}

// queue hands r to conv's partition, unless the committer is closed
// (ErrCommitterClosed) or ctx ends first.
func (c *Committer) queue(ctx context.Context, conv string, r *commitReq) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ErrCommitterClosed
	}
	select {
	case c.part(conv) <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the committers after the work already queued; Append and Do
// return ErrCommitterClosed from then on.
func (c *Committer) Close() {
	c.start()
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return
	}
	close(c.done)
	c.wg.Wait()
}

func (c *Committer) run(in chan *commitReq) {
	defer c.wg.Done()
	var batch []*commitReq
	for {
		var first *commitReq
		select {
		case first = <-in:
		case <-c.done:
			// Finish what is queued, then stop.
			for {
				select {
				case r := <-in:
					c.commit([]*commitReq{r})
				default:
					return
				}
			}
		}
		if first.op != nil {
			first.op()
			close(first.fin)
			continue
		}
		batch = append(batch[:0], first)
		var op *commitReq
	fill:
		for len(batch) < c.MaxBatch {
			select {
			case r := <-in:
				if r.op != nil {
					op = r // after this batch, to keep the order
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		c.commit(batch)
		if op != nil {
			op.op()
			close(op.fin)
		}
	}
}

func (c *Committer) commit(batch []*commitReq) {
	if len(batch) == 1 && batch[0].op != nil {
		batch[0].op()
		close(batch[0].fin)
		return
	}
	ms := make([]history.NewMessage, 0, len(batch))
	live := batch[:0:0]
	for _, r := range batch {
		if r.ctx.Err() != nil { // the sender gave up before the commit: nothing stored
			r.res.Err = r.ctx.Err()
			close(r.fin)
			continue
		}
		ms = append(ms, r.m)
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	results := c.appendBatch(ms, batchTimeout(live))
	for i, r := range live {
		r.res = results[i]
		if r.res.Err == nil && r.deliver != nil {
			r.deliver(r.res)
		}
		close(r.fin)
	}
}

// appendBatch stores ms in one transaction and returns one result per
// message. When the store refuses the whole transaction because of a value in
// one row (history.EINVALID, such as U+0000 in text on PostgreSQL, or
// history.ECONFLICT), nothing was stored: each half is retried on its own,
// first half first so that seqs keep the senders' order, down to the single
// message at fault, which alone gets the error. Any other error (an outage, a
// timeout) fails the whole batch at once, as before: its senders retry.
func (c *Committer) appendBatch(ms []history.NewMessage, timeout time.Duration) []history.AppendResult {
	// The batch outlives any one sender's context.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	results, err := c.Store.AppendBatch(ctx, ms)
	cancel()
	if err == nil {
		return results
	}
	if code := history.ErrorCode(err); len(ms) > 1 && (code == history.EINVALID || code == history.ECONFLICT) {
		half := len(ms) / 2
		return append(c.appendBatch(ms[:half], timeout), c.appendBatch(ms[half:], timeout)...)
	}
	results = make([]history.AppendResult, len(ms))
	for i := range results {
		results[i].Err = err
	}
	return results
}

// batchTimeout is the longest deadline among the senders, at least 10s.
func batchTimeout(rs []*commitReq) time.Duration {
	d := 10 * time.Second
	for _, r := range rs {
		if dl, ok := r.ctx.Deadline(); ok {
			if left := time.Until(dl); left > d {
				d = left
			}
		}
	}
	return d
}
