package parley

import (
	"context"
	"net/url"
	"strconv"
	"time"
)

// SearchOptions narrow a Search. Zero values do not narrow.
type SearchOptions struct {
	// Conv restricts the results to one conversation; From to one sender.
	Conv string
	From string
	// After and Before bound the messages' send times (exclusive).
	After, Before time.Time
	// Cursor is the Next of the previous page; "" for the first.
	Cursor string
	// Limit is the page size; 0 means the server's default (20), at most
	// 100.
	Limit int
}

// SearchResult is one message found by Search.
type SearchResult struct {
	Conv string `json:"conv"`
	Seq  int64  `json:"seq"`
	// Snippet is an excerpt of the message's text around its first match;
	// Highlights are the matches in it, as byte offsets.
	Snippet    string      `json:"snippet"`
	Highlights []Highlight `json:"highlights"`
	Message    Message     `json:"message"`
}

// Highlight is a match within a snippet: bytes Start (inclusive) to End
// (exclusive).
type Highlight struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// SearchPage is a page of search results, newest first.
type SearchPage struct {
	Results []SearchResult
	// Next is the Cursor of the next page; "" when there is none.
	Next string
}

// Search finds the messages the user may see whose text holds every word
// of query, the last one also as a prefix (GET /v1/search). Errors match
// ErrInvalid (no word in query, a bad cursor) and ErrNotFound (a server
// without search).
func (a *API) Search(ctx context.Context, query string, o SearchOptions) (SearchPage, error) {
	q := url.Values{"q": {query}}
	if o.Conv != "" {
		q.Set("conv", o.Conv)
	}
	if o.From != "" {
		q.Set("from", o.From)
	}
	if !o.After.IsZero() {
		q.Set("after", o.After.UTC().Format(time.RFC3339Nano))
	}
	if !o.Before.IsZero() {
		q.Set("before", o.Before.UTC().Format(time.RFC3339Nano))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var out struct {
		Results []SearchResult `json:"results"`
		Next    cursor         `json:"next"`
	}
	if err := a.get(ctx, "/v1/search", q, &out); err != nil {
		return SearchPage{}, err
	}
	return SearchPage{Results: out.Results, Next: string(out.Next)}, nil
}

// Block blocks user: direct sends between the two fail with ErrBlocked
// and neither sees the other's presence or typing (PUT /v1/blocks/{user}).
func (a *API) Block(ctx context.Context, user string) error {
	return a.do(ctx, "PUT", "/v1/blocks/"+url.PathEscape(user), nil, nil)
}

// Unblock unblocks user (DELETE /v1/blocks/{user}).
func (a *API) Unblock(ctx context.Context, user string) error {
	return a.do(ctx, "DELETE", "/v1/blocks/"+url.PathEscape(user), nil, nil)
}
