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
		// Without go list the rule is not checked: that is a failure, not
		// a reason to pass.
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	for _, imp := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(imp, "/")
		if strings.Contains(first, ".") && imp != "github.com/eclipse/paho.mqtt.golang" {
			t.Errorf("the SDK imports %s: only the standard library and paho are allowed", imp)
		}
	}
}
