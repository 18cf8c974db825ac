package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/parley-im/parley/clients/parley"
)

// listen prints every event until interrupted.
func (c *cli) listen(ctx context.Context, args []string) error {
	fs, cf := commandFlags("listen", true)
	presence := fs.String("presence", "", "comma-separated users whose presence to print (yourself, or users you share a conversation with)")
	gaps := fs.Bool("gaps", false, "print gap events (the gaps are filled from history either way)")
	pos, err := c.parseFlags(fs, "listen [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	o := cf.options(c, cf.device)
	o.ReportGaps = *gaps
	cl, err := cf.dial(ctx, c, o)
	if err != nil {
		return err
	}
	defer cl.Close()
	for _, u := range strings.Split(*presence, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, cf.timeout)
		err := cl.Presence(pctx, u)
		cancel()
		if err != nil {
			return err
		}
	}
	if !cf.json {
		fmt.Fprintf(c.stderr, "listening as %s (Ctrl-C stops)\n", cl.ClientID())
	}
	conn := watchConnection(ctx, cl)
	var notices connNotices
	for {
		select {
		case <-ctx.Done():
			return nil
		case up := <-conn:
			if n := notices.seen(up); n != "" {
				fmt.Fprintln(c.stderr, n)
			}
		case ev, ok := <-cl.Events():
			if !ok {
				return nil
			}
			if n := notices.eventArrived(cl.Connected()); n != "" {
				fmt.Fprintln(c.stderr, n)
			}
			if err := c.printEvent(cf.json, ev); err != nil {
				return err
			}
		}
	}
}

func (c *cli) printEvent(asJSON bool, ev parley.Event) error {
	if asJSON {
		return writeJSON(c.stdout, eventJSON(ev))
	}
	_, err := fmt.Fprintln(c.stdout, eventLine(ev))
	return err
}
