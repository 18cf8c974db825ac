package migrations

import (
	"io/fs"
	"slices"
	"testing"
)

func TestReportString(t *testing.T) {
	cases := []struct {
		name string
		r    Report
		want string
	}{
		{"UpToDate", Report{Version: 5}, "up to date at 00005"},
		{"One", Report{Applied: []int64{5}, Version: 5}, "applied 00005"},
		{"Range", Report{Applied: []int64{3, 4, 5}, Version: 5}, "applied 00003..00005"},
		{"Empty", Report{}, "up to date at 00000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDialectsInStep: both stores have the same migrations, numbered and
// named alike, so that a schema version means the same change in each.
func TestDialectsInStep(t *testing.T) {
	names := func(fsys fs.FS) []string {
		t.Helper()
		files, err := fs.Glob(fsys, "*.sql")
		if err != nil || len(files) == 0 {
			t.Fatalf("no migrations: %v", err)
		}
		return files
	}
	pg, lite := names(Postgres()), names(SQLite())
	if !slices.Equal(pg, lite) {
		t.Fatalf("postgres migrations %v, sqlite %v: want the same files", pg, lite)
	}
}
