package rest

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// History page limits.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
	// syncMessages is how many of a changed conversation's latest messages
	// GET /v1/sync includes.
	syncMessages = 20
)

// Sync page limits: GET /v1/sync returns at most MaxSyncLimit conversations
// a page (DefaultSyncLimit without a limit parameter), and their messages add
// up to at most SyncMessageBytes (bodies plus a fixed allowance per message
// for the other fields); conversations beyond that budget come with fewer or
// no messages, which the client pages with GET
// /v1/conversations/{conv}/messages.
const (
	DefaultSyncLimit = 50
	MaxSyncLimit     = 100
	SyncMessageBytes = 1 << 20
)

// messageOverhead is what a message's fields other than the body take on
// the wire, roughly.
const messageOverhead = 256

// route is one REST route; routes is the table that both registers the
// handlers and is checked against docs/openapi.yaml.
type route struct {
	method, pattern string
	handle          func(b *API, w http.ResponseWriter, r *http.Request, user string) // a method expression: (*API).listMessages
}

// handler returns rt's handler bound to b.
func (rt route) handler(b *API) func(w http.ResponseWriter, r *http.Request, user string) {
	return func(w http.ResponseWriter, r *http.Request, user string) { rt.handle(b, w, r, user) }
}

var routes = []route{
	{"GET", "/v1/conversations", (*API).listConversations},
	{"GET", "/v1/conversations/{conv}/messages", (*API).listMessages},
	{"POST", "/v1/conversations/{conv}/messages", (*API).postConvMessage},
	{"POST", "/v1/users/{peer}/messages", (*API).postUserMessage},
	{"GET", "/v1/conversations/{conv}/messages/{seq}", (*API).getMessage},
	{"PATCH", "/v1/conversations/{conv}/messages/{seq}", (*API).editMessage},
	{"DELETE", "/v1/conversations/{conv}/messages/{seq}", (*API).deleteMessage},
	{"PUT", "/v1/conversations/{conv}/messages/{seq}/reactions/{emoji}", (*API).putReaction},
	{"DELETE", "/v1/conversations/{conv}/messages/{seq}/reactions/{emoji}", (*API).deleteReaction},
	{"PUT", "/v1/conversations/{conv}/settings", (*API).putSettings},
	{"POST", "/v1/conversations/{conv}/read", (*API).postRead},
	{"GET", "/v1/conversations/{conv}/receipts", (*API).getReceipts},
	{"GET", "/v1/sync", (*API).getSync},
	{"PUT", "/v1/devices/{device}/push", (*API).putPush},
	{"DELETE", "/v1/devices/{device}/push", (*API).deletePush},
	{"POST", "/v1/groups", (*API).createGroup},
	{"GET", "/v1/groups/{id}", (*API).getGroup},
	{"PUT", "/v1/groups/{id}/members/{user}", (*API).putMember},
	{"DELETE", "/v1/groups/{id}/members/{user}", (*API).deleteMember},
	{"GET", "/v1/search", (*API).search},
	{"PUT", "/v1/conversations/{conv}/retention", (*API).putRetention},
	{"GET", "/v1/blocks", (*API).listBlocks},
	{"PUT", "/v1/blocks/{user}", (*API).putBlock},
	{"DELETE", "/v1/blocks/{user}", (*API).deleteBlock},
	{"DELETE", "/v1/users/me", (*API).deleteMe},
	{"GET", "/v1/users/me/export", (*API).exportMe},
}

// conversationJSON is a conversation on the wire.
type conversationJSON struct {
	ID          string         `json:"id"`
	Kind        string         `json:"kind"`
	Peer        string         `json:"peer,omitempty"`
	Group       string         `json:"group,omitempty"`
	Name        string         `json:"name"`
	LastSeq     int64          `json:"last_seq"`
	ReadSeq     int64          `json:"read_seq"`
	Unread      int64          `json:"unread"`
	Mentions    int64          `json:"mentions"`
	MutedUntil  *string        `json:"muted_until"`
	Archived    bool           `json:"archived"`
	Pinned      bool           `json:"pinned"`
	LastMessage *messageJSON   `json:"last_message"`
	Messages    *[]messageJSON `json:"messages,omitempty"`
}

func toConversationJSON(v history.ConversationView) conversationJSON {
	c := conversationJSON{ID: v.ID, Kind: v.Kind, Peer: v.Peer, Group: v.Group, Name: v.Name,
		LastSeq: v.LastSeq, ReadSeq: v.ReadSeq, Unread: v.Unread, Mentions: v.Mentions,
		Archived: v.Settings.Archived, Pinned: v.Settings.Pinned}
	c.MutedUntil = toSettingsJSON("", v.Settings).MutedUntil
	if v.LastMessage != nil {
		m := toMessageJSON(*v.LastMessage)
		c.LastMessage = &m
	}
	return c
}

