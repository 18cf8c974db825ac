package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/internal/testkit"
)

// TestConnackReasonStrings: a refused MQTT 5 CONNECT learns why in the
// CONNACK's Reason String (an expired token apart from a forged one), and
// the server log says it for MQTT 5 and 3.1.1 alike.
func TestConnackReasonStrings(t *testing.T) {
	logs := &testkit.Buffer{}
	e := setup(t, testkit.OpenSQLite(t), func(o *brokerOptions) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	cases := []struct {
		name, clientID, username, password, reason string
	}{
		{"Expired", "alice", "", signed(t, jwt.SigningMethodHS256, testSecret, claims("alice", -time.Hour)), "token expired: get a new token"},
		{"WrongKey", "alice", "", signed(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret!!"), claims("alice", time.Hour)),
			"bad signature: the token was not signed with this server's secret or key"},
		{"Garbage", "alice", "", "not-a-jwt", "token invalid: token is malformed: token contains an invalid number of segments"},
		{"NoPassword", "alice", "alice", "", "no token: the password must be a token for the user"},
		{"UsernameMismatch", "alice", "bob", testkit.Token(t, "alice"), `user name "bob" is not the token's user "alice"`},
		{"OtherUsersClientID", "bob", "", testkit.Token(t, "alice"), `client id "bob" is neither alice nor alice/DEVICE`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ca, err := e.connectV5(tc.clientID, tc.username, tc.password)
			if err == nil || ca == nil || ca.Properties == nil || ca.Properties.ReasonString != tc.reason {
				t.Fatalf("connack %+v (%v); want reason string %q", ca, err, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("paho's error %q does not show the reason string", err)
			}
		})
	}
	// MQTT 3.1.1 has no reason string: the log says why.
	for _, tc := range cases[:3] {
		if _, err := e.connectV3("alice/v3"+tc.name, "alice", tc.password); err == nil {
			t.Fatalf("v3 %s connected", tc.name)
		}
		want := `client=alice/v3` + tc.name
		testkit.Eventually(t, 5*time.Second, func() bool {
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, want) && strings.Contains(line, "connect refused") && strings.Contains(line, tc.reason) {
					return true
				}
			}
			return false
		})
	}
}

// publishV5 publishes at qos and returns the PUBACK/PUBREC reason code and
// Reason String.
func (c *client) publishV5(topic string, qos byte, payload string) (byte, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	pr, err := c.v5.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if pr == nil {
		c.t.Fatalf("%s: publish to %s: %v", c.id, topic, err)
	}
	if pr.Properties == nil {
		return pr.ReasonCode, ""
	}
	return pr.ReasonCode, pr.Properties.ReasonString
}

// TestPubackReasonStrings: a refused send or read marker of an MQTT 5
// client carries the error code and its explanation in the Reason String
// of the PUBACK (QoS 1) or PUBREC (QoS 2), the same text as the error event.
func TestPubackReasonStrings(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	alice := e.dialV5("alice", "alice")
	cases := []struct {
		name, topic, payload string
		code                 byte
		reason               string
	}{
		{"ToSelf", "im/send/u/alice", `{"body":"hi"}`, 0x90, "invalid_peer: you cannot send a direct message to yourself"},
		{"CIDType", "im/send/u/bob", `{"cid":7,"body":"hi"}`, 0x99, `invalid_payload: field "cid" must be a string, got a number`},
		{"ReadSeqType", "im/read", `{"conv":"dm:alice:bob","seq":"1"}`, 0x99,
			`invalid_payload: field "seq" must be an integer, got a string; a read marker is {"conv": "...", "seq": N}`},
		{"NoSuchGroup", "im/send/g/nope", `{"body":"hi"}`, 0x87, `no_such_group: no such group "nope"`},
		{"BadPeerID", "im/send/u/bad!id", `{"body":"hi"}`, 0x90, `invalid_peer: invalid user id "bad!id" (1 to 64 of A-Z a-z 0-9 . _ @ -)`},
	}
	for _, tc := range cases {
		for _, qos := range []byte{1, 2} {
			t.Run(tc.name+"/QoS"+string('0'+qos), func(t *testing.T) {
				code, reason := alice.publishV5(tc.topic, qos, tc.payload)
				if code != tc.code || reason != tc.reason {
					t.Fatalf("ack %#x %q, want %#x %q", code, reason, tc.code, tc.reason)
				}
				ev := alice.nextKind("error")
				if want := tc.reason[strings.Index(tc.reason, ": ")+2:]; ev.Message != want {
					t.Fatalf("error event message %q, want %q", ev.Message, want)
				}
			})
		}
	}
}

