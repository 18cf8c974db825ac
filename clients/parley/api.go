package parley

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// API is the REST half of a Parley client: history, conversations, sync and
// groups over HTTP, authenticated with the same token as MQTT. A Client
// embeds one; NewAPI makes one alone for programs that need no MQTT
// connection. An API is safe for concurrent use.
type API struct {
	base   string
	hc     *http.Client
	ownHC  bool
	tokens *tokens
	user   string
}

// NewAPI returns a REST client for opts.HTTP (default
// "http://localhost:8080") with opts.Token or opts.TokenSource (called now,
// to learn the user, and again when the server answers 401). Only the HTTP,
// HTTPClient, Token and TokenSource fields of opts are used. It makes no
// request.
func NewAPI(ctx context.Context, opts Options) (*API, error) {
	tk, err := newTokens(opts)
	if err != nil {
		return nil, err
	}
	tok, err := tk.get(ctx)
	if err != nil {
		return nil, err
	}
	user, err := TokenSubject(tok)
	if err != nil {
		return nil, err
	}
	base := opts.HTTP
	if base == "" {
		base = DefaultHTTP
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("parley: Options.HTTP %q is not an http(s) URL", base)
	}
	a := &API{base: strings.TrimRight(base, "/"), hc: opts.HTTPClient, tokens: tk, user: user}
	if a.hc == nil {
		a.hc = &http.Client{Timeout: 30 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
		a.ownHC = true
	}
	return a, nil
}

// User returns the user id of the token (its sub claim).
func (a *API) User() string { return a.user }

// CloseIdleConnections releases the idle connections of the HTTP client that
// NewAPI made (not those of Options.HTTPClient). Client.Close calls it.
func (a *API) CloseIdleConnections() {
	if a.ownHC {
		a.hc.CloseIdleConnections()
	}
}

// get is do for a GET of path with the query q, if any.
func (a *API) get(ctx context.Context, path string, q url.Values, out any) error {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return a.do(ctx, http.MethodGet, path, nil, out)
}

// do sends a request with the token and decodes a 2xx JSON answer into out.
// Errors are *ServerError for HTTP errors, others for transport failures.
func (a *API) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("parley: %s %s: encode request: %w", method, path, err)
		}
	}
	tok, err := a.tokens.get(ctx)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("parley: %s %s: %w", method, path, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := a.hc.Do(req)
		if err != nil {
			return fmt.Errorf("parley: %s %s: %w", method, path, err)
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("parley: %s %s: read response: %w", method, path, err)
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && a.tokens.source != nil {
			if tok, err = a.tokens.refresh(ctx); err != nil {
				return err
			}
			continue
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return apiError(resp.StatusCode, raw)
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("parley: %s %s: decode response: %w", method, path, err)
		}
		return nil
	}
}

// apiError decodes {"error":{"code","message"}}, or makes a code from the
// status when the body is something else.
func apiError(status int, raw []byte) *ServerError {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
		return &ServerError{Status: status, Code: e.Error.Code, Message: e.Error.Message}
	}
	code := map[int]string{
		http.StatusBadRequest:            CodeInvalid,
		http.StatusUnauthorized:          CodeUnauthorized,
		http.StatusForbidden:             CodeForbidden,
		http.StatusNotFound:              CodeNotFound,
		http.StatusConflict:              CodeConflict,
		http.StatusRequestEntityTooLarge: CodeTooLarge,
		http.StatusTooManyRequests:       CodeRateLimited,
	}[status]
	if code == "" {
		code = CodeUnavailable
		if status < 500 {
			code = "http_" + strconv.Itoa(status)
		}
	}
	msg := strings.TrimSpace(string(raw))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &ServerError{Status: status, Code: code, Message: msg}
}

// transient reports whether a REST call that failed with err may succeed
// when repeated: transport errors, 408, 429 and 5xx.
func transient(err error) bool {
	var se *ServerError
	if !errors.As(err, &se) {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	return se.Status == http.StatusRequestTimeout || se.Status == http.StatusTooManyRequests || se.Status >= 500
}

// cursor decodes a "next" value: null, a string or a number.
type cursor string

func (c *cursor) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*c = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = cursor(s)
	default:
		*c = cursor(b)
	}
	return nil
}

