package main

import (
	"flag"
	"os"
	"regexp"
	"testing"
)

// TestREADMEListsEveryFlag: every flag of parleyd serve has its row in the
// README's settings table, with the environment variable its usage names,
// and the table lists no flag that is gone.
func TestREADMEListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // flag name -> its row
	re := regexp.MustCompile("(?m)^\\| `-([a-z0-9-]+)` \\| `(PARLEY_[A-Z0-9_]+)` \\|.*$")
	for _, m := range re.FindAllStringSubmatch(string(readme), -1) {
		rows[m[1]] = m[2]
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	m := NewMain()
	if err := m.defineFlags(fs, "serve"); err != nil {
		t.Fatal(err)
	}
	envOf := regexp.MustCompile(`\$(PARLEY_[A-Z0-9_]+)`)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		env, ok := rows[f.Name]
		if !ok {
			t.Errorf("README has no row for -%s (%s)", f.Name, f.Usage)
			return
		}
		if want := envOf.FindStringSubmatch(f.Usage); want != nil && want[1] != env {
			t.Errorf("README row of -%s names %s, the flag reads %s", f.Name, env, want[1])
		}
		delete(rows, f.Name)
	})
	for name := range rows {
		t.Errorf("README lists -%s, which parleyd serve does not have", name)
	}
	if n < 50 {
		t.Fatalf("only %d flags defined: is defineFlags still how serve's flags are made?", n)
	}
}
