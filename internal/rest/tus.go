package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/filelocker"
	"github.com/tus/tusd/v2/pkg/filestore"
	tus "github.com/tus/tusd/v2/pkg/handler"
	tuslog "golang.org/x/exp/slog" // tusd's logger: its own slog

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/files"
	"github.com/parley-im/parley/internal/wire"
)

// Resumable uploads (docs/api.md#resumable-uploads) speak the tus protocol
// 1.0 (https://tus.io, extensions creation, creation-with-upload and
// termination) through tusd's handler: POST /v1/uploads with a
// Tus-Resumable header creates an upload of Upload-Length bytes and answers
// its Location, /v1/uploads/{id}; PATCH appends at Upload-Offset, HEAD tells
// the offset to resume from, DELETE abandons it. The bytes so far live on
// the node's disk, in files.Service.PartialDir (tusd's filestore, with
// tusd's file locks, so that a directory shared by the nodes of a cluster
// works too); the last PATCH moves the whole file through the same checks,
// hash, thumbnail and record as a one-shot upload (files.Service.PutFile)
// into the blob store, and answers the upload as POST /v1/uploads does.
// Every request is authenticated, and an upload in progress answers its
// owner only: anyone else gets 404.

// tusMetaOwner and tusMetaType are the keys of the owner and the content
// type in an upload's tus metadata; the server sets the owner, the client
// the type (Upload-Metadata "content_type", or tus-js-client's "filetype").
const (
	tusMetaOwner = files.PartialOwnerKey
	tusMetaType  = "content_type"
)

// tusUser is the context key of the authenticated user of a tus request.
type tusUser struct{}

// tusServer serves resumable uploads.
type tusServer struct {
	api    *API
	h      *tus.UnroutedHandler
	store  filestore.FileStore
	locker filelocker.FileLocker
}

func newTus(b *API) (*tusServer, error) {
	t := &tusServer{api: b, store: filestore.New(b.Files.PartialDir), locker: filelocker.New(b.Files.PartialDir)}
	t.locker.HolderPollInterval, t.locker.AcquirerPollInterval = time.Second, 100*time.Millisecond
	composer := tus.NewStoreComposer()
	composer.UseCore(t.store)
	composer.UseTerminater(t.store)
	composer.UseLocker(t.locker)
	h, err := tus.NewUnroutedHandler(tus.Config{
		StoreComposer:           composer,
		MaxSize:                 b.Files.MaxUpload,
		BasePath:                "/v1/uploads/",
		DisableDownload:         true,
		DisableConcatenation:    true,
		Cors:                    &tus.CorsConfig{Disable: true},
		Logger:                  tuslog.New(tuslog.NewTextHandler(io.Discard, nil)),
		RespectForwardedHeaders: true,
		PreUploadCreateCallback: t.create,
		PreFinishResponseCallback: func(ev tus.HookEvent) (tus.HTTPResponse, error) {
			return t.finish(ev.Context, ev.Upload, ev.HTTPRequest.Method)
		},
	})
	if err != nil {
		return nil, err
	}
	t.h = h
	return t, nil
}

// tusError is an error answer of a tus callback in the API's error form.
func tusError(status int, code, message string) tus.Error {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
	return tus.Error{ErrorCode: code, Message: message, HTTPResponse: tus.HTTPResponse{StatusCode: status, Body: string(body) + "\n",
		Header: tus.HTTPHeader{"Content-Type": "application/json"}}}
}

// tusWireError is the answer of a tus callback for we: its status from the
// one table, and Retry-After for rate_limited.
func tusWireError(we *wire.Error) tus.Error {
	status, _ := wire.HTTPStatus(we.Code)
	te := tusError(status, we.Code, we.Message)
	if s := we.RetryAfterSeconds(); s > 0 {
		te.HTTPResponse.Header["Retry-After"] = strconv.Itoa(s)
	}
	return te
}

// create checks a new upload: its content type, then admits it
// (files.Service.Admit: the user's upload rate, and the user's quota with
// the declared Upload-Length); it gets an upload id and its owner.
func (t *tusServer) create(ev tus.HookEvent) (tus.HTTPResponse, tus.FileInfoChanges, error) {
	user, _ := ev.Context.Value(tusUser{}).(string)
	raw := ev.Upload.MetaData[tusMetaType]
	if raw == "" {
		raw = ev.Upload.MetaData["filetype"]
	}
	ct, _, err := mime.ParseMediaType(raw)
	if user == "" || err != nil || !strings.Contains(ct, "/") || len(ct) > 255 {
		return tus.HTTPResponse{}, tus.FileInfoChanges{}, tusError(http.StatusBadRequest, wire.CodeInvalidPayload,
			"Upload-Metadata must name the file's media type: content_type and its base64, such as image/png")
	}
	id := history.NewUploadID()
	if we := t.api.Files.AdmitResumable(ev.Context, user, id, ev.Upload.Size); we != nil {
		return tus.HTTPResponse{}, tus.FileInfoChanges{}, tusWireError(we)
	}
	return tus.HTTPResponse{}, tus.FileInfoChanges{ID: id, MetaData: tus.MetaData{tusMetaOwner: user, tusMetaType: ct}}, nil
}

