package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/parley-im/parley/clients/parley"
)

// convArg turns a command-line conversation into a conversation id: dm:A:B
// and g:GROUP as they are, a user id as the direct conversation with me.
func convArg(arg, me string) string {
	if strings.HasPrefix(arg, "dm:") || strings.HasPrefix(arg, "g:") {
		return arg
	}
	return parley.DirectConv(me, arg)
}

// maxPageLimit is the most messages (or conversations) one page may have:
// the server's limit.
const maxPageLimit = 200

// checkRange reports a value of flag name outside lo to hi as a usage error.
func checkRange(name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return usagef("%s must be between %d and %d, got %d", name, lo, hi, v)
	}
	return nil
}

// history prints a page of a conversation's history, oldest first, or all
// of it.
func (c *cli) history(ctx context.Context, args []string) error {
	fs, cf := commandFlags("history", false)
	after := fs.Int64("after", 0, "messages after this seq, oldest first")
	before := fs.Int64("before", 0, "messages before this seq")
	limit := fs.Int("limit", 50, fmt.Sprintf("messages per page, 1 to %d", maxPageLimit))
	all := fs.Bool("all", false, "every message from the first (or from --after), page after page")
	arg, err := c.parseOneArg(fs, "history [flags] CONV|PEER|g:GROUP", args, "conversation (dm:A:B, g:GROUP or a user id)")
	if err != nil {
		return err
	}
	if err := checkRange("--limit", *limit, 1, maxPageLimit); err != nil {
		return err
	}
	if *after < 0 || *before < 0 {
		return usagef("--after and --before take a seq, 0 or more")
	}
	if *after > 0 && *before > 0 {
		return usagef("use --after or --before, not both")
	}
	if *all && *before > 0 {
		return usagef("--all pages forward: use it with --after, not --before")
	}
	api, rctx, done, err := cf.rest(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	conv := convArg(arg, api.User())
	o := parley.HistoryOptions{After: *after, Before: *before, Limit: *limit, Forward: *all}
	for {
		p, err := api.History(rctx, conv, o)
		if err != nil {
			return fmt.Errorf("history of %s: %w", conv, cf.restErr(err))
		}
		msgs := p.Messages
		descending := o.After == 0 && !o.Forward
		if descending {
			msgs = slices.Clone(msgs)
			slices.Reverse(msgs)
		}
		for _, m := range msgs {
			if err := c.printMessage(cf.json, m); err != nil {
				return err
			}
		}
		if p.Next == 0 {
			return nil
		}
		if !*all {
			if descending {
				fmt.Fprintf(c.stderr, "(older messages: --before %d)\n", p.Next)
			} else {
				fmt.Fprintf(c.stderr, "(more: --after %d)\n", p.Next)
			}
			return nil
		}
		o.After = p.Next
	}
}

func (c *cli) printMessage(asJSON bool, m parley.Message) error {
	if asJSON {
		return writeJSON(c.stdout, toMessageJSON("", m))
	}
	_, err := fmt.Fprintf(c.stdout, "#%d %s\n", m.Seq, messageLine(m, false))
	return err
}

// conversationJSON is a conversation as the REST API writes it: the SDK's
// Conversation with its last message in the wire format (the outer
// LastMessage and Messages hide the SDK's). Messages stays empty: the
// conversation list has none.
type conversationJSON struct {
	parley.Conversation
	LastMessage *messageJSON  `json:"last_message"`
	Messages    []messageJSON `json:"messages,omitempty"`
}

// conversations lists the user's conversations.
func (c *cli) conversations(ctx context.Context, args []string) error {
	fs, cf := commandFlags("conversations", false)
	limit := fs.Int("limit", 50, fmt.Sprintf("conversations per page, 1 to %d", maxPageLimit))
	cursor := fs.String("cursor", "", "the cursor printed after the previous page")
	pos, err := c.parseFlags(fs, "conversations [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if err := checkRange("--limit", *limit, 1, maxPageLimit); err != nil {
		return err
	}
	api, rctx, done, err := cf.rest(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	p, err := api.Conversations(rctx, parley.ListOptions{Limit: *limit, Cursor: *cursor})
	if err != nil {
		return cf.restErr(err)
	}
	if cf.json {
		for _, cv := range p.Conversations {
			out := conversationJSON{Conversation: cv}
			if cv.LastMessage != nil {
				m := toMessageJSON("", *cv.LastMessage)
				out.LastMessage = &m
			}
			if err := writeJSON(c.stdout, out); err != nil {
				return err
			}
		}
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CONVERSATION\tNAME\tLAST\tUNREAD\tLAST MESSAGE")
		for _, cv := range p.Conversations {
			last := ""
			if m := cv.LastMessage; m != nil {
				last = messageLine(*m, false)
			}
			fmt.Fprintf(tw, "%s\t%s\t#%d\t%d\t%s\n", cv.ID, cv.Name, cv.LastSeq, cv.Unread, last)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if p.Next != "" {
		fmt.Fprintf(c.stderr, "(more: --cursor %s)\n", p.Next)
	}
	return nil
}
