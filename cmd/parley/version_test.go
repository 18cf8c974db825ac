package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: version and --version print the build; version takes no
// arguments.
func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"Command", []string{"version"}, 0, "parley ", ""},
		{"Flag", []string{"--version"}, 0, "parley ", ""},
		{"Args", []string{"version", "extra"}, 2, "", "no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != tc.code || !strings.HasPrefix(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if tc.code == 0 && !strings.Contains(stdout.String(), runtime.Version()) {
				t.Fatalf("no Go version in %q", stdout.String())
			}
		})
	}
}