func toMessagesJSON(ms []history.Message) []messageJSON {
	out := make([]messageJSON, len(ms))
	for i, m := range ms {
		out[i] = toMessageJSON(m)
	}
	return out
}

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, "invalid", msg} }

// intParam reads a non-negative integer query parameter; def when absent.
func intParam(r *http.Request, name string, def int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest(name + " must be a non-negative integer")
	}
	return n, nil
}

func limitParam(r *http.Request) (int, error) { return boundedLimit(r, DefaultPageLimit, MaxPageLimit) }

// boundedLimit reads the limit parameter: def when absent, 1 to max.
func boundedLimit(r *http.Request, def, max int) (int, error) {
	n, err := intParam(r, "limit", int64(def))
	if err != nil {
		return 0, err
	}
	if n < 1 || n > int64(max) {
		return 0, badRequest("limit must be between 1 and " + strconv.Itoa(max))
	}
	return int(n), nil
}

// convParam reads and checks the {conv} path value. A direct conversation
// may name its users in either order: dm:bob:alice is dm:alice:bob, the
// canonical id that the answers carry.
func convParam(r *http.Request) (string, error) {
	conv := r.PathValue("conv")
	if users, ok := strings.CutPrefix(conv, "dm:"); ok {
		a, b, _ := strings.Cut(users, ":")
		if a == b && history.ValidUserID(a) {
			return "", &apiError{http.StatusNotFound, "not_found", "no such conversation: a direct conversation is between two different users"}
		}
		if history.ValidUserID(a) && history.ValidUserID(b) {
			conv = history.DirectConvID(a, b)
		}
	}
	if _, _, _, ok := history.ParseConvID(conv); !ok {
		return "", &apiError{http.StatusNotFound, "not_found", "no such conversation: ids are dm:USER1:USER2 or g:GROUP"}
	}
	return conv, nil
}

// convBody reads the {conv} path value (convParam) and decodes the JSON
// request body into v.
func convBody(w http.ResponseWriter, r *http.Request, v any) (string, error) {
	conv, err := convParam(r)
	if err != nil {
		return "", err
	}
	return conv, decode(w, r, v, false)
}

func (b *API) listConversations(w http.ResponseWriter, r *http.Request, user string) {
	limit, err := limitParam(r)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	views, next, err := b.Store.Conversations(r.Context(), user, r.URL.Query().Get("cursor"), limit)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	out := make([]conversationJSON, len(views))
	for i, v := range views {
		out[i] = toConversationJSON(v)
	}
	WriteJSON(w, http.StatusOK, map[string]any{"conversations": out, "next": nullable(next)})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// listMessages pages history: after=N ascending, before=N descending, neither:
// the latest messages, descending. next is the value to pass again as after
// (or before) while more remain.
func (b *API) listMessages(w http.ResponseWriter, r *http.Request, user string) {
	conv, err := convParam(r)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	limit, err := limitParam(r)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Has("after") && q.Has("before") {
		b.fail(w, r, badRequest("use after or before, not both"))
		return
	}
	after, err := intParam(r, "after", 0)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	before, err := intParam(r, "before", 0)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	descending := !q.Has("after")
	if descending && !q.Has("before") {
		before = 1 << 62
	}
	if descending && before == 0 {
		WriteJSON(w, http.StatusOK, map[string]any{"messages": []messageJSON{}, "next": nil})
		return
	}
	msgs, h, err := b.Store.History(r.Context(), history.HistoryQuery{User: user, Conv: conv, After: after, Before: before, Limit: limit})
	if err != nil {
		b.fail(w, r, err)
		return
	}
	var next any
	if n := len(msgs); n == limit {
		last := msgs[n-1].Seq
		if (!descending && last < h.Last) || (descending && last > h.First) {
			next = strconv.FormatInt(last, 10)
		}
	}
	res := map[string]any{"messages": toMessagesJSON(msgs), "next": next}
	if h.ExpiredBefore > 0 {
		// Retention deleted the messages before it (docs/api.md).
		res["expired_before"] = h.ExpiredBefore
	}
	WriteJSON(w, http.StatusOK, res)
}

func (b *API) postConvMessage(w http.ResponseWriter, r *http.Request, user string) {
	conv, err := convParam(r)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	tkind, target, err := convTarget(user, conv)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	b.send(w, r, user, tkind, target)
}

func (b *API) postUserMessage(w http.ResponseWriter, r *http.Request, user string) {
	b.send(w, r, user, wire.TargetUser, r.PathValue("peer"))
}

// send stores a message through the same pipeline as MQTT: 201 with the
// stored message, 200 with the original on a retry with the same cid.
func (b *API) send(w http.ResponseWriter, r *http.Request, user, kind, target string) {
	body, err := readBody(w, r, b.MaxPayload)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	out, serr := b.Service.Submit(r.Context(), user, kind, target, body)
	if serr != nil {
		b.fail(w, r, serr)
		return
	}
	switch {
	case out.Ephemeral: // delivered, not stored
		WriteJSON(w, http.StatusAccepted, map[string]any{"ephemeral": true})
	case out.Unchanged: // an op that changed nothing
		WriteJSON(w, http.StatusOK, map[string]any{"unchanged": true})
	case out.Created:
		WriteJSON(w, http.StatusCreated, toMessageJSON(out.Message))
	default: // a retry with a cid seen before: the original
		WriteJSON(w, http.StatusOK, toMessageJSON(out.Message))
	}
}

func (b *API) postRead(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		Seq *int64 `json:"seq"`
	}
	conv, err := convBody(w, r, &req)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	if req.Seq == nil {
		b.fail(w, r, badRequest(`body must be {"seq": N}`))
		return
	}
	after, serr := b.Service.MarkRead(r.Context(), user, conv, *req.Seq)
	if serr != nil {
		b.fail(w, r, serr)
		return
	}
	res := map[string]any{"conv": conv, "read_seq": after}
	if unread, mentions, err := b.Store.Counts(r.Context(), user, conv); err == nil {
		res["unread"], res["mentions"] = unread, mentions
	}
	WriteJSON(w, http.StatusOK, res)
}

