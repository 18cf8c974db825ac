package parley

import (
	"slices"
)

// item is one thing for the dispatcher: a stored message from MQTT, a gap
// event, a page or the end of a gap fill, or a ready-made event.
type item struct {
	msg  *Message
	gap  *Gap
	fill *fillResult
	ev   Event
}

// convState is what the dispatcher knows of a conversation: the highest seq
// surfaced (or skipped as not visible to the user), messages received above
// it that wait for the ones before, and the gap being filled.
type convState struct {
	last    int64
	pending map[int64]Message
	want    int64 // a gap event asked for every message below want
	filling bool
}

// enqueue hands an item to the dispatcher; it never blocks, so that paho's
// goroutine keeps reading acknowledgements while events wait.
func (c *Client) enqueue(it item) {
	c.qmu.Lock()
	c.queue = append(c.queue, it)
	c.qmu.Unlock()
	select {
	case c.qwake <- struct{}{}:
	default:
	}
}

// dispatch is the one goroutine that orders and surfaces events.
func (c *Client) dispatch() {
	defer c.wg.Done()
	for {
		c.qmu.Lock()
		batch := c.queue
		c.queue = nil
		c.qmu.Unlock()
		for _, it := range batch {
			if c.ctx.Err() != nil {
				return
			}
			c.handle(it)
		}
		select {
		case <-c.qwake:
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *Client) handle(it item) {
	switch {
	case it.msg != nil:
		c.onMessage(*it.msg)
	case it.gap != nil:
		c.onGap(*it.gap)
	case it.fill != nil:
		c.onFill(it.fill)
	default:
		c.emit(it.ev)
	}
}

// emit surfaces an event to the handler or the channel.
func (c *Client) emit(ev Event) {
	if c.opts.Handler != nil {
		c.opts.Handler(ev)
		return
	}
	select {
	case c.events <- ev:
	case <-c.ctx.Done():
	}
}

func (c *Client) state(conv string, last int64) *convState {
	st := c.convs[conv]
	if st == nil {
		// The first message (or gap) seen starts the conversation: the
		// server decides what a device gets first.
		st = &convState{last: last, pending: map[int64]Message{}}
		c.convs[conv] = st
	}
	return st
}

// onMessage takes a stored message: a duplicate is dropped, the next one is
// surfaced, a later one waits until the messages before it are filled from
// the REST history.
func (c *Client) onMessage(m Message) {
	st := c.state(m.Conv, m.Seq-1)
	if m.Seq <= st.last {
		return
	}
	if _, dup := st.pending[m.Seq]; dup {
		return
	}
	st.pending[m.Seq] = m
	c.advance(m.Conv, st)
}

// onGap takes a gap event: the messages between After and Before are to be
// fetched over REST.
func (c *Client) onGap(g Gap) {
	st := c.state(g.Conv, g.After)
	if c.opts.ReportGaps {
		c.emit(Event{Kind: EventGap, Gap: g})
	}
	st.want = max(st.want, g.Before)
	c.advance(g.Conv, st)
}

// advance surfaces the pending messages that follow the last one and
// starts a fill when a gap remains.
func (c *Client) advance(conv string, st *convState) {
	for {
		m, ok := st.pending[st.last+1]
		if !ok {
			break
		}
		delete(st.pending, m.Seq)
		st.last = m.Seq
		c.emit(Event{Kind: EventMessage, Message: m})
	}
	if st.want <= st.last+1 {
		st.want = 0
	}
	if st.filling {
		return
	}
	before := st.want
	for seq := range st.pending {
		if before == 0 || seq < before {
			before = seq
		}
	}
	if before > st.last+1 {
		st.filling = true
		c.wg.Add(1)
		go c.fill(conv, st.last, before)
	}
}

// onFill takes a page of a fill (the messages the user may see between the
// fill's start and its end, in order) or its end.
func (c *Client) onFill(r *fillResult) {
	st := c.convs[r.conv]
	for _, m := range r.msgs {
		c.matchEcho(m)
		if m.Seq > st.last && m.Seq < r.before {
			st.pending[m.Seq] = m
		}
	}
	// The history is the truth up to its last message (and, at the end, up
	// to the end of the gap): seqs it skips are not visible to the user.
	upTo := int64(0)
	if n := len(r.msgs); n > 0 {
		upTo = r.msgs[n-1].Seq
	}
	if r.done {
		st.filling = false
		if r.err != nil {
			c.log.Error("parley: gap not filled", "conv", r.conv, "after", st.last, "before", r.before, "error", r.err)
			c.emit(Event{Kind: EventError, Err: &GapError{Conv: r.conv, After: st.last, Before: r.before, Err: r.err}})
		}
		upTo = max(upTo, r.before-1)
	}
	if upTo > st.last {
		seqs := make([]int64, 0, len(st.pending))
		for seq := range st.pending {
			if seq <= upTo {
				seqs = append(seqs, seq)
			}
		}
		slices.Sort(seqs)
		for _, seq := range seqs {
			m := st.pending[seq]
			delete(st.pending, seq)
			st.last = seq
			c.emit(Event{Kind: EventMessage, Message: m})
		}
		st.last = max(st.last, upTo)
	}
	c.advance(r.conv, st)
}