// TestPubackACLReason: a publish the ACL refuses is answered 0x87 by the
// MQTT layer, with a Reason String that says where a client may publish.
func TestPubackACLReason(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	alice := e.dialV5("alice", "alice")
	want := "not authorized: publish to im/send/u/PEER, im/send/g/GROUP, im/read or a topic your ACL allows"
	for _, qos := range []byte{1, 2} {
		if code, reason := alice.publishV5("im/inbox/bob", qos, `{"body":"hi"}`); code != 0x87 || reason != want {
			t.Fatalf("QoS %d: ack %#x %q, want 0x87 %q", qos, code, reason, want)
		}
	}
}

// TestRateLimitedReason: a send beyond the rate is refused 0x97 with a
// Reason String that says when to try again, and the error event carries
// retry_after in seconds.
func TestRateLimitedReason(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *brokerOptions) { o.Rate, o.Burst = 0.1, 1 })
	alice := e.dialV5("alice", "alice")
	alice.send("im/send/u/bob", 1, `{"body":"1"}`)
	code, reason := alice.publishV5("im/send/u/bob", 1, `{"cid":"c2","body":"2"}`)
	if code != 0x97 || !strings.HasPrefix(reason, "rate_limited: too many messages, slow down: try again in ") {
		t.Fatalf("ack %#x %q, want 0x97 with when to try again", code, reason)
	}
	ev := alice.nextKind("error")
	var fields struct {
		RetryAfter int `json:"retry_after"`
	}
	if err := json.Unmarshal(ev.raw, &fields); err != nil || fields.RetryAfter < 9 || fields.RetryAfter > 10 {
		t.Fatalf("error event %s: retry_after %d, want 9 or 10", ev.raw, fields.RetryAfter)
	}
}

// TestSubackReasonStrings: a SUBACK that refuses filters of an MQTT 5
// client names each refused filter and the rule it broke.
func TestSubackReasonStrings(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	alice := e.dialV5("alice", "alice")
	cases := []struct {
		name    string
		filters []string
		codes   []byte
		reason  string
	}{
		{"OtherInbox", []string{"im/inbox/bob"}, []byte{0x87}, `"im/inbox/bob": you may read only your own inbox, im/inbox/alice`},
		{"Wildcard", []string{"im/#"}, []byte{0x87}, `"im/#": no wildcards over Parley's topics: subscribe to im/inbox/alice`},
		{"Presence", []string{"im/presence/carol"}, []byte{0x87}, `"im/presence/carol": you may read the presence only of users you share a conversation with`},
		{"OutsideNoACL", []string{"im/inbox/alice", "sensors/x"}, []byte{0x01, 0x80}, `"sensors/x": no ACL allows topics outside Parley's`},
		{"Several", []string{"im/inbox/bob", "a/#/b", "im/inbox/alice"}, []byte{0x87, 0x8F, 0x01},
			`"im/inbox/bob": you may read only your own inbox, im/inbox/alice; "a/#/b": not a valid topic filter`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sub := &paho.Subscribe{}
			for _, f := range tc.filters {
				sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			sa, err := alice.v5.Subscribe(ctx, sub)
			if sa == nil {
				t.Fatalf("subscribe: %v", err)
			}
			if !bytes.Equal(sa.Reasons, tc.codes) {
				t.Fatalf("codes % x, want % x", sa.Reasons, tc.codes)
			}
			if sa.Properties == nil || sa.Properties.ReasonString != tc.reason {
				t.Fatalf("suback %+v, want reason string %q", sa.Properties, tc.reason)
			}
		})
	}
	t.Run("Granted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sa, err := alice.v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "im/presence/alice", QoS: 1}}})
		if err != nil || (sa.Properties != nil && sa.Properties.ReasonString != "") {
			t.Fatalf("suback %+v, %v: want no reason string", sa, err)
		}
	})
}
