package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/clients/parley"
)

// chatDrain bounds how long chat waits, after the end of its input, for the
// echo of the last line to be shown.
const chatDrain = 10 * time.Second

// typingEvery is how often, at most, chat tells the other members that the
// user is typing; typingShowEvery is how often, at most, it prints that
// another member is typing (once per burst: the sender repeats it every
// typingEvery while typing).
const (
	typingEvery     = 3 * time.Second
	typingShowEvery = 10 * time.Second
)

// chat sends the lines read from stdin to a user or group and prints the
// conversation as it goes, starting with its latest messages.
func (c *cli) chat(ctx context.Context, args []string) error {
	fs, cf := commandFlags("chat", true)
	backlog := fs.Int("history", 20, fmt.Sprintf("how many of the latest messages to show first, 0 to %d", maxPageLimit))
	arg, err := c.parseOneArg(fs, "chat [flags] PEER|g:GROUP", args, "user id or g:GROUP")
	if err != nil {
		return err
	}
	if err := checkRange("--history", *backlog, 0, maxPageLimit); err != nil {
		return err
	}
	if err := cf.check(); err != nil {
		return err
	}
	me, err := parley.TokenSubject(cf.token)
	if err != nil {
		return usagef("%v", err)
	}
	target, err := parley.ParseTarget(arg, me)
	if err != nil {
		return usagef("%v", err)
	}
	conv := target.Conv(me)
	cl, err := cf.dial(ctx, c, cf.options(c, cf.device))
	if err != nil {
		return err
	}
	defer cl.Close()

	in := &chatInput{}
	if !cf.json {
		if restore, ok := cbreak(c.stdin, c.stdout); ok {
			in.term, in.echo = true, c.stdout
			defer func() {
				// Leave the shell's prompt a line of its own after Ctrl-C.
				if in.rest() != "" {
					fmt.Fprintln(c.stdout)
				}
				restore()
			}()
		}
	}
	var shown int64           // highest seq printed
	var msgs []parley.Message // the messages printed, with the changes since folded in
	if *backlog > 0 {
		hctx, cancel := context.WithTimeout(ctx, cf.timeout)
		p, err := cl.History(hctx, conv, parley.HistoryOptions{Limit: *backlog})
		cancel()
		switch {
		case err == nil:
			page := slices.Clone(p.Messages)
			slices.Reverse(page)
			for _, m := range page {
				c.chatLine(in, cf.json, m, nil)
				shown = max(shown, m.Seq)
				if !m.IsChange() {
					// The page has the messages' state: their change
					// events are not folded in again.
					msgs = parley.Apply(msgs, m, me)
				}
			}
		case errors.Is(err, parley.ErrNotFound), errors.Is(err, parley.ErrNotMember):
			// A conversation that has not started yet.
		default:
			in.println(c.stderr, fmt.Sprintf("(history unavailable: %v)", err))
		}
	}
	if !cf.json {
		in.println(c.stderr, fmt.Sprintf("chatting in %s as %s: type a message and press Enter; Ctrl-D leaves", conv, cl.ClientID()))
		in.println(c.stderr, "("+chatCommandHelp+")")
	}

	done := make(chan struct{})
	defer close(done)
	lines := c.readChat(ctx, in, cl, target, done)
	// The sender sends the lines in order; the loop below prints.
	type sent struct {
		seq  int64
		err  error
		note string
	}
	results := make(chan sent)
	go func() {
		defer close(results)
		for line := range lines {
			if line.err != nil {
				select {
				case results <- sent{err: line.err}:
				case <-done:
				}
				return
			}
			var r sent
			cmd, err := parseChatCommand(line.text)
			switch {
			case err != nil:
				r.err = err
			case cmd.op == "help":
				r.note = "(" + chatCommandHelp + ")"
			default:
				// No timeout: a line typed while the server is away is
				// sent once it is back, or the user gives up with Ctrl-C.
				r.seq, r.err = runChatCommand(ctx, cl, target, cmd)
				if r.err == nil && r.seq == 0 && cmd.op != "send" {
					r.note = fmt.Sprintf("(/%s #%d: nothing to change)", cmd.op, cmd.seq)
				}
			}
			select {
			case results <- r:
			case <-done:
				return
			}
		}
	}()

	conn := watchConnection(ctx, cl)
	var notices connNotices
	typingShown := map[string]time.Time{} // when "(USER is typing)" was last printed
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
		case up := <-conn:
			if n := notices.seen(up); n != "" {
				in.println(c.stderr, n)
			}
		case r, ok := <-input:
			switch {
			case !ok:
				input = nil
				drain = time.After(chatDrain)
			case r.err != nil:
				in.println(c.stderr, fmt.Sprintf("error: %v", r.err))
			case r.note != "":
				in.println(c.stderr, r.note)
			default:
				lastSent = max(lastSent, r.seq)
			}
		case ev, ok := <-cl.Events():
			if !ok {
				return nil
			}
			if n := notices.eventArrived(cl.Connected()); n != "" {
				in.println(c.stderr, n)
			}
			switch {
			case ev.Kind == parley.EventMessage && ev.Message.Conv == conv:
				if ev.Message.Seq <= shown {
					continue
				}
				shown = ev.Message.Seq
				delete(typingShown, ev.Message.From)
				msgs = parley.Apply(msgs, ev.Message, me)
				c.chatLine(in, cf.json, ev.Message, msgs)
				if ev.Message.From != me && !ev.Message.IsChange() {
					rctx, cancel := context.WithTimeout(ctx, cf.timeout)
					if err := cl.MarkRead(rctx, conv, shown); err != nil && ctx.Err() == nil {
						in.println(c.stderr, fmt.Sprintf("(mark read: %v)", err))
					}
					cancel()
				}
			case ev.Kind == parley.EventEphemeral && ev.Message.Conv == conv && ev.Message.Type == "typing":
				// One notice per burst of typing, until the message comes.
				if from := ev.Message.From; !cf.json && time.Since(typingShown[from]) > typingShowEvery {
					typingShown[from] = time.Now()
					in.println(c.stderr, fmt.Sprintf("(%s is typing)", from))
				}
			case ev.Kind == parley.EventMessage && !cf.json:
				in.println(c.stderr, fmt.Sprintf("(new message in %s from %s)", ev.Message.Conv, ev.Message.From))
			case ev.Kind == parley.EventError:
				in.println(c.stderr, "error: "+errorText(ev.Err))
			}
		}
	}
}

