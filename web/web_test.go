package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parley-im/parley/web"
)

// TestConfigJSON: GET /config.json carries what config returns, mqtt_url
// included (empty when unset), under a Content-Security-Policy that lets
// the page connect to MQTT over WebSocket on another host (ws: and wss:).
func TestConfigJSON(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"MQTTURL", "wss://chat.example.com/mqtt"},
		{"Unset", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(web.Handler(func() web.Config {
				return web.Config{MQTTPort: 8083, MQTTPath: "/mqtt", MQTTURL: tc.url, TopicPrefix: "im"}
			}))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/config.json")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("GET /config.json = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if u, ok := got["mqtt_url"].(string); !ok || u != tc.url || got["mqtt_path"] != "/mqtt" || got["mqtt_port"] != float64(8083) {
				t.Fatalf("config %v, want mqtt_url %q", got, tc.url)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			for _, d := range strings.Split(csp, ";") {
				if f := strings.Fields(d); len(f) > 0 && f[0] == "connect-src" {
					if !strings.Contains(d, " ws:") || !strings.Contains(d, " wss:") {
						t.Fatalf("connect-src %q does not allow ws: and wss:", d)
					}
					return
				}
			}
			t.Fatalf("no connect-src in %q", csp)
		})
	}
}
