package delivery

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// TestEveryDeviceGetsTheStoredMessage: every device of both users, several
// per user, gets each message exactly as stored (seq, id, sender, type and
// body), once and in seq order, from the catch-up and live alike.
func TestEveryDeviceGetsTheStoredMessage(t *testing.T) {
	e := setup(t)
	stored := e.sendN(dm, "alice", 3)
	ids := []string{"alice/laptop", "alice/phone", "alice/tablet", "bob/phone", "bob/tablet"}
	devices := make([]*fakeConn, len(ids))
	for i, id := range ids {
		devices[i] = e.connect(id, 1)
	}
	for _, c := range devices {
		drain(t, e.hub, c, dm, len(stored))
	}
	for i := range 3 {
		m := e.send(dm, []string{"bob", "alice"}[i%2], fmt.Sprintf("live %d", i))
		stored = append(stored, m)
		e.hub.DeliverMessage([]string{"alice", "bob"}, m)
	}
	for _, c := range devices {
		drain(t, e.hub, c, dm, len(stored))
	}
	for _, c := range devices {
		c.mu.Lock()
		var got []wire.Delivery
		for _, s := range c.got {
			var d wire.Delivery
			if err := json.Unmarshal(s.payload, &d); err != nil {
				c.mu.Unlock()
				t.Fatalf("%s: delivery %q: %v", c.id, s.payload, err)
			}
			if d.Kind == "message" && d.Conv == dm {
				got = append(got, d)
			}
		}
		c.mu.Unlock()
		if len(got) != len(stored) {
			t.Fatalf("%s: %d messages, want %d", c.id, len(got), len(stored))
		}
		for i, d := range got {
			if !same(d, stored[i]) {
				t.Errorf("%s: delivery %d = seq %d id %s from %s type %s body %s; stored seq %d id %s from %s type %s body %s",
					c.id, i, d.Seq, d.ID, d.From, d.Type, d.Body, stored[i].Seq, stored[i].ID, stored[i].From, stored[i].Type, stored[i].Body)
			}
		}
	}
}

func same(d wire.Delivery, m history.Message) bool {
	return d.Seq == m.Seq && d.ID == m.ID && d.CID == m.CID && d.From == m.From && d.Type == m.Type && string(d.Body) == string(m.Body)
}
