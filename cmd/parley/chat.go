package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/parley-im/parley/clients/parley"
)

// chatDrain bounds how long chat waits, after the end of its input, for the
// echo of the last line to be shown.
const chatDrain = 10 * time.Second

// chat sends the lines read from stdin to a user or group and prints the
// conversation as it goes, starting with its latest messages.
func (c *cli) chat(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	var cf config
	cf.flags(fs)
	backlog := fs.Int("history", 20, "how many of the latest messages to show first (at most 200)")
	pos, err := c.parseFlags(fs, "chat [flags] PEER|g:GROUP", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one user id or g:GROUP, got %d arguments", len(pos))
	}
	if err := cf.check(); err != nil {
		return err
	}
	me, err := parley.TokenSubject(cf.token)
	if err != nil {
		return usagef("%v", err)
	}
	target, err := parley.ParseTarget(pos[0], me)
	if err != nil {
		return usagef("%v", err)
	}
	conv := target.Conv(me)
	cl, err := cf.dial(ctx, c, cf.options(c, cf.device))
	if err != nil {
		return err
	}
	defer cl.Close()

	var shown int64 // highest seq printed
	if *backlog > 0 {
		hctx, cancel := context.WithTimeout(ctx, cf.timeout)
		p, err := cl.History(hctx, conv, parley.HistoryOptions{Limit: min(*backlog, 200)})
		cancel()
		switch {
		case err == nil:
			msgs := slices.Clone(p.Messages)
			slices.Reverse(msgs)
			for _, m := range msgs {
				c.chatLine(cf.json, m)
				shown = max(shown, m.Seq)
			}
		case errors.Is(err, parley.ErrNotFound), errors.Is(err, parley.ErrNotMember):
			// A conversation that has not started yet.
		default:
			fmt.Fprintf(c.stderr, "(history unavailable: %v)\n", err)
		}
	}
	if !cf.json {
		fmt.Fprintf(c.stderr, "chatting in %s as %s: type a message and press Enter; Ctrl-D leaves\n", conv, cl.ClientID())
	}

	// The sender reads lines and sends them in order; the loop below prints.
	type sent struct {
		seq int64
		err error
	}
	results := make(chan sent)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(results)
		sc := bufio.NewScanner(c.stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			// No timeout: a line typed while the server is away is sent
			// once it is back, or the user gives up with Ctrl-C.
			m, err := cl.Send(ctx, target, line)
			select {
			case results <- sent{m.Seq, err}:
			case <-done:
				return
			}
		}
		if err := sc.Err(); err != nil {
			select {
			case results <- sent{err: fmt.Errorf("read input: %w", err)}:
			case <-done:
			}
		}
	}()

	var lastSent int64
	input := results
	var drain <-chan time.Time
	for {
		if input == nil && shown >= lastSent {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-drain:
			return fmt.Errorf("the echo of #%d did not arrive within %v", lastSent, chatDrain)
		case r, ok := <-input:
			switch {
			case !ok:
				input = nil
				drain = time.After(chatDrain)
			case r.err != nil:
				fmt.Fprintf(c.stderr, "error: %v\n", r.err)
			default:
				lastSent = max(lastSent, r.seq)
			}
		case ev, ok := <-cl.Events():
			if !ok {
				return nil
			}
			switch {
			case ev.Kind == parley.EventMessage && ev.Message.Conv == conv:
				if ev.Message.Seq <= shown {
					continue
				}
				shown = ev.Message.Seq
				c.chatLine(cf.json, ev.Message)
				if ev.Message.From != me {
					rctx, cancel := context.WithTimeout(ctx, cf.timeout)
					if err := cl.MarkRead(rctx, conv, shown); err != nil && ctx.Err() == nil {
						fmt.Fprintf(c.stderr, "(mark read: %v)\n", err)
					}
					cancel()
				}
			case ev.Kind == parley.EventEphemeral && ev.Message.Conv == conv && ev.Message.Type == "typing":
				if !cf.json {
					fmt.Fprintf(c.stderr, "(%s is typing)\n", ev.Message.From)
				}
			case ev.Kind == parley.EventMessage && !cf.json:
				fmt.Fprintf(c.stderr, "(new message in %s from %s)\n", ev.Message.Conv, ev.Message.From)
			case ev.Kind == parley.EventError:
				fmt.Fprintf(c.stderr, "error: %s\n", errorText(ev.Err))
			}
		}
	}
}

func (c *cli) chatLine(asJSON bool, m parley.Message) {
	if asJSON {
		_ = writeJSON(c.stdout, toMessageJSON("message", m))
		return
	}
	fmt.Fprintln(c.stdout, messageLine(m, false))
}
