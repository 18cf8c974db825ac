package broker_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/testkit"
)

// webConfig is the web client's GET /config.json.
type webConfig struct {
	MQTTPort    int     `json:"mqtt_port"`
	MQTTPath    string  `json:"mqtt_path"`
	MQTTURL     *string `json:"mqtt_url"`
	TopicPrefix string  `json:"topic_prefix"`
	DevLogin    bool    `json:"dev_login"`
}

// TestWebClient checks what parleyd serves the web client (the client itself
// is tested in a browser by web/browser_test.go): the page, its settings and
// the development sign-in, each only when enabled.
func TestWebClient(t *testing.T) {
	t.Run("On", func(t *testing.T) {
		e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.Web, o.DevLogin = true, true })
		page, code := e.get("/")
		if code != 200 || !contains(page, `<script src="app.js">`) {
			t.Fatalf("GET / = %d %q", code, page)
		}
		var cfg webConfig
		if code := e.do("GET", "/config.json", "", "", &cfg); code != 200 || cfg.MQTTPath != "/mqtt" || cfg.TopicPrefix != "im" || !cfg.DevLogin ||
			!strings.HasSuffix(e.ws, ":"+strconv.Itoa(cfg.MQTTPort)) || cfg.MQTTURL == nil || *cfg.MQTTURL != "" {
			t.Fatalf("GET /config.json = %d %+v (ws %s)", code, cfg, e.ws)
		}
		var login struct{ User, Token string }
		if code := e.do("POST", "/dev/login", "", `{"user":"alice"}`, &login); code != 200 || login.User != "alice" || login.Token == "" {
			t.Fatalf("POST /dev/login = %d %+v", code, login)
		}
		// The token is a real one: the REST API takes it.
		if code := e.doToken("GET", "/v1/conversations", login.Token); code != 200 {
			t.Fatalf("GET /v1/conversations with the dev token = %d", code)
		}
		var bad apiErr
		if code := e.do("POST", "/dev/login", "", `{"user":"no/slash"}`, &bad); code != 400 || bad.Error.Code != "invalid" {
			t.Fatalf("POST /dev/login with a bad user = %d %+v", code, bad)
		}
		if code := e.do("POST", "/", "", "", nil); code != 405 {
			t.Fatalf("POST / = %d, want 405", code)
		}
		if _, code := e.get("/v1/nowhere"); code != 404 {
			t.Fatalf("GET /v1/nowhere = %d: the API keeps its own 404", code)
		}
	})
	t.Run("MQTTURL", func(t *testing.T) {
		e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.Web, o.WebMQTTURL = true, "wss://chat.example.com/mqtt" })
		var cfg webConfig
		if code := e.do("GET", "/config.json", "", "", &cfg); code != 200 || cfg.MQTTURL == nil || *cfg.MQTTURL != "wss://chat.example.com/mqtt" || cfg.MQTTPath != "/mqtt" {
			t.Fatalf("GET /config.json = %d %+v", code, cfg)
		}
	})
	t.Run("Off", func(t *testing.T) {
		e := setup(t, testkit.OpenSQLite(t))
		for _, p := range []string{"/", "/app.js", "/config.json"} {
			if _, code := e.get(p); code != 404 {
				t.Fatalf("GET %s = %d without Options.Web", p, code)
			}
		}
		if code := e.do("POST", "/dev/login", "", `{"user":"alice"}`, nil); code != 404 {
			t.Fatalf("POST /dev/login = %d without Options.DevLogin", code)
		}
	})
	t.Run("DevLoginNeedsSecret", func(t *testing.T) {
		_, err := broker.New(broker.Options{Store: testkit.OpenSQLite(t), JWTPublicKey: testkit.NewKeys(t).Algorithms()[0].Public, DevLogin: true})
		if err == nil || !contains(err.Error(), "DevLogin needs a JWTSecret") {
			t.Fatalf("New = %v", err)
		}
	})
}

// doToken sends a request with a bearer token and returns the status.
func (e *env) doToken(method, path, token string) int {
	e.t.Helper()
	resp, _ := e.request(method, path, "", nil, "Authorization", "Bearer "+token)
	return resp.StatusCode
}
