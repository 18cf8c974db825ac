package broker_test

import (
	"strings"
	"testing"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/testkit"
)

// TestParsePublicURL: an absolute http(s) URL is kept without its trailing
// slashes; anything else is refused, by New too.
func TestParsePublicURL(t *testing.T) {
	for _, tc := range []struct{ in, want, errHas string }{
		{in: "", want: ""},
		{in: "https://chat.example.com", want: "https://chat.example.com"},
		{in: "https://chat.example.com/", want: "https://chat.example.com"},
		{in: "http://10.0.0.1:8080/parley//", want: "http://10.0.0.1:8080/parley"},
		{in: "/parley", errHas: "absolute http or https"},
		{in: "chat.example.com", errHas: "absolute http or https"},
		{in: "ftp://chat.example.com", errHas: "absolute http or https"},
		{in: "https://", errHas: "absolute http or https"},
		{in: "https://chat.example.com/?x=1", errHas: "no query"},
		{in: "https://chat.example.com/?", errHas: "no query"},
		{in: "https://chat.example.com/#top", errHas: "no query, fragment"},
		{in: "https://chat.example.com/#", errHas: "no query, fragment"},
		{in: "https://u:p@chat.example.com", errHas: "credentials"},
		{in: "https://chat.example.com/my chat/", want: "https://chat.example.com/my%20chat"},
		{in: "https://chat.example.com/a%2Fb/", want: "https://chat.example.com/a%2Fb"},
	} {
		got, err := broker.ParsePublicURL(tc.in)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("ParsePublicURL(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.errHas)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePublicURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := broker.New(broker.Options{Store: testkit.OpenSQLite(t), JWTSecret: []byte("s"), PublicURL: "chat.example.com"}); err == nil || !strings.Contains(err.Error(), "public URL") {
		t.Fatalf("New with a relative PublicURL = %v", err)
	}
}

// TestParseWebMQTTURL: a ws(s) URL with a host is kept as is; anything else
// is refused, by New too.
func TestParseWebMQTTURL(t *testing.T) {
	for _, tc := range []struct{ in, errHas string }{
		{in: ""},
		{in: "wss://chat.example.com/mqtt"},
		{in: "ws://localhost:8083/mqtt"},
		{in: "https://chat.example.com/mqtt", errHas: "ws or wss"},
		{in: "/mqtt", errHas: "ws or wss"},
		{in: "wss:///mqtt", errHas: "ws or wss"},
		{in: "wss://chat.example.com/mqtt#x", errHas: "no fragment"},
		{in: "wss://chat.example.com/mqtt#", errHas: "no fragment"},
		{in: "wss://u:p@chat.example.com/mqtt", errHas: "credentials"},
	} {
		got, err := broker.ParseWebMQTTURL(tc.in)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("ParseWebMQTTURL(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.errHas)
			}
			continue
		}
		if err != nil || got != tc.in {
			t.Errorf("ParseWebMQTTURL(%q) = %q, %v", tc.in, got, err)
		}
	}
	if _, err := broker.New(broker.Options{Store: testkit.OpenSQLite(t), JWTSecret: []byte("s"), WebMQTTURL: "http://x/mqtt"}); err == nil || !strings.Contains(err.Error(), "web MQTT URL") {
		t.Fatalf("New with an http WebMQTTURL = %v", err)
	}
}

// TestParseHookURL: webhook and moderation URLs are absolute http(s) URLs
// with a host; New refuses any other, naming it.
func TestParseHookURL(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{{"https://hooks.example.com/parley", true}, {"http://10.0.0.1:9000", true}, {"hooks.example.com", false}, {"ftp://x", false}, {"https://", false}} {
		if err := broker.ParseHookURL(tc.in); (err == nil) != tc.ok {
			t.Errorf("ParseHookURL(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
	for _, o := range []broker.Options{
		{WebhookURLs: []string{"https://a.example", "hooks.example.com"}, WebhookSecret: []byte("w")},
		{ModerationURL: "mod.local:80"},
	} {
		o.Store, o.JWTSecret = testkit.OpenSQLite(t), []byte("s")
		if _, err := broker.New(o); err == nil || !strings.Contains(err.Error(), "hook URL") {
			t.Errorf("New with a bad hook URL (%v %q) = %v", o.WebhookURLs, o.ModerationURL, err)
		}
	}
}
