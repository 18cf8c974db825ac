package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/parley-im/parley/internal/version"
)

// version prints the module version and VCS revision of this binary.
func (c *cli) version(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	pos, err := c.parseFlags(fs, "version", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("version takes no arguments")
	}
	_, err = fmt.Fprintln(c.stdout, "parley", version.Read())
	return err
}
