package delivery

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// cursors collects the cursors to write and the delivered receipts to send
// until the next flush. A cursor is written with the session epoch of the
// device that moved it, which fences the writes of a superseded session.
type cursors struct {
	flushMu sync.Mutex // one flush at a time; taken before mu

	mu    sync.Mutex
	dirty map[cursorKey]dirtyCursor
	// receipts are the delivered receipts to send: the highest seq
	// acknowledged per direct conversation and recipient. sent are those
	// already sent, so that a flush never repeats or moves one back.
	receipts map[receiptKey]int64
	sent     map[receiptKey]int64
}

type cursorKey struct{ device, conv string }

type dirtyCursor struct{ seq, epoch int64 }

type receiptKey struct{ conv, user string }

// maxSentReceipts bounds the memory of sent receipts: beyond it they are
// forgotten, and at worst one receipt is sent twice.
const maxSentReceipts = 100000

// mark records the cursor of d in conv, to write at the next flush; receipt
// asks for a delivered receipt too (acknowledged messages, not skipped
// ones), in direct conversations.
func (c *cursors) mark(d *device, conv string, seq int64, receipt bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirty == nil {
		c.dirty, c.receipts = map[cursorKey]dirtyCursor{}, map[receiptKey]int64{}
	}
	k := cursorKey{d.id, conv}
	if seq > c.dirty[k].seq || d.epoch != c.dirty[k].epoch {
		c.dirty[k] = dirtyCursor{seq: seq, epoch: d.epoch}
	}
	if !receipt {
		return
	}
	if kind, _, _, ok := history.ParseConvID(conv); ok && kind == history.KindDirect {
		rk := receiptKey{conv, d.user}
		if seq > c.receipts[rk] {
			c.receipts[rk] = seq
		}
	}
}

// take returns what the next flush writes and sends, and starts afresh.
func (c *cursors) take() (map[cursorKey]dirtyCursor, map[receiptKey]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dirty, receipts := c.dirty, c.receipts
	c.dirty, c.receipts = map[cursorKey]dirtyCursor{}, map[receiptKey]int64{}
	if c.sent == nil || len(c.sent) > maxSentReceipts {
		c.sent = map[receiptKey]int64{}
	}
	return dirty, receipts
}

// fresh records that the receipt of k up to seq is about to be sent and
// reports whether it is news.
func (c *cursors) fresh(k receiptKey, seq int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq <= c.sent[k] {
		return false
	}
	c.sent[k] = seq
	return true
}

// putBack keeps cursors whose write failed for the next flush.
func (c *cursors) putBack(dirty map[cursorKey]dirtyCursor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, d := range dirty {
		if d.seq > c.dirty[k].seq {
			c.dirty[k] = d
		}
	}
}

// flushLoop writes cursors and sends receipts every FlushInterval until the
// Hub closes.
func (h *Hub) flushLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := h.flush(ctx); err != nil {
				h.Log.Warn("write cursors", "error", err)
			}
			cancel()
		}
	}
}

// flush sends the coalesced delivered receipts (to the peer of each direct
// conversation) and writes the dirty cursors; cursors that fail to be
// written are kept for the next flush.
func (h *Hub) flush(ctx context.Context) error {
	c := &h.cursors
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	dirty, receipts := c.take()
	for k, seq := range receipts {
		if !c.fresh(k, seq) {
			continue
		}
		_, a, b, _ := history.ParseConvID(k.conv)
		peer := a
		if peer == k.user {
			peer = b
		}
		payload, _ := json.Marshal(wire.Receipt{Kind: "delivered", Conv: k.conv, User: k.user, Seq: seq})
		h.DeliverEvent([]string{peer}, payload, 1)
	}
	if len(dirty) == 0 {
		return nil
	}
	cs := make([]history.Cursor, 0, len(dirty))
	for k, d := range dirty {
		cs = append(cs, history.Cursor{Device: k.device, Conv: k.conv, Seq: d.seq, Epoch: d.epoch})
	}
	if err := h.Store.SaveCursors(ctx, cs); err != nil {
		c.putBack(dirty)
		return err
	}
	return nil
}
