package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// banner tells the operator what runs where and how to get a first token.
func (m *Main) banner() {
	c := m.Config
	w := m.Stderr
	fmt.Fprintf(w, "\nParley is running (store: %s)\n", m.storeDesc)
	for _, l := range []struct{ name, scheme, path string }{{"mqtt", "mqtt://", ""}, {"tls", "mqtts://", ""}, {"ws", "ws://", "/mqtt"}, {"http", "http://", ""}} {
		if a := m.Broker.Addr(l.name); a != nil {
			fmt.Fprintf(w, "  %-5s %s%s%s\n", l.name, l.scheme, hostPort(a), l.path)
		}
	}
	if a := m.Broker.Addr("http"); a != nil && c.Web {
		fmt.Fprintf(w, "Web client: http://%s/", hostPort(a))
		if m.Broker.Addr("ws") == nil && c.WebMQTTURL == "" {
			fmt.Fprint(w, " (but MQTT over WebSocket is off: set PARLEY_WS_ADDR or PARLEY_WEB_MQTT_URL)")
		} else if c.DevLogin && c.DatabaseURL == "" {
			fmt.Fprint(w, " (development sign-in: any user name)")
		}
		fmt.Fprintln(w)
	}
	if c.NATSURL != "" {
		fmt.Fprintf(w, "Cluster mode: node %s, NATS %s\n", c.NodeID, redactURLs(c.NATSURL))
	}
	switch {
	case c.JWTSecret == "" && c.JWTPublicKey == "":
		fmt.Fprintf(w, "Get a token for a first user:  %s token --data-dir %s alice\n\n", self(), c.DataDir)
	case c.JWTSecret != "":
		fmt.Fprintf(w, "Get a token for a first user:  %s token alice   (with the same PARLEY_JWT_SECRET)\n\n", self())
	default:
		fmt.Fprintf(w, "Tokens: RS256, ES256 or EdDSA, signed with the private key of %s\n\n", c.JWTPublicKey)
	}
}

// self is how to invoke this binary again: ./bin/parleyd after make run.
func self() string {
	p := os.Args[0]
	if !strings.ContainsRune(p, '/') || strings.Contains(p, "go-build") {
		return "parleyd"
	}
	if rel, err := filepath.Rel(".", p); err == nil && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel) {
		return "./" + rel
	}
	return p
}

func hostPort(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && (ta.IP == nil || ta.IP.IsUnspecified()) {
		return net.JoinHostPort("localhost", strconv.Itoa(ta.Port))
	}
	return a.String()
}
