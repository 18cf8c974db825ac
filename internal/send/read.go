package send

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/parley-im/parley/internal/wire"

	"github.com/parley-im/parley/history"
)

// DefaultReceiptGroupMax is the default largest group whose members get read
// receipts.
const DefaultReceiptGroupMax = 100

// MarkRead moves user's read marker in conv forward to seq. When it moved,
// the user's devices and the other members (direct conversations always,
// groups up to ReceiptGroupMax members) get {"kind":"read",...}. It returns
// the marker after the call.
func (m *Service) MarkRead(ctx context.Context, user, conv string, seq int64) (int64, *wire.Error) {
	kind, a, b, ok := history.ParseConvID(conv)
	if !ok {
		return 0, wire.Errorf(wire.CodeInvalidPayload, "invalid conversation %q", conv)
	}
	after, moved, err := m.Store.MarkRead(ctx, user, conv, seq)
	switch history.ErrorCode(err) {
	case "":
	case history.ENOTMEMBER:
		return 0, wire.Errorf(wire.CodeNotMember, "you are not a member of %s", conv)
	case history.EINVALID:
		return 0, wire.Errorf(wire.CodeInvalidPayload, "%s", history.ErrorMessage(err))
	default:
		m.Log.Error("mark read", "conv", conv, "user", user, "error", err)
		return 0, wire.Errorf(wire.CodeUnavailable, "the message store is unavailable, try again")
	}
	if !moved {
		return after, nil
	}
	var others []string
	if kind == history.KindDirect {
		others = []string{a, b}
	} else if ms, _, err := m.Groups.MembersOf(ctx, a, user); err == nil && !history.HideReceipts(kind, len(ms), m.ReceiptGroupMax) {
		others = users(ms)
	}
	others = slices.DeleteFunc(others, func(u string) bool { return u == user })
	// The reader's own devices get its new counts with the receipt, so that
	// every device shows what the one that read shows.
	own := wire.Receipt{Kind: "read", Conv: conv, User: user, Seq: after}
	if unread, mentions, err := m.Store.Counts(ctx, user, conv); err == nil {
		own.Unread, own.Mentions = &unread, &mentions
	} else {
		m.Log.Warn("count unread", "conv", conv, "user", user, "error", err)
	}
	payload, _ := json.Marshal(own)
	m.Deliver.DeliverEvent([]string{user}, payload, 1)
	if len(others) > 0 {
		payload, _ = json.Marshal(wire.Receipt{Kind: "read", Conv: conv, User: user, Seq: after})
		m.Deliver.DeliverEvent(others, payload, 1)
	}
	return after, nil
}

// SetSettings stores user's settings of conv and sends them to the user's
// devices as a settings event.
func (m *Service) SetSettings(ctx context.Context, user, conv string, st history.Settings) (history.Settings, *wire.Error) {
	if _, _, _, ok := history.ParseConvID(conv); !ok {
		return st, wire.Errorf(wire.CodeInvalidPayload, "invalid conversation %q", conv)
	}
	out, err := m.Store.SetSettings(ctx, user, conv, st)
	switch history.ErrorCode(err) {
	case "":
	case history.ENOTMEMBER:
		return st, wire.Errorf(wire.CodeNotMember, "you are not a member of %s", conv)
	default:
		e, ok := wire.FromStore(err)
		if !ok {
			m.Log.Error("set settings", "conv", conv, "user", user, "error", err)
		}
		return st, e
	}
	m.Deliver.DeliverEvent([]string{user}, settingsPayload(conv, out), 1)
	return out, nil
}

// settingsPayload returns the settings event of conv.
func settingsPayload(conv string, st history.Settings) []byte {
	ev := wire.SettingsEvent{Kind: "settings", Conv: conv, Archived: st.Archived, Pinned: st.Pinned}
	if !st.MutedUntil.IsZero() {
		ts := st.MutedUntil.UTC().Format(wire.TSLayout)
		ev.MutedUntil = &ts
	}
	b, _ := json.Marshal(ev)
	return b
}