// finish stores a complete upload as a file and forgets the upload in
// progress, unless the store is unavailable: then it stays, and GET
// /v1/uploads/{id} tries again. The caller holds the upload's lock.
func (t *tusServer) finish(ctx context.Context, info tus.FileInfo, method string) (tus.HTTPResponse, error) {
	u, we := t.api.Files.PutFile(ctx, info.ID, info.MetaData[tusMetaOwner], info.MetaData[tusMetaType], info.Storage[filestore.StorageKeyPath])
	if we == nil || we.Code != wire.CodeUnavailable {
		t.terminate(ctx, info.ID)
		t.api.Files.Release(info.MetaData[tusMetaOwner], info.ID)
	}
	if we != nil {
		return tus.HTTPResponse{}, tusWireError(we)
	}
	body, _ := json.Marshal(t.api.toUploadJSON(u))
	resp := tus.HTTPResponse{Body: string(body) + "\n", Header: tus.HTTPHeader{"Content-Type": "application/json"}}
	if method == "PATCH" {
		resp.StatusCode = http.StatusOK
	}
	return resp, nil
}

// terminate forgets upload id in progress.
func (t *tusServer) terminate(ctx context.Context, id string) {
	up, err := t.store.GetUpload(ctx, id)
	if err == nil {
		err = t.store.AsTerminatableUpload(up).Terminate(ctx)
	}
	if err != nil {
		t.api.Log.Warn("forget a finished upload", "id", id, "error", err)
	}
}

// inProgress returns upload id in progress if user owns it.
func (t *tusServer) inProgress(ctx context.Context, user, id string) (tus.FileInfo, bool) {
	if !history.ValidUploadID(id) || len(id) != 33 {
		return tus.FileInfo{}, false
	}
	up, err := t.store.GetUpload(ctx, id)
	if err != nil {
		return tus.FileInfo{}, false
	}
	info, err := up.GetInfo(ctx)
	if err != nil || info.MetaData[tusMetaOwner] != user {
		return tus.FileInfo{}, false
	}
	return info, true
}

// stored returns upload id if user uploaded it.
func (t *tusServer) stored(ctx context.Context, user, id string) (history.Upload, bool, error) {
	if !history.ValidUploadID(id) || len(id) != 33 {
		return history.Upload{}, false, nil
	}
	u, err := t.api.Files.Store.Upload(ctx, id)
	if history.ErrorCode(err) == history.ENOTFOUND {
		return history.Upload{}, false, nil
	}
	if err != nil {
		return history.Upload{}, false, err
	}
	return u, u.Owner == user, nil
}

// serve passes a request of user to tusd's handler h, with errors in the
// API's form, and returns the status tusd answered (before an error's is
// mapped to the API's); path is the request's path for tusd: the upload
// id, or "" for a creation.
func (t *tusServer) serve(w http.ResponseWriter, r *http.Request, user, path string, h http.HandlerFunc) int {
	r = r.WithContext(context.WithValue(r.Context(), tusUser{}, user))
	u := *r.URL
	u.Path = "/" + path
	r.URL = &u
	tw := &tusWriter{ResponseWriter: w, limit: t.api.Files.MaxUpload}
	t.h.Middleware(h).ServeHTTP(tw, r)
	tw.flush(r.Method)
	if tw.answered == 0 {
		return http.StatusOK // written without WriteHeader
	}
	return tw.answered
}

// postTus creates a resumable upload.
func (b *API) postTus(w http.ResponseWriter, r *http.Request, user string) {
	b.tus.serve(w, r, user, "", b.tus.h.PostFile)
}

// tusNotFound answers 404 for an upload that does not exist or that the
// user does not own.
func tusNotFound(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Tus-Resumable", "1.0.0")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == "HEAD" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	writeError(w, &apiError{http.StatusNotFound, "not_found", "no such upload"})
}

