package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/parley-im/parley/clients/parley"
)

// sendDeviceSuffix is appended to the device of `parley send`, so that a
// one-off send does not take over the session of a `listen` or `chat`
// running with the same device.
const sendDeviceSuffix = "-send"

func (c *cli) send(ctx context.Context, args []string) error {
	fs, cf := commandFlags("send", true)
	to := fs.String("to", "", "recipient: a user id, g:GROUP or a conversation id dm:A:B (required)")
	typ := fs.String("type", "text", "message type")
	cid := fs.String("cid", "", "client message id (default random); a send repeated with the same cid is stored once")
	bodyJSON := fs.Bool("body-json", false, "TEXT is a JSON value, sent as the body as it is")
	ephemeral := fs.Bool("ephemeral", false, "send without storing: only members online now get it")
	replyTo := fs.Int64("reply-to", 0, "reply to the message with this seq in the conversation")
	mention := fs.String("mention", "", "comma-separated users the message mentions (members of the conversation)")
	var files fileList
	fs.Var(&files, "file", "attach the file at this `path` (uploaded first; repeat for more)")
	pos, err := c.parseFlags(fs, "send --to PEER|g:GROUP [flags] TEXT...   (TEXT \"-\" reads standard input)", args)
	if err != nil {
		return err
	}
	if *to == "" {
		return usagef("--to is required")
	}
	if *replyTo < 0 {
		return usagef("--reply-to takes the seq of a message, 1 or more")
	}
	if len(pos) == 0 && len(files) == 0 {
		return usagef("no message text")
	}
	text := strings.Join(pos, " ")
	if text == "-" {
		b, err := io.ReadAll(c.stdin)
		if err != nil {
			return fmt.Errorf("read standard input: %w", err)
		}
		text = strings.TrimSuffix(string(b), "\n")
	}
	var body any = text
	if *bodyJSON {
		if !json.Valid([]byte(text)) {
			return usagef("--body-json: the text is not valid JSON")
		}
		body = json.RawMessage(text)
	}
	if err := cf.check(); err != nil {
		return err
	}
	me, err := parley.TokenSubject(cf.token)
	if err != nil {
		return usagef("%v", err)
	}
	target, err := parley.ParseTarget(*to, me)
	if err != nil {
		return usagef("--to: %v", err)
	}
	refs, err := cf.uploadFiles(ctx, c, files)
	if err != nil {
		return err
	}
	o := cf.options(c, cf.device+sendDeviceSuffix)
	o.Handler = func(parley.Event) {} // only the result of the send matters
	cl, err := cf.dial(ctx, c, o)
	if err != nil {
		return err
	}
	defer cl.Close()
	opts := []parley.SendOption{parley.WithType(*typ)}
	if *cid != "" {
		opts = append(opts, parley.WithCID(*cid))
	}
	if *ephemeral {
		opts = append(opts, parley.Ephemeral())
	}
	if *replyTo != 0 {
		opts = append(opts, parley.ReplyTo(*replyTo))
	}
	for _, u := range strings.Split(*mention, ",") {
		if u = strings.TrimSpace(u); u != "" {
			opts = append(opts, parley.Mention(u))
		}
	}
	if len(refs) > 0 {
		opts = append(opts, parley.Attach(refs...))
	}
	sctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	m, err := cl.Send(sctx, target, body, opts...)
	if err != nil {
		return fmt.Errorf("send to %s: %w", target, err)
	}
	if cf.json {
		kind := "message"
		if *ephemeral {
			kind = "ephemeral"
		}
		return writeJSON(c.stdout, toMessageJSON(kind, m))
	}
	if *ephemeral {
		_, err = fmt.Fprintf(c.stdout, "sent ephemeral %s to %s\n", m.Type, m.Conv)
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "sent %s #%d (id %s)\n", m.Conv, m.Seq, m.ID)
	return err
}
