package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestURLConfig: PARLEY_PUBLIC_URL (trailing slash dropped) and
// PARLEY_WEB_MQTT_URL reach the broker's options; URLs that cannot work are
// errors naming the variable; the flags win over the environment.
func TestURLConfig(t *testing.T) {
	cases := []struct {
		name, public, mqtt   string
		wantPublic, wantMQTT string
		errHas               string
	}{
		{name: "Unset"},
		{name: "Set", public: "https://chat.example.com/", mqtt: "wss://chat.example.com/mqtt",
			wantPublic: "https://chat.example.com", wantMQTT: "wss://chat.example.com/mqtt"},
		{name: "PublicPath", public: "http://example.com:8080/chat", wantPublic: "http://example.com:8080/chat"},
		{name: "PublicRelative", public: "/chat", errHas: "PARLEY_PUBLIC_URL"},
		{name: "PublicNoScheme", public: "chat.example.com", errHas: "PARLEY_PUBLIC_URL"},
		{name: "PublicQuery", public: "https://chat.example.com/?a=b", errHas: "PARLEY_PUBLIC_URL"},
		{name: "PublicWS", public: "wss://chat.example.com", errHas: "PARLEY_PUBLIC_URL"},
		{name: "MQTTHTTPS", mqtt: "https://chat.example.com/mqtt", errHas: "PARLEY_WEB_MQTT_URL"},
		{name: "MQTTNoHost", mqtt: "wss:///mqtt", errHas: "PARLEY_WEB_MQTT_URL"},
		{name: "MQTTCredentials", mqtt: "wss://u:p@chat.example.com/mqtt", errHas: "PARLEY_WEB_MQTT_URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PARLEY_PUBLIC_URL", tc.public)
			t.Setenv("PARLEY_WEB_MQTT_URL", tc.mqtt)
			t.Setenv("PARLEY_JWT_SECRET", "url-config-secret-url-config-secret")
			m := NewMain()
			m.Stderr = &bytes.Buffer{}
			if err := m.ParseFlags("serve", nil); err != nil {
				t.Fatal(err)
			}
			opts, err := m.options()
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one naming %s", err, tc.errHas)
				}
				return
			}
			if err != nil || opts.PublicURL != tc.wantPublic || opts.WebMQTTURL != tc.wantMQTT {
				t.Fatalf("options: public %q, web MQTT %q, %v; want %q, %q", opts.PublicURL, opts.WebMQTTURL, err, tc.wantPublic, tc.wantMQTT)
			}
		})
	}
	t.Setenv("PARLEY_PUBLIC_URL", "https://env.example.com")
	t.Setenv("PARLEY_WEB_MQTT_URL", "wss://env.example.com/mqtt")
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags("serve", []string{"-public-url", "https://flag.example.com/", "-web-mqtt-url", "ws://flag.example.com:8083/mqtt"}); err != nil {
		t.Fatal(err)
	}
	if opts, err := m.options(); err != nil || opts.PublicURL != "https://flag.example.com" || opts.WebMQTTURL != "ws://flag.example.com:8083/mqtt" {
		t.Fatalf("flags: public %q, web MQTT %q, %v", opts.PublicURL, opts.WebMQTTURL, err)
	}
}
