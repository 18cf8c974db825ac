package send

import (
	"context"
	"encoding/json"

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
	recipients := []string{user}
	if kind == history.KindDirect {
		recipients = []string{a, b}
	} else if ms, _, err := m.Groups.MembersOf(ctx, a, user); err == nil && len(ms) <= m.ReceiptGroupMax {
		recipients = users(ms)
	}
	payload, _ := json.Marshal(wire.Receipt{Kind: "read", Conv: conv, User: user, Seq: after})
	m.Deliver.DeliverEvent(recipients, payload, 1)
	return after, nil
}
