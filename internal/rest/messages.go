package rest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// convTarget returns the send target of conv for user: the peer of a direct
// conversation (403 not_member when user is not one of its two users) or
// the group.
func convTarget(user, conv string) (kind, target string, err error) {
	k, a, c, _ := history.ParseConvID(conv)
	if k == history.KindGroup {
		return wire.TargetGroup, a, nil
	}
	switch user {
	case a:
		return wire.TargetUser, c, nil
	case c:
		return wire.TargetUser, a, nil
	}
	return "", "", &apiError{http.StatusForbidden, wire.CodeNotMember, "you are not part of " + conv}
}

// seqParam reads the {seq} path value.
func seqParam(r *http.Request) (int64, error) {
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	if err != nil || seq < 1 {
		return 0, &apiError{http.StatusNotFound, wire.CodeNoSuchMessage, "no such message: seq must be a positive integer"}
	}
	return seq, nil
}

// convSeqParams reads the {conv} and {seq} path values (convParam,
// seqParam).
func convSeqParams(r *http.Request) (string, int64, error) {
	conv, err := convParam(r)
	if err != nil {
		return "", 0, err
	}
	seq, err := seqParam(r)
	return conv, seq, err
}

// message returns message seq of conv as user sees it: 404 no_such_message
// when it does not exist or the user cannot see it.
func (b *API) message(r *http.Request, user, conv string, seq int64) (history.Message, error) {
	msgs, _, err := b.Store.History(r.Context(), history.HistoryQuery{User: user, Conv: conv, After: seq - 1, Limit: 1})
	if err != nil {
		return history.Message{}, err
	}
	if len(msgs) == 0 || msgs[0].Seq != seq {
		return history.Message{}, &apiError{http.StatusNotFound, wire.CodeNoSuchMessage, "no message " + strconv.FormatInt(seq, 10) + " in " + conv}
	}
	return msgs[0], nil
}

// getMessage answers one message with its current state.
func (b *API) getMessage(w http.ResponseWriter, r *http.Request, user string) {
	conv, seq, err := convSeqParams(r)
	var m history.Message
	if err == nil {
		m, err = b.message(r, user, conv, seq)
	}
	if err != nil {
		b.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, toMessageJSON(m))
}

// change runs op on message {seq} of {conv} through the send pipeline,
// like an MQTT payload {"op": op, "target": seq, ...}, and answers the
// message's state after the change: 200, also when the change was a retry
// (same cid) or changed nothing (a repeated reaction, a second delete).
func (b *API) change(w http.ResponseWriter, r *http.Request, user string, p wire.SendPayload) {
	conv, seq, err := convSeqParams(r)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	p.Target = seq
	kind, target, err := convTarget(user, conv)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	if p.CID == "" {
		p.CID = r.URL.Query().Get("cid")
	}
	if len(p.CID) > 0 && (len([]rune(p.CID)) > wire.MaxCIDLen || !history.ValidText(p.CID)) {
		b.fail(w, r, &apiError{http.StatusBadRequest, wire.CodeInvalidPayload, "cid must be 1 to 64 characters of text"})
		return
	}
	if _, serr := b.Service.Apply(r.Context(), user, kind, target, p); serr != nil {
		b.fail(w, r, serr)
		return
	}
	m, err := b.message(r, user, conv, p.Target)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, toMessageJSON(m))
}

// editMessage is PATCH {"body": ..., "cid": ...}.
func (b *API) editMessage(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		Body json.RawMessage `json:"body"`
		CID  string          `json:"cid"`
	}
	if err := decode(w, r, &req, false); err != nil {
		b.fail(w, r, err)
		return
	}
	if len(req.Body) > b.MaxPayload {
		// The bound of an MQTT send payload, so that no edit stores more
		// than a send could.
		b.fail(w, r, wire.Errorf(wire.CodeTooLarge, "body of %d bytes is larger than the server's limit of %d bytes", len(req.Body), b.MaxPayload))
		return
	}
	b.change(w, r, user, wire.SendPayload{Op: history.OpEdit, CID: req.CID, Body: req.Body})
}

func (b *API) deleteMessage(w http.ResponseWriter, r *http.Request, user string) {
	b.change(w, r, user, wire.SendPayload{Op: history.OpDelete})
}

func (b *API) putReaction(w http.ResponseWriter, r *http.Request, user string) {
	b.change(w, r, user, wire.SendPayload{Op: history.OpReact, Emoji: r.PathValue("emoji")})
}

func (b *API) deleteReaction(w http.ResponseWriter, r *http.Request, user string) {
	b.change(w, r, user, wire.SendPayload{Op: history.OpUnreact, Emoji: r.PathValue("emoji")})
}

// settingsJSON is a user's settings of a conversation on the wire.
type settingsJSON struct {
	Conv       string  `json:"conv,omitempty"`
	MutedUntil *string `json:"muted_until"`
	Archived   bool    `json:"archived"`
	Pinned     bool    `json:"pinned"`
}

func toSettingsJSON(conv string, s history.Settings) settingsJSON {
	out := settingsJSON{Conv: conv, Archived: s.Archived, Pinned: s.Pinned}
	if !s.MutedUntil.IsZero() {
		ts := s.MutedUntil.UTC().Format(wire.TSLayout)
		out.MutedUntil = &ts
	}
	return out
}

// putSettings replaces the user's settings of {conv}: {"muted_until":
// RFC 3339 time or null, "archived": bool, "pinned": bool}; fields left out
// are false or null.
func (b *API) putSettings(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		MutedUntil *string `json:"muted_until"`
		Archived   bool    `json:"archived"`
		Pinned     bool    `json:"pinned"`
	}
	conv, err := convBody(w, r, &req)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	var st history.Settings
	st.Archived, st.Pinned = req.Archived, req.Pinned
	if req.MutedUntil != nil {
		t, err := time.Parse(time.RFC3339Nano, *req.MutedUntil)
		if err != nil {
			b.fail(w, r, badRequest(`muted_until must be an RFC 3339 time, e.g. "2026-12-01T08:00:00Z", or null`))
			return
		}
		st.MutedUntil = t
	}
	out, serr := b.Service.SetSettings(r.Context(), user, conv, st)
	if serr != nil {
		b.fail(w, r, serr)
		return
	}
	WriteJSON(w, http.StatusOK, toSettingsJSON(conv, out))
}
