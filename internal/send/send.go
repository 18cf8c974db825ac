// Package send is the send pipeline: validation, rate limits, group commit
// (Committer), the membership cache (Groups), group changes and read
// markers. It knows nothing of MQTT or HTTP: the publish hook and the REST API
// call it, and it delivers through a Deliverer.
package send

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parley-im/parley/internal/defaults"
	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/moderation"
	"github.com/parley-im/parley/internal/wire"

	"github.com/parley-im/parley/history"
)

// DefaultMaxPayload is the default maximum size of a send payload: 64 KiB.
const DefaultMaxPayload = 64 << 10

// Deliverer hands stored messages and events to the inboxes of users (the
// delivery engine).
type Deliverer interface {
	// DeliverMessage delivers a stored message to every device of users;
	// callers deliver a conversation's messages in seq order.
	DeliverMessage(users []string, m history.Message)
	// DeliverEvent delivers an event (not stored) to every device of users
	// at qos.
	DeliverEvent(users []string, payload []byte, qos byte)
}

// AckDeliverer is a Deliverer that can write a transport's acknowledgement
// of a send (an MQTT PUBACK) to the sending connection together with the
// message's echo to it (delivery.Hub).
type AckDeliverer interface {
	Deliverer
	// DeliverMessageAck is DeliverMessage that also writes ack to conn, the
	// connection the message came from, in the same write as the echo to
	// it. It reports false when it could not (conn has no writer): the
	// caller acknowledges itself.
	DeliverMessageAck(users []string, m history.Message, conn any, ack []byte) bool
}

// Service is the send pipeline: it validates sends, stores them through the
// group committer (callers are answered only after the commit) and fans the
// stored messages out to the inbox of every member; it also moves read
// markers and changes groups. The MQTT publish hook and the REST API both
// call it.
type Service struct {
	// Store is the durable truth; required.
	Store history.Store
	// Groups caches group membership; required.
	Groups *Groups
	// Deliver delivers to inboxes; required.
	Deliver Deliverer
	// Committer batches sends into group commits; default one partition over
	// Store.
	Committer *Committer
	// Invalidate, when set, is told of every group change made through this
	// node (cluster mode tells the other nodes).
	Invalidate func(group string)
	// ReceiptGroupMax is the largest group whose members get read receipts;
	// default 100.
	ReceiptGroupMax int
	// Limiter limits sends, group creations and membership changes per user
	// (one bucket for all three); nil allows everything.
	Limiter *RateLimiter
	// EditWindow is how long after sending the author may edit a message;
	// 0 or less: no limit. (broker.Options applies the default, 48h.)
	EditWindow time.Duration
	// MaxPayload bounds a send payload; default DefaultMaxPayload.
	MaxPayload int
	// StoreTimeout bounds one store call on the send path; default 10s.
	StoreTimeout time.Duration
	// Moderate, when set, is asked about every send (ephemeral included)
	// and edit before it is stored or delivered (moderation.Client.Check):
	// Reject refuses it with wire.CodeRejected, Replace stores it with the
	// verdict's body, an error refuses it with wire.CodeUnavailable. It runs
	// on the caller's goroutine, so senders do not wait for each other.
	Moderate func(ctx context.Context, r moderation.Request) (moderation.Verdict, error)
	// Attach, when set, resolves the attachments of a send by from
	// (files.Service.Resolve); nil refuses sends with attachments.
	Attach func(ctx context.Context, from string, refs []wire.AttachmentRef) ([]history.Attachment, *wire.Error)
	// Privacy, when set, answers blocks and contacts for direct sends
	// (see checkDirect); nil: no blocks, DMPolicy "open".
	Privacy history.Privacy
	// DMPolicy is DMOpen (default) or DMContacts.
	DMPolicy string
	// Metrics, when set, counts messages.
	Metrics *metrics.Metrics
	// Log defaults to slog.Default().
	Log *slog.Logger

	inflight  sync.WaitGroup
	relations relations
}

