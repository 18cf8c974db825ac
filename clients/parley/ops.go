package parley

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Ops of the send payload other than a send.
const (
	opEdit    = "edit"
	opDelete  = "delete"
	opReact   = "react"
	opUnreact = "unreact"
)

// Edit replaces the body of message seq of the conversation with to by
// body (any value that encodes to JSON, as for Send). Only the author may
// edit, only messages (not events), and only within the server's edit
// window (48 hours by default).
//
// Edit, Delete, React and Unreact return the change event the server
// stored (a message of type TypeEdited, TypeDeleted, TypeReactionAdded or
// TypeReactionRemoved with its own Seq, whose Target is seq). Like a sent
// message, the event also reaches every device of every member, this one
// included, as an EventMessage: fold it into the messages shown with
// Apply there, not from the returned value, so that it is counted once.
// Delete, React and Unreact return a zero Message (Seq 0) and no error when
// the change was already made: a second delete, an emoji the user already
// reacted with, a reaction the user does not hold. No event is stored then.
//
// The ops go through the REST API (POST /v1/conversations/{conv}/messages
// with the payload's "op"), which answers every op, including those that
// change nothing. Each carries a random cid (or that of WithCID, the one
// SendOption that applies to ops); a request that failed for a reason
// that may pass (network, 5xx, store unavailable) is repeated with the same
// cid, which the server applies once, until ctx ends. Refusals are
// *ServerError matching ErrNoSuchMessage (unknown, not visible, or, for an
// edit or a reaction, deleted), ErrNotAllowed (not the author, not an
// admin, edit window passed, the target is an event), ErrNotMember,
// ErrNoSuchGroup, ErrInvalidPeer, ErrInvalidPayload (a null body, an
// invalid emoji) or ErrRateLimited.
func (a *API) Edit(ctx context.Context, to Target, seq int64, body any, opts ...SendOption) (Message, error) {
	raw, err := encodeBody(body)
	if err != nil {
		return Message{}, fmt.Errorf("parley: edit: %w", err)
	}
	return a.op(ctx, "edit", to, sendPayload{Op: opEdit, Target: seq, Body: raw}, opts)
}

// Delete deletes message seq of the conversation with to for everyone: the
// server erases its body and the bodies of its edits, and keeps the
// message as deleted (Deleted set, Body null). The author may delete a
// message, and so may a group's admins and owner. See Edit for the result
// and the errors.
func (a *API) Delete(ctx context.Context, to Target, seq int64, opts ...SendOption) (Message, error) {
	return a.op(ctx, "delete", to, sendPayload{Op: opDelete, Target: seq}, opts)
}

// React adds the user's reaction emoji (1 to 32 bytes of text, e.g. "👍")
// to message seq of the conversation with to. Any member may react, once
// per emoji. See Edit for the result and the errors.
func (a *API) React(ctx context.Context, to Target, seq int64, emoji string, opts ...SendOption) (Message, error) {
	return a.op(ctx, "react", to, sendPayload{Op: opReact, Target: seq, Emoji: emoji}, opts)
}

// Unreact takes back the user's reaction emoji to message seq of the
// conversation with to. See Edit for the result and the errors.
func (a *API) Unreact(ctx context.Context, to Target, seq int64, emoji string, opts ...SendOption) (Message, error) {
	return a.op(ctx, "unreact", to, sendPayload{Op: opUnreact, Target: seq, Emoji: emoji}, opts)
}

// op posts p, an op on message p.Target, with a cid, repeating it while
// it fails for reasons that may pass.
func (a *API) op(ctx context.Context, name string, to Target, p sendPayload, opts []SendOption) (Message, error) {
	if to.id == "" {
		return Message{}, fmt.Errorf("parley: %s: empty target: %w", name, ErrInvalidPeer)
	}
	if p.Target < 1 {
		return Message{}, fmt.Errorf("parley: %s: the seq of a message is required: %w", name, ErrInvalidPayload)
	}
	var cfg sendConfig
	for _, o := range opts {
		o(&cfg)
	}
	p.CID = cfg.cid
	if p.CID == "" {
		p.CID = newCID()
	}
	// Options that do not belong to ops are sent as they are, for the
	// server to refuse.
	if cfg.typSet {
		p.Type = cfg.typ
	}
	p.Ephemeral, p.ReplyTo, p.Mentions = cfg.ephemeral, cfg.replyTo, cfg.mentions
	path := "/v1/conversations/" + url.PathEscape(to.Conv(a.user)) + "/messages"
	backoff := 250 * time.Millisecond
	for {
		var out struct {
			Message
			Unchanged bool `json:"unchanged"`
		}
		err := a.do(ctx, http.MethodPost, path, p, &out)
		if err == nil {
			if out.Unchanged {
				return Message{}, nil
			}
			return out.Message, nil
		}
		var se *ServerError
		if errors.As(err, &se) {
			se.CID = p.CID
		}
		if !transient(err) || errors.Is(err, ErrRateLimited) || ctx.Err() != nil {
			return Message{}, err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Message returns message seq of conv with its current state (GET
// /v1/conversations/{conv}/messages/{seq}): the latest body, EditedAt,
// Deleted, ReplyTo, Mentions and Reactions. Errors match ErrNoSuchMessage
// (no such message, or not visible to the user) and ErrNotMember.
func (a *API) Message(ctx context.Context, conv string, seq int64) (Message, error) {
	var m Message
	err := a.do(ctx, http.MethodGet, "/v1/conversations/"+url.PathEscape(conv)+"/messages/"+strconv.FormatInt(seq, 10), nil, &m)
	return m, err
}

// SetSettings replaces the user's settings of conv (PUT
// /v1/conversations/{conv}/settings) and returns them as stored; s.Conv is
// ignored. A zero MutedUntil unmutes. The user's devices get
// EventSettings; Conversations returns the settings with each
// conversation. Errors match ErrNotMember (the user is not in conv) and
// ErrInvalid.
func (a *API) SetSettings(ctx context.Context, conv string, s Settings) (Settings, error) {
	in := struct {
		MutedUntil *string `json:"muted_until"`
		Archived   bool    `json:"archived"`
		Pinned     bool    `json:"pinned"`
	}{Archived: s.Archived, Pinned: s.Pinned}
	if !s.MutedUntil.IsZero() {
		ts := s.MutedUntil.UTC().Format(time.RFC3339Nano)
		in.MutedUntil = &ts
	}
	var out Settings
	err := a.do(ctx, http.MethodPut, "/v1/conversations/"+url.PathEscape(conv)+"/settings", in, &out)
	if out.Conv == "" {
		out.Conv = conv
	}
	return out, err
}
