// Command testsummary reads `go test -json` on stdin and prints what a plain
// `go test` would print of it (one ok/FAIL line per package, the output of
// failed tests and of failed packages), then a summary of the skipped tests
// grouped by their reason.
//
// It exits 1 when a test or package failed, and when tests were skipped for
// want of PostgreSQL, Mosquitto, SeaweedFS or Chromium, unless
// PARLEY_ALLOW_SKIPS=1 is set: a local `make test` without PostgreSQL then
// fails instead of silently running half the suite. Lines that are not JSON
// (such as build errors) are passed through.
//
//	go test -json ./... | go run ./scripts/testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// required matches the skip reasons that fail the run unless
// PARLEY_ALLOW_SKIPS=1: tests that need PostgreSQL (internal/pgtest), the
// Mosquitto clients, SeaweedFS (internal/s3test) or Chromium (the web
// client's browser tests).
var required = regexp.MustCompile(`(?i)pgtest|postgres|mosquitto|seaweedfs|chromium`)

type key struct{ pkg, test string }

type summary struct {
	out     io.Writer
	output  map[key][]string // buffered output per test ("" for the package)
	skipped map[string][]string
	failed  int
	pkgs    int
}

func main() {
	s := &summary{out: os.Stdout, output: map[key][]string{}, skipped: map[string][]string{}}
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	os.Exit(s.report(os.Getenv("PARLEY_ALLOW_SKIPS") == "1"))
}

func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			fmt.Fprintln(s.out, string(line))
			continue
		}
		s.add(ev)
	}
	return sc.Err()
}

func (s *summary) add(ev event) {
	k := key{ev.Package, ev.Test}
	switch ev.Action {
	case "output", "build-output":
		s.output[k] = append(s.output[k], ev.Output)
	case "build-fail":
		s.failed++
		fmt.Fprint(s.out, strings.Join(s.output[k], ""))
		delete(s.output, k)
	case "fail":
		s.failed++
		if ev.Test == "" {
			s.pkgs++ // its own output holds panics, timeouts and the FAIL line
		}
		for _, l := range s.output[k] {
			if !strings.HasPrefix(l, "=== ") {
				fmt.Fprint(s.out, l)
			}
		}
		delete(s.output, k)
	case "pass":
		if ev.Test == "" {
			s.pkgs++
			fmt.Fprintf(s.out, "ok  \t%s\t%.3fs\n", ev.Package, ev.Elapsed)
		}
		delete(s.output, k)
	case "skip":
		if ev.Test == "" {
			delete(s.output, k) // no test files
			break
		}
		reason := skipReason(s.output[k])
		s.skipped[reason] = append(s.skipped[reason], ev.Package+" "+ev.Test)
		delete(s.output, k)
	}
}

// skipReason returns the message a test gave to t.Skip, from its output.
func skipReason(lines []string) string {
	var msg []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		// "file_test.go:12: reason": keep the reason only, so that tests
		// skipped for one cause group together.
		if _, rest, ok := strings.Cut(t, ": "); ok && strings.Contains(t[:len(t)-len(rest)], ".go:") {
			t = rest
		}
		msg = append(msg, t)
	}
	if len(msg) == 0 {
		return "(no reason given)"
	}
	return strings.Join(msg, " / ")
}

// report prints the skipped tests and returns the exit status.
func (s *summary) report(allowSkips bool) int {
	reasons := make([]string, 0, len(s.skipped))
	n := 0
	for r, tests := range s.skipped {
		reasons = append(reasons, r)
		n += len(tests)
	}
	sort.Strings(reasons)
	status := 0
	if s.failed > 0 {
		status = 1
	}
	fmt.Fprintf(s.out, "\ntest summary: %d packages, %d failed (tests and packages), %d tests skipped\n", s.pkgs, s.failed, n)
	var missing int
	for _, r := range reasons {
		tests := s.skipped[r]
		sort.Strings(tests)
		mark := ""
		if required.MatchString(r) {
			mark = " [required]"
			missing += len(tests)
		}
		shown := tests[:min(len(tests), 5)]
		more := ""
		if len(tests) > len(shown) {
			more = fmt.Sprintf(", and %d more", len(tests)-len(shown))
		}
		fmt.Fprintf(s.out, "  SKIP %d%s: %s\n    %s%s\n", len(tests), mark, r, strings.Join(shown, ", "), more)
	}
	if missing > 0 {
		if allowSkips {
			fmt.Fprintf(s.out, "test summary: %d tests that need PostgreSQL, Mosquitto, SeaweedFS or Chromium were skipped (allowed by PARLEY_ALLOW_SKIPS=1)\n", missing)
		} else {
			fmt.Fprintf(s.out, "test summary: FAIL: %d tests that need PostgreSQL, Mosquitto, SeaweedFS or Chromium were skipped; install them (see README) or set PARLEY_ALLOW_SKIPS=1\n", missing)
			status = 1
		}
	}
	return status
}
