package rest

import (
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/files"
	"github.com/parley-im/parley/internal/wire"
)

// fileRoutes are the routes of attachments (docs/api.md#files). Uploads
// have their own body cap (files.Service.MaxUpload); GET /v1/files/{id}
// also accepts a signed URL instead of a bearer token.
var fileRoutes = []route{
	{"POST", "/v1/uploads", (*API).postUpload},
	{"GET", "/v1/files/{id}", (*API).getFile},
	{"POST", "/v1/files/{id}/url", (*API).postFileURL},
	// Resumable uploads (tus.go); POST /v1/uploads with a Tus-Resumable
	// header creates one.
	{"HEAD", "/v1/uploads/{id}", (*API).headUpload},
	{"PATCH", "/v1/uploads/{id}", (*API).patchUpload},
	{"DELETE", "/v1/uploads/{id}", (*API).deleteUpload},
	{"GET", "/v1/uploads/{id}", (*API).getUpload},
}

// registerFiles adds fileRoutes to mux; without Files they answer 404.
func (b *API) registerFiles(mux *http.ServeMux) {
	if b.Files != nil {
		t, err := newTus(b)
		if err != nil {
			b.Log.Error("resumable uploads are off", "error", err)
		}
		b.tus = t
	}
	for _, rt := range fileRoutes {
		h := b.auth(rt.handler(b))
		switch {
		case b.Files == nil || (b.tus == nil && strings.HasPrefix(rt.pattern, "/v1/uploads/")):
			h = func(w http.ResponseWriter, r *http.Request) {
				writeError(w, &apiError{http.StatusNotFound, "not_found", "file uploads are not enabled on this server"})
			}
		case rt.pattern == "/v1/uploads" || rt.method == "PATCH":
			// The handler bounds the body itself: a large cap of its own
			// (tusd's, up to the upload's length, for a PATCH).
		case rt.method == "GET" && rt.pattern == "/v1/files/{id}":
			h = capBody(maxBody, b.signedOr(h))
		default:
			h = capBody(maxBody, h)
		}
		mux.HandleFunc(rt.method+" "+rt.pattern, h)
	}
}

// uploadJSON is an upload on the wire.
type uploadJSON struct {
	ID          string `json:"id"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	URL         string `json:"url"`
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
	Thumbnail   string `json:"thumbnail,omitempty"`
}

// postUpload stores the request body as a file of the user: Content-Type
// and Content-Length are required; 413 too_large beyond the limit, 413
// quota_exceeded beyond the user's quota and 429 rate_limited (with
// Retry-After) beyond the user's upload rate, both before the body is read.
func (b *API) postUpload(w http.ResponseWriter, r *http.Request, user string) {
	if r.Header.Get("Tus-Resumable") != "" && b.tus != nil {
		b.postTus(w, r, user)
		return
	}
	if r.ContentLength < 0 {
		writeError(w, &apiError{http.StatusBadRequest, wire.CodeInvalidPayload, "Content-Length is required: send the file with its length, not chunked"})
		return
	}
	if r.ContentLength > b.Files.MaxUpload {
		w.Header().Set("Connection", "close")
		writeError(w, tooLarge(b.Files.MaxUpload))
		return
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.Contains(ct, "/") || len(ct) > 255 {
		writeError(w, &apiError{http.StatusBadRequest, wire.CodeInvalidPayload, "Content-Type is required: the file's media type, such as image/png"})
		return
	}
	u, we := b.Files.Put(r.Context(), user, ct, r.ContentLength, http.MaxBytesReader(w, r.Body, b.Files.MaxUpload))
	if we != nil {
		if we.Code == wire.CodeQuotaExceeded || we.Code == wire.CodeRateLimited {
			w.Header().Set("Connection", "close") // the body was not read
		}
		b.fail(w, r, we)
		return
	}
	WriteJSON(w, http.StatusCreated, b.toUploadJSON(u))
}

func (b *API) toUploadJSON(u history.Upload) uploadJSON {
	return uploadJSON{ID: u.ID, Size: u.Size, ContentType: u.ContentType, SHA256: u.SHA256,
		URL: b.Files.URL(u.ID), Width: u.Width, Height: u.Height, Thumbnail: u.Thumbnail}
}

// signedOr serves a request that carries a valid signed URL (?exp=&sig=)
// without a bearer token, and passes any other to h. A request with a
// signature that does not verify gets 404, as a file it may not read.
func (b *API) signedOr(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if !q.Has("sig") {
			h(w, r)
			return
		}
		id := r.PathValue("id")
		if !b.Files.Verify(id, q.Get("exp"), q.Get("sig"), time.Now()) {
			writeError(w, &apiError{http.StatusNotFound, "not_found", "no such file, or the link has expired"})
			return
		}
		b.serveFile(w, r, "", id)
	}
}

func (b *API) getFile(w http.ResponseWriter, r *http.Request, user string) {
	b.serveFile(w, r, user, r.PathValue("id"))
}

// serveFile streams file id to user ("" for a signed URL) with Range,
// ETag and caching headers (http.ServeContent).
func (b *API) serveFile(w http.ResponseWriter, r *http.Request, user, id string) {
	f := b.openFile(w, r, user, id)
	if f == nil {
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("ETag", f.ETag)
	// A file never changes: private caches may keep it; the access check
	// is redone when they revalidate.
	h.Set("Cache-Control", "private, max-age=86400")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	if !files.IsImage(f.ContentType) {
		h.Set("Content-Disposition", "attachment")
	}
	http.ServeContent(w, r, "", f.ModTime, f)
}

// openFile opens file id for user ("" for a signed URL). When the user may
// not read it, or it does not open, it answers the error and returns nil.
func (b *API) openFile(w http.ResponseWriter, r *http.Request, user, id string) *files.File {
	f, err := b.Files.Open(r.Context(), user, id)
	if errors.Is(err, files.ErrNotFound) {
		writeError(w, &apiError{http.StatusNotFound, "not_found", "no such file"})
		return nil
	}
	if err != nil {
		b.fail(w, r, err)
		return nil
	}
	return f
}

// postFileURL answers a signed URL of a file the user may read.
func (b *API) postFileURL(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	f := b.openFile(w, r, user, id)
	if f == nil {
		return
	}
	f.Close()
	exp := time.Now().Add(b.Files.URLTTL).UTC()
	WriteJSON(w, http.StatusOK, map[string]string{"url": b.Files.URL(id), "expires_at": exp.Format(wire.TSLayout)})
}
