package rest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/defaults"
	"github.com/parley-im/parley/internal/files"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

// maxBody bounds REST request bodies other than sends (which are bounded by
// MaxPayload).
const maxBody = 1 << 20

// API is the REST API under /v1 (docs/api.md): history, conversations,
// sync, sends, read markers and groups, for users who present a bearer
// token.
type API struct {
	// Store serves the reads; required.
	Store history.Store
	// Service is the send pipeline; required.
	Service *send.Service
	// Tokens verifies bearer tokens; required.
	Tokens *auth.Tokens
	// MaxPayload bounds a send's body; default send.DefaultMaxPayload.
	MaxPayload int
	// Push stores devices' push tokens; nil: the push routes answer 404.
	Push history.Outboxer
	// PushProviders are the providers a token may name (those configured).
	PushProviders []string
	// Files stores and serves attachments; nil: the file routes answer 404.
	Files *files.Service
	// Privacy serves search, retention, blocks, account deletion and
	// export; nil: those routes answer 404.
	Privacy history.Privacy
	// Retention is the server's retention (PARLEY_RETENTION), for the
	// effective retention of PUT .../retention answers; 0: none.
	Retention time.Duration
	// OnBlock, when set, is told of every block and unblock (a, b).
	OnBlock func(a, b string)
	// Disconnect, when set, disconnects every device of a deleted user.
	Disconnect func(user string)
	// DeleteUser, when set, deletes an account with everything it owns
	// (the broker's: messages, files, tokens, connections); otherwise
	// DELETE /v1/users/me uses Service, Tokens and Disconnect.
	DeleteUser func(ctx context.Context, user string) (int, error)
	// Log defaults to slog.Default().
	Log *slog.Logger

	tus *tusServer // resumable uploads, with Files
}

// Register adds the routes of the API to mux, each behind bearer-token
// authentication and a cap on the request body, and answers 404 not_found
// for any other path under /v1/.
func (b *API) Register(mux *http.ServeMux) {
	defaults.Positive(&b.MaxPayload, send.DefaultMaxPayload)
	if b.Log == nil {
		b.Log = slog.Default()
	}
	limit := int64(max(maxBody, b.MaxPayload))
	for _, rt := range routes {
		mux.HandleFunc(rt.method+" "+rt.pattern, capBody(limit, b.auth(rt.handler(b))))
	}
	b.registerFiles(mux)
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{http.StatusNotFound, "not_found", "no such route"})
	})
}

// CleanPaths answers a request under /v1/ whose path is not in its clean form
// ("/v1/users/./messages", "//v1/...") with 404 not_found in the API's JSON,
// instead of the HTML redirect of http.ServeMux.
func CleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "//") {
			if c := path.Clean(p); c != p && c+"/" != p {
				writeError(w, &apiError{http.StatusNotFound, "not_found", "no such route"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Routes lists the REST routes as "METHOD /pattern", for tests and tooling.
func Routes() []string {
	out := make([]string, 0, len(routes)+len(fileRoutes))
	for _, r := range append(routes[:len(routes):len(routes)], fileRoutes...) {
		out = append(out, r.method+" "+r.pattern)
	}
	return out
}

// apiError is an error with its HTTP status and wire code.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func (b *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae)
		return
	}
	e, ok := wire.FromStore(err)
	if !ok {
		b.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	status, _ := wire.HTTPStatus(e.Code)
	if s := e.RetryAfterSeconds(); s > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(s))
	}
	writeError(w, &apiError{status, e.Code, e.Message})
}

func writeError(w http.ResponseWriter, e *apiError) {
	WriteJSON(w, e.status, map[string]any{"error": map[string]string{"code": e.code, "message": e.message}})
}

// WriteJSON writes v as a JSON answer with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// auth authenticates the Bearer token and passes the user on.
func (b *API) auth(h func(w http.ResponseWriter, r *http.Request, user string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
			writeError(w, &apiError{http.StatusUnauthorized, "unauthorized", "missing Authorization: Bearer <token>"})
			return
		}
		user, err := b.Tokens.Verify(strings.TrimSpace(token))
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley", error="invalid_token"`)
			msg := "invalid token"
			if errors.Is(err, auth.ErrTokenExpired) {
				msg = "token expired"
			}
			writeError(w, &apiError{http.StatusUnauthorized, "unauthorized", msg})
			return
		}
		h(w, r, user)
	}
}

// capBody refuses a request whose declared body is over limit bytes with 413
// too_large before reading it, and bounds the body of any other (a chunked
// one) to limit bytes: the handler's read then fails and it answers 413 too.
func capBody(limit int64, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			w.Header().Set("Connection", "close")
			writeError(w, tooLarge(limit))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h(w, r)
	}
}

func tooLarge(limit int64) *apiError {
	return &apiError{http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "request body larger than " + strconv.FormatInt(limit, 10) + " bytes"}
}

// readBody reads a request body of at most max bytes (413 too_large beyond).
func readBody(w http.ResponseWriter, r *http.Request, max int) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max)))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge(int64(max))
	}
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "invalid", "cannot read request body"}
	}
	return body, nil
}

// decode reads a JSON body of at most maxBody bytes into v; the body must be
// UTF-8 (400 invalid otherwise).
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(maxBody)
	}
	if err != nil {
		return &apiError{http.StatusBadRequest, "invalid", "cannot read request body"}
	}
	if optional && len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	// Go's decoder would turn invalid UTF-8 into U+FFFD: refuse it instead,
	// as sends do.
	if !utf8.Valid(body) {
		return &apiError{http.StatusBadRequest, "invalid", "request body is not valid UTF-8"}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{http.StatusBadRequest, "invalid", wire.JSONError("request body", v, err)}
	}
	return nil
}
