package docs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	// The client oapi-codegen generates imports its runtime: importing it
	// here keeps its version in go.mod and go.sum, so that the module
	// cache has it and the generated client builds without a download.
	_ "github.com/oapi-codegen/runtime"
)

// TestOpenAPIGeneratesGoClient generates a Go client from openapi.yaml with
// oapi-codegen (a tool dependency in go.mod: `go tool oapi-codegen`) into a
// module of its own, then builds and vets it offline. App teams generate
// clients from this file; a name that two components share (a response
// and a parameter both called Group) breaks the generator.
func TestOpenAPIGeneratesGoClient(t *testing.T) {
	if testing.Short() {
		t.Skip("builds oapi-codegen and a generated client")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command: %v", err)
	}
	dir := t.TempDir()
	gen := exec.Command(gobin, "tool", "oapi-codegen", "-generate", "types,client", "-package", "parleyapi",
		"-o", filepath.Join(dir, "parleyapi", "client.gen.go"), "openapi.yaml")
	if err := os.Mkdir(filepath.Join(dir, "parleyapi"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s", err, out)
	}

	// The module of the generated client requires what this module
	// requires, at the same versions and with the same sums.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod = regexp.MustCompile(`(?m)^module .*$`).ReplaceAll(mod, []byte("module example.com/parleyapi"))
	mod = regexp.MustCompile(`(?m)^tool .*$`).ReplaceAll(mod, nil)
	sum, err := os.ReadFile("../go.sum")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), mod, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"build", "./..."}, {"vet", "./..."}} {
		cmd := exec.Command(gobin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOPROXY=off", "GOWORK=off")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("go %v of the generated client: %v\n%s", args, err, out.String())
		}
	}
}
