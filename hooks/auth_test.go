package hooks_test

import (
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/parley-im/parley/hooks"
	"github.com/parley-im/parley/internal/auth"
)

// TestOnWill: a will that is allowed passes unchanged; any other goes to the
// void topic without its payload, not retained.
func TestOnWill(t *testing.T) {
	acl, err := auth.ParseACL(strings.NewReader("* readwrite chat/#\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := &hooks.Auth{Authorizer: &auth.Authorizer{ACL: acl}}
	for _, c := range []struct {
		topic string
		ok    bool
	}{
		{"chat/room", true},
		{"im/inbox/bob", false},
		{"im/presence/alice", false},
		{"other/x", false},
		{"chat/#", false},
	} {
		cl := &mqtt.Client{ID: "alice"}
		w, err := h.OnWill(cl, mqtt.Will{TopicName: c.topic, Payload: []byte("p"), Qos: 1, Retain: true, Flag: 1})
		if err != nil {
			t.Fatal(err)
		}
		if c.ok && (w.TopicName != c.topic || string(w.Payload) != "p" || !w.Retain) {
			t.Errorf("OnWill(%q) changed an allowed will: %+v", c.topic, w)
		}
		if !c.ok && (w.TopicName != auth.VoidTopic || len(w.Payload) != 0 || w.Retain) {
			t.Errorf("OnWill(%q) = %+v, want the void topic without payload", c.topic, w)
		}
	}
}
