// Package version says which build of Parley is running, from the module
// version and the VCS stamp that the Go toolchain records in every binary.
package version

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Info is what a binary knows about its own build.
type Info struct {
	// Version is the main module's version: a tag such as v1.2.0, a
	// pseudo-version for an untagged commit, or "(devel)" when the toolchain
	// could not tell.
	Version string
	// Revision is the VCS commit the binary was built from; empty when the
	// build was not stamped (go run, -buildvcs=false, no checkout).
	Revision string
	// Time is the commit time (RFC 3339) of Revision; empty with it.
	Time string
	// Modified reports a build from a working tree with uncommitted changes.
	Modified bool
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Read returns the running binary's Info; without build information (a
// binary built without module support) Version is "unknown".
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown"}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts Info from bi.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// String is the one-line report of the version subcommands, after the
// program's name: "v1.2.0 (revision 2bd695e1f0aa, 2026-11-30T07:00:00Z,
// modified) go1.26.8".
func (in Info) String() string {
	var b strings.Builder
	b.WriteString(in.Version)
	if in.Revision != "" {
		rev := in.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, " (revision %s", rev)
		if in.Time != "" {
			b.WriteString(", " + in.Time)
		}
		if in.Modified {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	} else {
		b.WriteString(" (no VCS revision recorded)")
	}
	if in.GoVersion != "" {
		b.WriteString(" " + in.GoVersion)
	}
	return b.String()
}
