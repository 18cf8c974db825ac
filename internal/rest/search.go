package rest

import (
	"net/http"
	"time"

	"github.com/parley-im/parley/history"
)

// Search page limits.
const (
	DefaultSearchLimit = 20
	MaxSearchLimit     = 100
)

// searchResultJSON is one search result: the message and a snippet of its
// text with the matches as byte offsets into the snippet.
type searchResultJSON struct {
	Conv       string              `json:"conv"`
	Seq        int64               `json:"seq"`
	Snippet    string              `json:"snippet"`
	Highlights []history.Highlight `json:"highlights"`
	Message    messageJSON         `json:"message"`
}

// privacy returns the API's Privacy store, or the 404 of a server without
// one.
func (b *API) privacy() (history.Privacy, error) {
	if b.Privacy == nil {
		return nil, &apiError{http.StatusNotFound, "not_found", "not available on this server"}
	}
	return b.Privacy, nil
}

// timeParam reads an RFC 3339 time query parameter; zero when absent.
func timeParam(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest(name + " must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	return t, nil
}

// search answers GET /v1/search: the messages the user may see that match
// q, newest first.
func (b *API) search(w http.ResponseWriter, r *http.Request, user string) {
	p, err := b.privacy()
	if err != nil {
		b.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	terms, err := history.SearchTerms(q.Get("q"))
	if err != nil {
		b.fail(w, r, badRequest(history.ErrorMessage(err)))
		return
	}
	limit, err := boundedLimit(r, DefaultSearchLimit, MaxSearchLimit)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	sq := history.SearchQuery{User: user, Terms: terms, From: q.Get("from"), Cursor: q.Get("cursor"), Limit: limit}
	if q.Has("conv") {
		if sq.Conv, err = convParamValue(q.Get("conv")); err != nil {
			b.fail(w, r, err)
			return
		}
	}
	if sq.From != "" && !history.ValidUserID(sq.From) {
		b.fail(w, r, badRequest("from must be a user id"))
		return
	}
	if sq.After, err = timeParam(r, "after"); err != nil {
		b.fail(w, r, err)
		return
	}
	if sq.Before, err = timeParam(r, "before"); err != nil {
		b.fail(w, r, err)
		return
	}
	msgs, next, err := p.Search(r.Context(), sq)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	out := make([]searchResultJSON, len(msgs))
	for i, m := range msgs {
		snippet, hs := history.Snippet(history.SearchText(m.Body), terms)
		if hs == nil {
			hs = []history.Highlight{}
		}
		out[i] = searchResultJSON{Conv: m.Conv, Seq: m.Seq, Snippet: snippet, Highlights: hs, Message: toMessageJSON(m)}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"results": out, "next": nullable(next)})
}

// convParamValue checks a conversation id given as a query parameter, as
// convParam checks {conv}.
func convParamValue(conv string) (string, error) {
	r := &http.Request{}
	r.SetPathValue("conv", conv)
	return convParam(r)
}