// HistoryOptions select a page of a conversation's history. With After (or
// Forward), the page holds messages with seq > After in ascending order;
// with Before, messages with seq < Before in descending order; with neither,
// the latest messages in descending order.
type HistoryOptions struct {
	After int64
	// Forward pages forward from After also when After is 0, that is from
	// the first message.
	Forward bool
	Before  int64
	// Limit is the page size; 0 means the server's default (50). The
	// server's maximum is 200.
	Limit int
}

// MessagePage is a page of history.
type MessagePage struct {
	Messages []Message
	// Next is the value to pass again as After (ascending pages) or Before
	// (descending pages) for the next page; 0 when there is none.
	Next int64
	// ExpiredBefore, when not 0, is the first seq that the conversation's
	// retention kept: the messages before it were deleted.
	ExpiredBefore int64
}

// History returns a page of messages of conv (GET
// /v1/conversations/{conv}/messages). Only members may read; errors match
// ErrNotMember, ErrNotFound, ErrInvalid.
func (a *API) History(ctx context.Context, conv string, o HistoryOptions) (MessagePage, error) {
	q := url.Values{}
	if o.After > 0 || o.Forward {
		q.Set("after", strconv.FormatInt(o.After, 10))
	}
	if o.Before > 0 {
		q.Set("before", strconv.FormatInt(o.Before, 10))
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var out struct {
		Messages      []Message `json:"messages"`
		Next          cursor    `json:"next"`
		ExpiredBefore int64     `json:"expired_before"`
	}
	if err := a.get(ctx, "/v1/conversations/"+url.PathEscape(conv)+"/messages", q, &out); err != nil {
		return MessagePage{}, err
	}
	p := MessagePage{Messages: out.Messages, ExpiredBefore: out.ExpiredBefore}
	if out.Next != "" {
		n, err := strconv.ParseInt(string(out.Next), 10, 64)
		if err != nil {
			return MessagePage{}, fmt.Errorf("parley: history of %s: next %q is not a seq", conv, out.Next)
		}
		p.Next = n
	}
	return p, nil
}

// Conversation is one of the user's conversations.
type Conversation struct {
	// ID is the conversation id ("dm:A:B" or "g:GROUP").
	ID string `json:"id"`
	// Kind is "direct" or "group".
	Kind string `json:"kind"`
	// Peer is the other user of a direct conversation.
	Peer string `json:"peer,omitempty"`
	// Group is the group id of a group conversation.
	Group string `json:"group,omitempty"`
	// Name is the peer or group name to show.
	Name string `json:"name"`
	// LastSeq is the seq of the latest message.
	LastSeq int64 `json:"last_seq"`
	// ReadSeq is the user's read marker.
	ReadSeq int64 `json:"read_seq"`
	// Unread counts the messages of others above the read marker, not
	// counting events (edits, deletes, reactions, membership) and deleted
	// messages.
	Unread int64 `json:"unread"`
	// Mentions counts the unread messages that mention the user.
	Mentions int64 `json:"mentions"`
	// MutedUntil, Archived and Pinned are the user's settings of the
	// conversation (see SetSettings); MutedUntil is zero when it is not
	// muted.
	MutedUntil time.Time `json:"muted_until,omitzero"`
	Archived   bool      `json:"archived"`
	Pinned     bool      `json:"pinned"`
	// LastMessage is the latest message, nil when there is none.
	LastMessage *Message `json:"last_message"`
	// Messages are the new messages, in results of Sync when they are few.
	Messages []Message `json:"messages,omitempty"`
}

// ListOptions page through a list.
type ListOptions struct {
	// Limit is the page size; 0 means the server's default.
	Limit int
	// Cursor is the Next of the previous page; "" for the first.
	Cursor string
}

// ConversationPage is a page of conversations, most recently active first.
type ConversationPage struct {
	Conversations []Conversation
	// Next is the Cursor of the next page; "" when there is none.
	Next string
}

// Conversations returns a page of the user's conversations (GET
// /v1/conversations).
func (a *API) Conversations(ctx context.Context, o ListOptions) (ConversationPage, error) {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	var out struct {
		Conversations []Conversation `json:"conversations"`
		Next          cursor         `json:"next"`
	}
	if err := a.get(ctx, "/v1/conversations", q, &out); err != nil {
		return ConversationPage{}, err
	}
	return ConversationPage{Conversations: out.Conversations, Next: string(out.Next)}, nil
}

// SyncResult is what changed since a sync token.
type SyncResult struct {
	// Conversations changed since the token (all of them without one),
	// each with its new messages in Messages when they are few.
	Conversations []Conversation
	// Next is the token to pass to the next Sync.
	Next string
	// More reports that this is one page of several: call Sync with Next
	// again, right away, for the rest.
	More bool
}

// Sync returns a page of the conversations that changed since the token
// since (GET /v1/sync?since=); "" asks for a snapshot. While More is set,
// call it again with Next for the next page.
func (a *API) Sync(ctx context.Context, since string) (SyncResult, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	var out struct {
		Conversations []Conversation `json:"conversations"`
		Next          cursor         `json:"next"`
		More          bool           `json:"more"`
	}
	if err := a.get(ctx, "/v1/sync", q, &out); err != nil {
		return SyncResult{}, err
	}
	return SyncResult{Conversations: out.Conversations, Next: string(out.Next), More: out.More}, nil
}

// Member is a member of a group with its role: "owner", "admin" or
// "member".
type Member struct {
	User string `json:"user"`
	Role string `json:"role"`
}

// GroupInfo is a group and its members.
type GroupInfo struct {
	ID        string    `json:"id"`
	Conv      string    `json:"conv"`
	Name      string    `json:"name"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	Members   []Member  `json:"members"`
}

// NewGroup describes a group to create.
type NewGroup struct {
	// ID is the group id; "" lets the server generate one.
	ID string `json:"id,omitempty"`
	// Name is the display name; required.
	Name string `json:"name"`
	// Members join with the role "member"; the creator is the owner.
	Members []string `json:"members"`
}

// MemberChange is the result of AddMember or RemoveMember: the members after
// the change and the membership message written to the group conversation.
type MemberChange struct {
	Members []Member `json:"members"`
	Message Message  `json:"message"`
}

// CreateGroup creates a group owned by the user (POST /v1/groups). Errors
// match ErrInvalid, ErrConflict (the id is taken) and ErrRateLimited.
func (a *API) CreateGroup(ctx context.Context, g NewGroup) (GroupInfo, error) {
	if g.Members == nil {
		g.Members = []string{}
	}
	var out GroupInfo
	err := a.do(ctx, http.MethodPost, "/v1/groups", g, &out)
	return out, err
}

// Group returns a group and its members (GET /v1/groups/{id}). Errors match
// ErrNotFound: no such group, or the user is not (or no longer) a member.
func (a *API) Group(ctx context.Context, id string) (GroupInfo, error) {
	var out GroupInfo
	err := a.do(ctx, http.MethodGet, "/v1/groups/"+url.PathEscape(id), nil, &out)
	return out, err
}

// AddMember adds user to group with role "member" or "admin" ("" means
// "member"), or changes the role of a member (PUT
// /v1/groups/{id}/members/{user}). Errors match ErrForbidden, ErrNotFound
// (also when the caller is not a member), ErrConflict, ErrInvalid (the group
// is full), ErrRateLimited.
func (a *API) AddMember(ctx context.Context, group, user, role string) (MemberChange, error) {
	if role == "" {
		role = "member"
	}
	var out MemberChange
	err := a.do(ctx, http.MethodPut, "/v1/groups/"+url.PathEscape(group)+"/members/"+url.PathEscape(user),
		map[string]string{"role": role}, &out)
	return out, err
}

// RemoveMember removes user from group, or leaves it when user is the
// caller (DELETE /v1/groups/{id}/members/{user}). Errors match
// ErrForbidden, ErrNotFound (also when the caller is not a member),
// ErrRateLimited.
func (a *API) RemoveMember(ctx context.Context, group, user string) (MemberChange, error) {
	var out MemberChange
	err := a.do(ctx, http.MethodDelete, "/v1/groups/"+url.PathEscape(group)+"/members/"+url.PathEscape(user), nil, &out)
	return out, err
}
