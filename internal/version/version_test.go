package version

import (
	"runtime/debug"
	"testing"

	"github.com/parley-im/parley/internal/testkit"
)

func TestString(t *testing.T) {
	testkit.RunCases(t, "String", []testkit.Case[debug.BuildInfo, string]{
		{Name: "Tagged", In: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "2bd695e1f0aa0123456789abcdef012345678901"}, {Key: "vcs.time", Value: "2026-11-30T07:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			Want: "v1.2.0 (revision 2bd695e1f0aa, 2026-11-30T07:00:00Z) go1.26.8"},
		{Name: "Modified", In: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261130070000-2bd695e1f0aa+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "2bd695e1f0aa0123456789abcdef012345678901"}, {Key: "vcs.modified", Value: "true"}}},
			Want: "v0.0.0-20261130070000-2bd695e1f0aa+dirty (revision 2bd695e1f0aa, modified) go1.26.8"},
		{Name: "Unstamped", In: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			Want: "(devel) (no VCS revision recorded) go1.26.8"},
		{Name: "Empty", In: debug.BuildInfo{}, Want: "(devel) (no VCS revision recorded)"},
	}, func(bi debug.BuildInfo) string { return FromBuildInfo(&bi).String() })
}
