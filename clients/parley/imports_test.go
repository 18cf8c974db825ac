package parley

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the SDK on the public protocol: it imports only the
// standard library and paho, nothing of the server.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(imp, "/")
		if strings.Contains(first, ".") && imp != "github.com/eclipse/paho.mqtt.golang" {
			t.Errorf("the SDK imports %s: only the standard library and paho are allowed", imp)
		}
	}
}