// Wait blocks until every send and group change in progress has finished, or
// ctx is done.
func (m *Service) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { m.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Init checks the required fields and applies the defaults; call it once
// before use.
func (m *Service) Init() error {
	if m.Store == nil || m.Groups == nil || m.Deliver == nil {
		return errors.New("send: Service needs Store, Groups and Deliver")
	}
	defaults.Positive(&m.ReceiptGroupMax, DefaultReceiptGroupMax)
	if m.Committer == nil {
		m.Committer = &Committer{Store: m.Store}
	}
	defaults.Positive(&m.MaxPayload, DefaultMaxPayload)
	defaults.Positive(&m.StoreTimeout, 10*time.Second)
	if m.Log == nil {
		m.Log = slog.Default()
	}
	return nil
}

// Outcome is the result of an accepted payload.
type Outcome struct {
	// Message is the stored message or change event (zero when Ephemeral or
	// Unchanged).
	Message history.Message
	// Created is false for a retry with a cid seen before: Message is the
	// original.
	Created bool
	// Unchanged is set for an op that changed nothing and stored nothing (a
	// repeated reaction, a second delete).
	Unchanged bool
	// Ephemeral is set for an ephemeral send: delivered, not stored.
	Ephemeral bool
}

// Send validates payload, a send from user from to a user (kind TargetUser)
// or group (TargetGroup), stores it and fans it out. It returns the stored
// message and whether it was new; a retry with the same cid returns the
// original (created false) and echoes it to the sender's inbox only.
// Ephemeral sends and ops that change nothing return a zero Message (see
// Submit). A send to oneself fails with invalid_peer, one over the rate
// limit with rate_limited and the wait in RetryAfter.
func (m *Service) Send(ctx context.Context, from, kind, target string, payload []byte) (history.Message, bool, *wire.Error) {
	out, err := m.Submit(ctx, from, kind, target, payload)
	return out.Message, out.Created, err
}

// Submit is Send with the whole Outcome.
func (m *Service) Submit(ctx context.Context, from, kind, target string, payload []byte) (Outcome, *wire.Error) {
	m.inflight.Add(1)
	defer m.inflight.Done()
	p, perr := wire.ParseSendPayload(payload, m.MaxPayload)
	if perr != nil {
		return Outcome{}, perr
	}
	return m.apply(ctx, from, kind, target, p, nil)
}

// SendAcked is Send for a transport whose acknowledgement of the send, ack
// (an MQTT PUBACK), the Deliverer may write to conn, the sending
// connection, in the same write as the new message's echo to it (see
// AckDeliverer), after the commit. acked reports whether it did; when it
// did not (an error, a duplicate, an ephemeral send, a Deliverer that
// cannot), the caller acknowledges as Send's caller does.
func (m *Service) SendAcked(ctx context.Context, from, kind, target string, payload []byte, conn any, ack []byte) (acked bool, e *wire.Error) {
	m.inflight.Add(1)
	defer m.inflight.Done()
	p, perr := wire.ParseSendPayload(payload, m.MaxPayload)
	if perr != nil {
		return false, perr
	}
	a := &transportAck{conn: conn, packet: ack}
	_, e = m.apply(ctx, from, kind, target, p, a)
	return a.done && e == nil, e
}

// transportAck is an acknowledgement for the Deliverer to write with the
// echo; done once it took it.
type transportAck struct {
	conn   any
	packet []byte
	done   bool
}

// Apply runs p, a payload that the caller built (the REST API), as Submit
// runs a parsed one: it validates p (wire.SendPayload.Validate) first.
func (m *Service) Apply(ctx context.Context, from, kind, target string, p wire.SendPayload) (Outcome, *wire.Error) {
	m.inflight.Add(1)
	defer m.inflight.Done()
	if e := p.Validate(); e != nil {
		e.CID = p.CID
		return Outcome{}, e
	}
	return m.apply(ctx, from, kind, target, p, nil)
}

func (m *Service) apply(ctx context.Context, from, kind, target string, p wire.SendPayload, ack *transportAck) (Outcome, *wire.Error) {
	fail := func(code, format string, args ...any) (Outcome, *wire.Error) {
		e := wire.Errorf(code, format, args...)
		e.CID = p.CID
		return Outcome{}, e
	}
	var conv string
	var recipients []string
	switch kind {
	case wire.TargetUser:
		if !history.ValidUserID(target) {
			return fail(wire.CodeInvalidPeer, "invalid user id %q (1 to 64 of A-Z a-z 0-9 . _ @ -)", target)
		}
		if target == from {
			return fail(wire.CodeInvalidPeer, "you cannot send a direct message to yourself")
		}
		conv = history.DirectConvID(from, target)
		recipients = []string{from, target}
	case wire.TargetGroup:
		if !history.ValidGroupID(target) {
			return fail(wire.CodeNoSuchGroup, "invalid group id %q", target)
		}
		conv = history.GroupConvID(target)
	default:
		return fail(wire.CodeInvalidPeer, "unknown target kind %q", kind)
	}
	if ok, wait := m.Limiter.Take(from, time.Now()); !ok {
		e := wire.RateLimited("messages", wait)
		e.CID = p.CID
		return Outcome{}, e
	}
	quiet := false
	if kind == wire.TargetUser {
		var e *wire.Error
		if quiet, e = m.checkDirect(ctx, from, target, p); e != nil {
			e.CID = p.CID
			return Outcome{}, e
		}
	}
	var version int64
	if kind == wire.TargetGroup {
		members, v, err := m.Groups.MembersOf(ctx, target, from)
		version = v
		switch history.ErrorCode(err) {
		case "":
		case history.ENOTFOUND:
			return fail(wire.CodeNoSuchGroup, "no such group %q", target)
		case history.ENOTMEMBER:
			return fail(wire.CodeNotMember, "you are not a member of group %q", target)
		default:
			m.Log.Error("load group", "group", target, "error", err)
			return fail(wire.CodeUnavailable, "the message store is unavailable, try again")
		}
		recipients = users(members)
	}
	t := time.Now()
	id := history.NewID(t)
	if m.Moderate != nil && (p.Op == history.OpSend || p.Op == history.OpEdit) {
		body, e := m.moderate(ctx, id, t, conv, from, p)
		if e != nil {
			e.CID = p.CID
			return Outcome{}, e
		}
		p.Body = body
	}
	if p.Ephemeral {
		m.count("ephemeral")
		d := wire.Delivery{Kind: "ephemeral", Conv: conv, CID: p.CID, From: from, TS: t.UTC().Format(wire.TSLayout), Type: p.Type, Body: p.Body}
		others := make([]string, 0, len(recipients))
		for _, u := range recipients {
			if u != from && !quiet {
				others = append(others, u)
			}
		}
		m.Deliver.DeliverEvent(others, mustJSON(d), 0)
		return Outcome{Ephemeral: true}, nil
	}

	nm := history.NewMessage{Conv: conv, ID: id, CID: p.CID, From: from, TS: t, Type: p.Type, Body: p.Body,
		ReplyTo: p.ReplyTo, Mentions: p.Mentions, Target: p.Target, Emoji: p.Emoji}
	if len(p.Attachments) > 0 {
		if m.Attach == nil {
			return fail(wire.CodeInvalidPayload, "attachments are not enabled on this server")
		}
		as, e := m.Attach(ctx, from, p.Attachments)
		if e != nil {
			e.CID = p.CID
			return Outcome{}, e
		}
		nm.Attachments = as
	}
	if p.Op != history.OpSend {
		nm.Op = p.Op
	}
	if nm.Op == history.OpEdit && m.EditWindow > 0 {
		nm.EditSince = t.Add(-m.EditWindow)
	}
	var unchanged bool
	msg, created, err := m.Committer.Append(ctx, nm, func(res history.AppendResult) {
		if res.Unchanged {
			unchanged = true
			return
		}
		if !res.Created {
			// The echo goes to the sender's devices again, even those that
			// have it: clients dedup by (conv, seq).
			m.Deliver.DeliverEvent([]string{from}, wire.MessageDelivery(res.Message), 1)
			return
		}
		to := recipients
		if kind == wire.TargetUser && m.Privacy != nil {
			m.relations.stored(from, target)
		}
		if kind == wire.TargetGroup && res.MemberVersion != version {
			// Membership changed since the cache was read (perhaps on
			// another node): deliver to the members as of the commit.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			e, err := m.Groups.Load(ctx, target)
			cancel()
			if err == nil {
				to = users(e.members)
			} else {
				m.Log.Warn("reload group members", "group", target, "error", err)
			}
		}
		if ad, ok := m.Deliver.(AckDeliverer); ok && ack != nil {
			ack.done = ad.DeliverMessageAck(to, res.Message, ack.conn, ack.packet)
			return
		}
		m.Deliver.DeliverMessage(to, res.Message)
	})
	switch code := history.ErrorCode(err); code {
	case "":
	case history.ENOTMEMBER:
		m.Groups.Forget(target)
		return fail(wire.CodeNotMember, "you are not a member of group %q", target)
	case history.ENOTFOUND:
		m.Groups.Forget(target)
		return fail(wire.CodeNoSuchGroup, "no such group %q", target)
	case history.ENOMESSAGE, history.ENOTALLOWED:
		return fail(code, "%s", history.ErrorMessage(err))
	case history.EINVALID:
		// A reply or mention the store refused (not visible, not a member),
		// or, should one slip past ParseSendPayload, a value the store
		// cannot hold: this message alone fails (see Committer.appendBatch).
		return fail(wire.CodeInvalidPayload, "%s", history.ErrorMessage(err))
	default:
		m.Log.Error("store message", "conv", conv, "from", from, "error", err)
		return fail(wire.CodeUnavailable, "the message store is unavailable, try again")
	}
	switch {
	case unchanged:
		m.count("unchanged")
	case created:
		m.count("stored")
	default:
		m.count("duplicate")
	}
	return Outcome{Message: msg, Created: created, Unchanged: unchanged}, nil
}

// moderate asks Moderate about p, a send or an edit by from in conv that
// will be stored as id at t, and returns the body to store: p's, or the
// verdict's replacement.
func (m *Service) moderate(ctx context.Context, id string, t time.Time, conv, from string, p wire.SendPayload) (json.RawMessage, *wire.Error) {
	r := moderation.Request{ID: id, Type: moderation.TypeMessageCreated, TS: t.UTC(), Conv: conv, From: from, CID: p.CID,
		MsgType: p.Type, Body: p.Body, Ephemeral: p.Ephemeral, ReplyTo: p.ReplyTo, Mentions: p.Mentions}
	if p.Op == history.OpEdit {
		r.Type, r.Target = moderation.TypeMessageEdited, p.Target
	}
	v, err := m.Moderate(ctx, r)
	if err != nil {
		return nil, wire.Errorf(wire.CodeUnavailable, "the moderation service is unavailable, try again")
	}
	switch v.Action {
	case moderation.Reject:
		if v.Reason == "" {
			return nil, wire.Errorf(wire.CodeRejected, "the message was rejected by moderation")
		}
		return nil, wire.Errorf(wire.CodeRejected, "the message was rejected by moderation: %s", v.Reason)
	case moderation.Replace:
		// The replacement must be a body the sender could have sent.
		if len(v.Body) > m.MaxPayload || !utf8.Valid(v.Body) || !json.Valid(v.Body) || string(v.Body) == "null" {
			m.Log.Warn("moderation: replacement body refused: not JSON, null or too large", "conv", conv, "from", from, "id", id, "bytes", len(v.Body))
			return nil, wire.Errorf(wire.CodeUnavailable, "the moderation service is unavailable, try again")
		}
		return v.Body, nil
	}
	return p.Body, nil
}

func (m *Service) invalidate(group string) {
	if m.Invalidate != nil {
		m.Invalidate(group)
	}
}

func users(ms []history.Member) []string {
	out := make([]string, len(ms))
	for i, mb := range ms {
		out[i] = mb.User
	}
	return out
}

func (m *Service) count(result string) {
	if m.Metrics != nil {
		m.Metrics.Received.WithLabelValues(result).Inc()
	}
}