// receiptJSON is one member's receipts on the wire: DeliveredSeq is set in
// direct conversations only (0 when no device acknowledged anything).
type receiptJSON struct {
	User         string `json:"user"`
	ReadSeq      int64  `json:"read_seq"`
	DeliveredSeq *int64 `json:"delivered_seq,omitempty"`
}

// getReceipts answers the other current members' read markers and, in
// direct conversations, the peer's delivered seq; hidden (no receipts) in a
// group larger than the live read events reach (send.Service's
// ReceiptGroupMax).
func (b *API) getReceipts(w http.ResponseWriter, r *http.Request, user string) {
	conv, err := convParam(r)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	rs, err := b.Store.Receipts(r.Context(), user, conv, b.Service.ReceiptGroupMax)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	out := make([]receiptJSON, len(rs.Members))
	for i, m := range rs.Members {
		out[i] = receiptJSON{User: m.User, ReadSeq: m.ReadSeq}
		if rs.Kind == history.KindDirect {
			out[i].DeliveredSeq = &rs.Members[i].DeliveredSeq
		}
	}
	res := map[string]any{"conv": conv, "receipts": out}
	if rs.Hidden {
		res["hidden"] = true
	}
	WriteJSON(w, http.StatusOK, res)
}

// getSync returns a page of the conversations changed since the token (all
// of them without one), each with its latest messages within the page's
// message budget, the next token and whether more remain.
func (b *API) getSync(w http.ResponseWriter, r *http.Request, user string) {
	limit, err := boundedLimit(r, DefaultSyncLimit, MaxSyncLimit)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	views, next, more, err := b.Store.Changes(r.Context(), user, r.URL.Query().Get("since"), limit)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	budget := SyncMessageBytes
	out := make([]conversationJSON, len(views))
	for i, v := range views {
		c := toConversationJSON(v)
		list := []messageJSON{}
		if budget >= messageOverhead && v.LastSeq > 0 {
			msgs, _, err := b.Store.History(r.Context(), history.HistoryQuery{User: user, Conv: v.ID, Before: v.LastSeq + 1, Limit: syncMessages})
			if err != nil {
				b.fail(w, r, err)
				return
			}
			// msgs are newest first: keep the newest that fit, so that the
			// list still ends at last_seq.
			n := 0
			for ; n < len(msgs) && len(msgs[n].Body)+messageOverhead <= budget; n++ {
				budget -= len(msgs[n].Body) + messageOverhead
			}
			if n < len(msgs) {
				budget = 0
			}
			msgs = msgs[:n]
			for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
				msgs[i], msgs[j] = msgs[j], msgs[i]
			}
			list = toMessagesJSON(msgs)
		}
		c.Messages = &list
		out[i] = c
	}
	WriteJSON(w, http.StatusOK, map[string]any{"conversations": out, "next": next, "more": more})
}
