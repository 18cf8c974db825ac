// Package layout_test keeps the direction of imports honest (STYLE.md):
// cmd -> broker -> hooks -> internal engines -> history; mochi-mqtt only in
// broker and hooks (internal/plain: its packet and storage types); the
// stores do I/O only.
package layout_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/parley-im/parley"

// imports returns the direct imports of every package of the module.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[strings.TrimPrefix(f[0], module)] = f[1:]
	}
	if len(m) < 10 {
		t.Fatalf("go list found only %d packages", len(m))
	}
	return m
}

// plainMochi are the mochi-mqtt packages internal/plain, the plain MQTT
// engine, may import: the packet and storage types whose encodings it
// keeps in the store and carries between nodes, never the server.
var plainMochi = map[string]bool{
	"github.com/mochi-mqtt/server/v2/packets":       true,
	"github.com/mochi-mqtt/server/v2/hooks/storage": true,
}

func TestImportDirection(t *testing.T) {
	for pkg, deps := range imports(t) {
		for _, d := range deps {
			own, isOwn := strings.CutPrefix(d, module)
			mochi := strings.HasPrefix(d, "github.com/mochi-mqtt/")
			switch {
			case pkg == "/history":
				if strings.Contains(d, ".") {
					t.Errorf("history imports %s: it may import the standard library only", d)
				}
			case pkg == "/history/postgres" || pkg == "/history/sqlite":
				if isOwn && own != "/history" && own != "/migrations" && !strings.HasPrefix(own, "/history/internal/") {
					t.Errorf("%s imports %s: a store imports only history, its internal helpers and migrations", pkg, d)
				}
			case strings.HasPrefix(pkg, "/internal/"):
				if isOwn && (own == "/hooks" || own == "/broker" || strings.HasPrefix(own, "/cmd")) {
					t.Errorf("%s imports %s: engines never import hooks, broker or cmd", pkg, d)
				}
				if mochi && !(pkg == "/internal/plain" && plainMochi[d]) {
					t.Errorf("%s imports %s: only broker and hooks touch mochi-mqtt", pkg, d)
				}
			case pkg == "/web":
				if strings.Contains(d, ".") {
					t.Errorf("web imports %s: it embeds the client and imports the standard library only", d)
				}
			case pkg == "/hooks":
				if isOwn && (own == "/broker" || strings.HasPrefix(own, "/cmd")) {
					t.Errorf("hooks imports %s", d)
				}
			case strings.HasPrefix(pkg, "/clients/"):
				if isOwn || mochi {
					t.Errorf("%s imports %s: the SDK speaks only the public protocol", pkg, d)
				}
			}
		}
	}
}
