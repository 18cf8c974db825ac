package parley

import (
	"cmp"
	"slices"
	"time"
)

// fillPage is the page size of gap fills, the REST API's maximum.
const fillPage = 200

// fillResult is a page of a gap fill, or (done) its end.
type fillResult struct {
	conv   string
	before int64
	msgs   []Message // ascending, after < seq < before
	done   bool
	err    error // the fill gave up (done only)
}

// fill fetches the messages of conv with after < seq < before from the REST
// history and hands them to the dispatcher page by page. Failures that may
// pass (network, 5xx, 429) are retried with backoff until Close; others end
// the fill with an error.
func (c *Client) fill(conv string, after, before int64) {
	defer c.wg.Done()
	c.log.Debug("parley: filling gap", "conv", conv, "after", after, "before", before)
	backoff := 250 * time.Millisecond
	for after < before-1 {
		page, err := c.History(c.ctx, conv, HistoryOptions{After: after, Forward: true, Limit: fillPage})
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			if !transient(err) {
				c.enqueue(item{fill: &fillResult{conv: conv, before: before, done: true, err: err}})
				return
			}
			c.log.Warn("parley: history for a gap failed, retrying", "conv", conv, "after", after, "error", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-c.ctx.Done():
				return
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 250 * time.Millisecond
		msgs := make([]Message, 0, len(page.Messages))
		top := after
		for _, m := range page.Messages {
			top = max(top, m.Seq)
			if m.Seq > after && m.Seq < before {
				msgs = append(msgs, m)
			}
		}
		slices.SortFunc(msgs, func(a, b Message) int { return cmp.Compare(a.Seq, b.Seq) })
		msgs = slices.CompactFunc(msgs, func(a, b Message) bool { return a.Seq == b.Seq })
		if len(msgs) > 0 {
			c.enqueue(item{fill: &fillResult{conv: conv, before: before, msgs: msgs}})
		}
		next := max(page.Next, top)
		if len(page.Messages) == 0 || page.Next == 0 || next <= after {
			break
		}
		after = next
	}
	c.enqueue(item{fill: &fillResult{conv: conv, before: before, done: true}})
}
