package broker

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parley-im/parley/docs"
	"github.com/parley-im/parley/internal/rest"
	"github.com/parley-im/parley/internal/wire"
	"github.com/parley-im/parley/web"
)

// Handler returns the HTTP handler: GET /healthz, GET /readyz, GET /metrics
// and the REST API under /v1 (see docs/api.md); with Options.Web the web
// client at "/", with Options.DevLogin POST /dev/login (see docs/web.md).
func (b *Broker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		rest.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", b.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(docs.OpenAPI)
	})
	b.api.Register(mux)
	if b.opts.Web {
		mux.Handle("/", web.Handler(b.webConfig))
	}
	if b.opts.DevLogin {
		mux.HandleFunc("POST /dev/login", b.devLogin)
	}
	return b.cors(rest.CleanPaths(mux))
}

// cors answers CORS preflights and marks responses for the configured
// origins ("*" allows any).
func (b *Broker) cors(next http.Handler) http.Handler {
	if len(b.opts.CORSOrigins) == 0 {
		return next
	}
	allowed := map[string]bool{}
	for _, o := range b.opts.CORSOrigins {
		allowed[strings.TrimSpace(o)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && (allowed["*"] || allowed[origin]) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// webConfig tells the web client where MQTT over WebSocket listens: the
// WebSocket listener's port and path, and Options.WebMQTTURL when set.
func (b *Broker) webConfig() web.Config {
	c := web.Config{MQTTPath: WebsocketPath, MQTTURL: b.opts.WebMQTTURL, TopicPrefix: b.opts.TopicPrefix, DevLogin: b.opts.DevLogin, Files: b.files != nil}
	if c.TopicPrefix == "" {
		c.TopicPrefix = wire.DefaultPrefix
	}
	if a, ok := b.Addr("ws").(*net.TCPAddr); ok {
		c.MQTTPort = a.Port
	}
	return c
}

func (b *Broker) readyz(w http.ResponseWriter, r *http.Request) {
	// A store that answered another call within the last second is
	// reachable: the probe need not queue behind a storm of connects for a
	// connection of its own (a load balancer would take the node out
	// exactly when it is needed).
	if time.Since(b.metrics.StoreAnswered()) < readyFresh {
		rest.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := b.store.Ping(ctx); err != nil {
		b.log.Warn("not ready", "error", err)
		rest.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": "store unreachable or not migrated"})
		return
	}
	rest.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyFresh is how recent a store answer lets /readyz skip its ping.
const readyFresh = time.Second

// Routes lists the REST routes as "METHOD /pattern", for tests and tooling.
func Routes() []string { return rest.Routes() }
