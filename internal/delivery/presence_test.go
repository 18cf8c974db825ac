package delivery

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/testkit"
)

// presenceLog records the presence the Hub publishes, as "user on|off".
type presenceLog struct{ testkit.Log[string] }

func (p *presenceLog) publish(user string, payload []byte) error {
	var v struct {
		User     string `json:"user"`
		Online   bool   `json:"online"`
		LastSeen string `json:"last_seen"`
	}
	if err := json.Unmarshal(payload, &v); err != nil || v.User != user {
		return fmt.Errorf("bad presence payload %s for %s", payload, user)
	}
	if _, err := time.Parse(time.RFC3339, v.LastSeen); err != nil {
		return fmt.Errorf("last_seen %q: %v", v.LastSeen, err)
	}
	state := "off"
	if v.Online {
		state = "on"
	}
	p.Add(user + " " + state)
	return nil
}

func setupPresence(t *testing.T) (*env, *presenceLog) {
	log := &presenceLog{}
	e := setup(t, func(h *Hub) { h.PublishPresence = log.publish })
	return e, log
}

// TestPresenceLocal: a user is present from their first device to their
// last.
func TestPresenceLocal(t *testing.T) {
	e, log := setupPresence(t)
	phone := e.connect("bob/phone", 1)
	laptop := e.connect("bob/laptop", 1)
	e.hub.Disconnect(phone)
	e.hub.Disconnect(phone) // twice: nothing
	if got := log.Take(); !slices.Equal(got, []string{"bob on"}) {
		t.Fatalf("published %v, want bob on once", got)
	}
	e.hub.Disconnect(laptop)
	if got := log.Take(); !slices.Equal(got, []string{"bob off"}) {
		t.Fatalf("published %v, want bob off", got)
	}
}

// TestPresenceNodes: presence is cluster-wide: a user present on another
// node stays present when their device here leaves; heartbeats (SetNodeUsers)
// repair lost presence messages; a node whose lease expired (ForgetNode)
// takes its users' presence with it.
func TestPresenceNodes(t *testing.T) {
	e, log := setupPresence(t)
	h := e.hub
	h.SetPresence("carol", "n2", true)
	h.SetPresence("carol", "n3", true)
	if got := log.Take(); !slices.Equal(got, []string{"carol on"}) {
		t.Fatalf("published %v, want carol on once", got)
	}
	dave := e.connect("dave/phone", 1)
	h.SetNodeUsers("n2", []string{"carol", "dave", "erin"})
	if got := log.Take(); !slices.Equal(got, []string{"dave on", "erin on"}) {
		t.Fatalf("published %v, want dave on (his device here), then erin on", got)
	}
	h.SetNodeUsers("n2", []string{"dave"}) // carol and erin left n2; carol is still on n3
	if got := log.Take(); !slices.Equal(got, []string{"erin off"}) {
		t.Fatalf("published %v, want erin off", got)
	}
	h.ForgetNode("n2") // dave is still here
	h.ForgetNode("n3")
	if got := log.Take(); !slices.Equal(got, []string{"carol off"}) {
		t.Fatalf("published %v, want carol off", got)
	}
	h.SetPresence("dave", "n3", true)
	e.hub.Disconnect(dave) // present on n3
	if got := log.Take(); len(got) != 0 {
		t.Fatalf("published %v, want nothing", got)
	}
	h.ForgetNode("n3")
	if got := log.Take(); !slices.Equal(got, []string{"dave off"}) {
		t.Fatalf("published %v, want dave off", got)
	}
	h.SetPresence("nobody", "n4", false)
	if got := log.Take(); len(got) != 0 {
		t.Fatalf("published %v for a user never present", got)
	}
}

// TestPresencePublishFails: a failed publish is logged, nothing else.
func TestPresencePublishFails(t *testing.T) {
	calls := 0
	e := setup(t, func(h *Hub) {
		h.PublishPresence = func(string, []byte) error { calls++; return errStore }
	})
	bob := e.connect("bob/phone", 1)
	e.hub.Disconnect(bob)
	if calls != 2 {
		t.Fatalf("%d publishes, want 2", calls)
	}
}