// headUpload tells the offset of an upload in progress; a finished upload
// answers its size as offset and length.
func (b *API) headUpload(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	if _, ok := b.tus.inProgress(r.Context(), user, id); ok {
		b.tus.serve(w, r, user, id, b.tus.h.HeadFile)
		return
	}
	u, ok, err := b.tus.stored(r.Context(), user, id)
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if !ok {
		tusNotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Tus-Resumable", "1.0.0")
	h.Set("Cache-Control", "no-store")
	h.Set("Upload-Offset", strconv.FormatInt(u.Size, 10))
	h.Set("Upload-Length", strconv.FormatInt(u.Size, 10))
	w.WriteHeader(http.StatusOK)
}

// patchUpload appends to an upload in progress.
func (b *API) patchUpload(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	if _, ok := b.tus.inProgress(r.Context(), user, id); !ok {
		w.Header().Set("Connection", "close") // do not read the body
		tusNotFound(w, r)
		return
	}
	b.tus.serve(w, r, user, id, b.tus.h.PatchFile)
}

// deleteUpload abandons an upload in progress.
func (b *API) deleteUpload(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	if _, ok := b.tus.inProgress(r.Context(), user, id); !ok {
		tusNotFound(w, r)
		return
	}
	if b.tus.serve(w, r, user, id, b.tus.h.DelFile) == http.StatusNoContent { // terminated
		b.Files.Release(user, id) // no longer counts against the quota
	}
}

// getUpload answers a finished upload of the user as POST /v1/uploads did.
// A complete upload that could not be stored then (the store was
// unavailable) is stored now; one still in progress is 409 conflict.
func (b *API) getUpload(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	u, ok, err := b.tus.stored(r.Context(), user, id)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	if ok {
		WriteJSON(w, http.StatusOK, b.toUploadJSON(u))
		return
	}
	info, ok := b.tus.inProgress(r.Context(), user, id)
	if !ok {
		tusNotFound(w, r)
		return
	}
	if info.Offset < info.Size {
		writeError(w, &apiError{http.StatusConflict, history.ECONFLICT, "the upload has " + strconv.FormatInt(info.Offset, 10) +
			" of its " + strconv.FormatInt(info.Size, 10) + " bytes: PATCH the rest"})
		return
	}
	lock, err := b.tus.locker.NewLock(id)
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		err = lock.Lock(ctx, func() {})
		cancel()
	}
	if err != nil {
		writeError(w, &apiError{http.StatusServiceUnavailable, wire.CodeUnavailable, "the upload is busy, try again"})
		return
	}
	defer lock.Unlock()
	if info, ok = b.tus.inProgress(r.Context(), user, id); !ok { // stored meanwhile
		b.getUpload(w, r, user)
		return
	}
	resp, err := b.tus.finish(r.Context(), info, "GET")
	var te tus.Error
	if errors.As(err, &te) {
		resp = te.HTTPResponse
	} else {
		resp.StatusCode = http.StatusOK
	}
	for k, v := range resp.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write([]byte(resp.Body))
}

// tusWriter turns tusd's plain-text error answers into the API's error form
// and its one table of codes: 404 not_found, 409 conflict (a PATCH at
// another offset than the upload's), 413 too_large, any other 4xx 400
// invalid (a missing Tus-Resumable header too, 412 in tus), any 5xx 503
// unavailable.
type tusWriter struct {
	http.ResponseWriter
	limit    int64 // MaxUpload, for the message of too_large
	answered int   // the final status tusd wrote, 0 before it did
	status   int   // of the error answer held for flush, 0 for none
	buf      bytes.Buffer
}

// Unwrap lets tusd's http.ResponseController reach the connection.
func (w *tusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *tusWriter) WriteHeader(code int) {
	if w.answered == 0 && code >= 200 {
		w.answered = code
	}
	if code >= 400 && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		w.status = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *tusWriter) Write(p []byte) (int, error) {
	if w.status != 0 {
		return w.buf.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

// flush writes a held error answer.
func (w *tusWriter) flush(method string) {
	if w.status == 0 {
		return
	}
	w.Header().Del("Content-Length")
	_, msg, ok := strings.Cut(strings.TrimSpace(w.buf.String()), ": ")
	if !ok || msg == "" {
		msg = http.StatusText(w.status)
	}
	status, code := w.status, history.EINVALID
	switch {
	case status == http.StatusNotFound:
		code = "not_found"
	case status == http.StatusRequestEntityTooLarge:
		code, msg = wire.CodeTooLarge, msg+"; a file has at most "+strconv.FormatInt(w.limit, 10)+" bytes"
	case status == http.StatusConflict:
		code = history.ECONFLICT
	case status >= 500:
		status, code = http.StatusServiceUnavailable, wire.CodeUnavailable
	default:
		status = http.StatusBadRequest
	}
	if method == "HEAD" {
		w.ResponseWriter.WriteHeader(status)
		return
	}
	writeError(w.ResponseWriter, &apiError{status, code, msg})
}