// chatLine is a line of input, or the error that ended the input.
type chatLine struct {
	text string
	err  error
}

// readChat reads what the user types until the input ends (or Ctrl-D on a
// terminal) and returns the non-empty lines. While a line is being typed
// it tells the other members, at most once every typingEvery. It stops
// early when done is closed.
func (c *cli) readChat(ctx context.Context, in *chatInput, cl *parley.Client, target parley.Target, done <-chan struct{}) <-chan chatLine {
	// Buffered so that typing goes on while a send waits for the server.
	lines := make(chan chatLine, 256)
	var typingBusy atomic.Bool
	go func() {
		defer close(lines)
		var lastTyping time.Time
		buf := make([]byte, 4096)
		for {
			n, err := c.stdin.Read(buf)
			got, typing, eof := in.feed(buf[:n])
			if err != nil {
				got = append(got, in.rest()) // a last line without a newline
			}
			for _, l := range got {
				if l = strings.TrimSpace(l); l == "" {
					continue
				}
				lastTyping = time.Time{} // the next keystroke starts a new burst
				select {
				case lines <- chatLine{text: l}:
				case <-done:
					return
				}
			}
			if typing && time.Since(lastTyping) >= typingEvery && typingBusy.CompareAndSwap(false, true) {
				lastTyping = time.Now()
				go func() {
					defer typingBusy.Store(false)
					tctx, cancel := context.WithTimeout(ctx, typingEvery)
					defer cancel()
					_ = cl.Typing(tctx, target) // best effort: a lost indicator does no harm
				}()
			}
			if eof || err != nil {
				if err != nil && err != io.EOF {
					select {
					case lines <- chatLine{err: fmt.Errorf("read input: %w", err)}:
					case <-done:
					}
				}
				return
			}
		}
	}()
	return lines
}

// chatLine prints a message of the conversation, after its seq. For a
// change event of a message in msgs (those printed, with the changes
// folded in) it adds the message's state after the change: its reactions,
// or its new text.
func (c *cli) chatLine(in *chatInput, asJSON bool, m parley.Message, msgs []parley.Message) {
	if asJSON {
		_ = writeJSON(c.stdout, toMessageJSON("message", m))
		return
	}
	line := fmt.Sprintf("#%d %s", m.Seq, messageLine(m, false))
	if m.Type == parley.TypeReactionAdded || m.Type == parley.TypeReactionRemoved {
		if i, ok := slices.BinarySearchFunc(msgs, m.Target, func(x parley.Message, seq int64) int { return cmp.Compare(x.Seq, seq) }); ok {
			if r := reactionsText(msgs[i].Reactions); r != "" {
				line += " → " + strings.TrimSpace(r)
			} else {
				line += " → no reactions"
			}
		}
	}
	in.println(c.stdout, line)
}
