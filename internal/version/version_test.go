package version

import (
	"runtime/debug"
	"testing"
)

func TestString(t *testing.T) {
	cases := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"Tagged", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "2bd695e1f0aa0123456789abcdef012345678901"}, {Key: "vcs.time", Value: "2026-11-30T07:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			"v1.2.0 (revision 2bd695e1f0aa, 2026-11-30T07:00:00Z) go1.26.8"},
		{"Modified", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261130070000-2bd695e1f0aa+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "2bd695e1f0aa0123456789abcdef012345678901"}, {Key: "vcs.modified", Value: "true"}}},
			"v0.0.0-20261130070000-2bd695e1f0aa+dirty (revision 2bd695e1f0aa, modified) go1.26.8"},
		{"Unstamped", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"(devel) (no VCS revision recorded) go1.26.8"},
		{"Empty", debug.BuildInfo{}, "(devel) (no VCS revision recorded)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromBuildInfo(&tc.bi).String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}
