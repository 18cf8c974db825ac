// Package web is Parley's web chat client: a single-page app built from
// web/src into web/dist (scripts/web.sh, esbuild), next to its hand-written
// index.html, and embedded here, so that parleyd serves it without Node.js. The broker serves it at "/" when
// broker.Options.Web is set; see docs/web.md.
package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

//go:embed dist
var dist embed.FS

// FS returns the built client: index.html, app.js and app.css.
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded: it is always there
	}
	return sub
}

// Config is what the client learns from GET /config.json.
type Config struct {
	// MQTTPort is the port of MQTT over WebSocket (path /mqtt) on the
	// page's host; 0 when the WebSocket listener is off.
	MQTTPort int `json:"mqtt_port"`
	// MQTTPath is the WebSocket path, "/mqtt".
	MQTTPath string `json:"mqtt_path"`
	// MQTTURL, when set, is the full ws:// or wss:// URL of MQTT over
	// WebSocket (broker.Options.WebMQTTURL, behind a reverse proxy); the
	// client then ignores MQTTPort and MQTTPath. Empty: the client connects
	// to the page's host on MQTTPort and MQTTPath (wss: on an https page).
	MQTTURL string `json:"mqtt_url"`
	// TopicPrefix is the first level of Parley's topics ("im").
	TopicPrefix string `json:"topic_prefix"`
	// DevLogin says that POST /dev/login issues tokens (development only).
	DevLogin bool `json:"dev_login"`
	// Files says that the server stores attachments (POST /v1/uploads).
	Files bool `json:"files"`
}

// Handler serves the client's files and, at /config.json, config() as
// JSON, to GET and HEAD requests (others get 405). Every response forbids framing and sniffing and carries a
// Content-Security-Policy that allows only the page's own origin, MQTT over
// WebSocket on any host (ws: and wss:, for the listener's own port or
// Config.MQTTURL) and blob: images (attachments are fetched with the token).
func Handler(config func() Config) http.Handler {
	files := http.FileServerFS(FS())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == "/config.json" {
			h.Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(config())
			return
		}
		files.ServeHTTP(w, r)
	})
}
