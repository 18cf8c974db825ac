package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/parley-im/parley/clients/parley"
)

// seqArg parses the SEQ argument of a change.
func seqArg(s string) (int64, error) {
	seq, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || seq < 1 {
		return 0, usagef("SEQ must be the seq of a message (1 or more), got %q", s)
	}
	return seq, nil
}

// edit replaces a message's body.
func (c *cli) edit(ctx context.Context, args []string) error {
	return c.change(ctx, "edit", "edit [flags] CONV|PEER|g:GROUP SEQ TEXT...", args)
}

// deleteCmd deletes a message for everyone.
func (c *cli) deleteCmd(ctx context.Context, args []string) error {
	return c.change(ctx, "delete", "delete [flags] CONV|PEER|g:GROUP SEQ", args)
}

// react adds (or with --remove takes back) a reaction.
func (c *cli) react(ctx context.Context, args []string) error {
	return c.change(ctx, "react", "react [flags] CONV|PEER|g:GROUP SEQ EMOJI", args)
}

// change runs edit, delete or react over REST and prints the change event
// the server stored.
func (c *cli) change(ctx context.Context, name, synopsis string, args []string) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var cf config
	cf.flags(fs)
	cid := fs.String("cid", "", "client message id (default random); a change repeated with the same cid is applied once")
	var bodyJSON, remove *bool
	switch name {
	case "edit":
		bodyJSON = fs.Bool("body-json", false, "TEXT is a JSON value, the new body as it is")
	case "react":
		remove = fs.Bool("remove", false, "take back the reaction instead of adding it")
	}
	pos, err := c.parseFlags(fs, synopsis, args)
	if err != nil {
		return err
	}
	want := map[string]int{"edit": 3, "delete": 2, "react": 3}[name]
	switch {
	case name == "edit" && len(pos) < want:
		return usagef("want a conversation, a SEQ and the new TEXT")
	case name != "edit" && len(pos) != want:
		what := "a conversation and a SEQ"
		if name == "react" {
			what = "a conversation, a SEQ and an EMOJI"
		}
		return usagef("want %s, got %d arguments", what, len(pos))
	}
	seq, err := seqArg(pos[1])
	if err != nil {
		return err
	}
	var body any
	if name == "edit" {
		text := strings.Join(pos[2:], " ")
		body = text
		if *bodyJSON {
			if !json.Valid([]byte(text)) {
				return usagef("--body-json: the text is not valid JSON")
			}
			body = json.RawMessage(text)
		}
	}
	api, rctx, done, err := cf.rest(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	target, err := parley.ParseTarget(pos[0], api.User())
	if err != nil {
		return usagef("%v", err)
	}
	var opts []parley.SendOption
	if *cid != "" {
		opts = append(opts, parley.WithCID(*cid))
	}
	conv := target.Conv(api.User())
	var ev parley.Message
	switch {
	case name == "edit":
		ev, err = api.Edit(rctx, target, seq, body, opts...)
	case name == "delete":
		ev, err = api.Delete(rctx, target, seq, opts...)
	case *remove:
		ev, err = api.Unreact(rctx, target, seq, pos[2], opts...)
	default:
		ev, err = api.React(rctx, target, seq, pos[2], opts...)
	}
	if err != nil {
		return fmt.Errorf("%s %s #%d: %w", name, conv, seq, cf.restErr(err))
	}
	if cf.json {
		if ev.Seq == 0 {
			return writeJSON(c.stdout, map[string]any{"unchanged": true, "conv": conv, "target": seq})
		}
		return writeJSON(c.stdout, toMessageJSON("message", ev))
	}
	if ev.Seq == 0 {
		_, err = fmt.Fprintf(c.stdout, "%s #%d: nothing to change (%s)\n", conv, seq, unchangedReason(name, remove))
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s (%s #%d)\n", changeLine(ev), conv, ev.Seq)
	return err
}

// unchangedReason says why an op changed nothing.
func unchangedReason(name string, remove *bool) string {
	switch {
	case name == "delete":
		return "already deleted"
	case remove != nil && *remove:
		return "you had not reacted with it"
	}
	return "you had already reacted with it"
}

// changeLine describes a change event in words, without the time:
// "alice edited #3: new text", "bob reacted 👍 to #3".
func changeLine(m parley.Message) string {
	switch m.Type {
	case parley.TypeEdited:
		if m.Deleted || string(m.Body) == "null" {
			return fmt.Sprintf("%s edited #%d", m.From, m.Target)
		}
		return fmt.Sprintf("%s edited #%d: %s", m.From, m.Target, bodyText(m))
	case parley.TypeDeleted:
		return fmt.Sprintf("%s deleted #%d", m.From, m.Target)
	case parley.TypeReactionAdded:
		return fmt.Sprintf("%s reacted %s to #%d", m.From, m.Emoji, m.Target)
	case parley.TypeReactionRemoved:
		return fmt.Sprintf("%s took back %s from #%d", m.From, m.Emoji, m.Target)
	}
	return m.From + " [" + m.Type + "]"
}

// bodyText is the text of a text message, the JSON of other bodies.
func bodyText(m parley.Message) string {
	if m.Type == "text" || m.Type == parley.TypeEdited {
		return m.Text()
	}
	return string(m.Body)
}

// chatCommandHelp lists the commands of chat.
const chatCommandHelp = `commands: /reply SEQ TEXT, /edit SEQ TEXT, /delete SEQ, /react SEQ EMOJI, /unreact SEQ EMOJI, /help; //TEXT sends /TEXT`

// chatCommand is a parsed chat line: a message to send (op "send", maybe a
// reply) or a change.
type chatCommand struct {
	op    string // send, reply, edit, delete, react, unreact, help
	seq   int64
	text  string // the message or new body
	emoji string
}

// parseChatCommand parses a line typed in chat: a message, or a command
// starting with "/".
func parseChatCommand(line string) (chatCommand, error) {
	if !strings.HasPrefix(line, "/") {
		return chatCommand{op: "send", text: line}, nil
	}
	if strings.HasPrefix(line, "//") {
		return chatCommand{op: "send", text: line[1:]}, nil
	}
	name, rest, _ := strings.Cut(line[1:], " ")
	rest = strings.TrimSpace(rest)
	cmd := chatCommand{op: name}
	switch name {
	case "help", "?":
		cmd.op = "help"
		return cmd, nil
	case "reply", "edit", "delete", "react", "unreact":
	default:
		return cmd, fmt.Errorf("unknown command /%s; %s", name, chatCommandHelp)
	}
	seqText, arg, _ := strings.Cut(rest, " ")
	arg = strings.TrimSpace(arg)
	seq, err := strconv.ParseInt(strings.TrimPrefix(seqText, "#"), 10, 64)
	if err != nil || seq < 1 {
		return cmd, fmt.Errorf("/%s: want the seq of a message (the #N before it), got %q", name, seqText)
	}
	cmd.seq = seq
	switch name {
	case "delete":
		if arg != "" {
			return cmd, fmt.Errorf("/delete takes only a SEQ")
		}
	case "react", "unreact":
		if arg == "" || strings.Contains(arg, " ") {
			return cmd, fmt.Errorf("/%s: want SEQ EMOJI", name)
		}
		cmd.emoji = arg
	default:
		if arg == "" {
			return cmd, fmt.Errorf("/%s: want SEQ TEXT", name)
		}
		cmd.text = arg
	}
	return cmd, nil
}

// runChatCommand sends a chat line or runs its command; it returns the seq
// of what the server stored (0 for a change that changed nothing).
func runChatCommand(ctx context.Context, cl *parley.Client, target parley.Target, cmd chatCommand) (int64, error) {
	var m parley.Message
	var err error
	switch cmd.op {
	case "send":
		m, err = cl.Send(ctx, target, cmd.text)
	case "reply":
		m, err = cl.Reply(ctx, target, cmd.seq, cmd.text)
	case "edit":
		m, err = cl.Edit(ctx, target, cmd.seq, cmd.text)
	case "delete":
		m, err = cl.Delete(ctx, target, cmd.seq)
	case "react":
		m, err = cl.React(ctx, target, cmd.seq, cmd.emoji)
	case "unreact":
		m, err = cl.Unreact(ctx, target, cmd.seq, cmd.emoji)
	default:
		return 0, fmt.Errorf("unknown command /%s", cmd.op)
	}
	if err != nil && cmd.op != "send" {
		err = fmt.Errorf("/%s #%d: %w", cmd.op, cmd.seq, err)
	}
	return m.Seq, err
}
