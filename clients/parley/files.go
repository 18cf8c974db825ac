package parley

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"time"
)

// Attachment is a file of a message: an upload's metadata with the name the
// sender gave it. Width, Height and Thumbnail (the file id of a JPEG of at
// most 320 px) are set for images.
type Attachment struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
	Thumbnail   string `json:"thumbnail,omitempty"`
}

// AttachmentRef names an upload to attach to a send (see Attach).
type AttachmentRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Attach attaches uploads of the user (API.Upload) to the message, at most
// 10; the server refuses, with ErrInvalidPayload, an id that is not an
// upload of the sender. Attach adds to the files of earlier Attach options.
func Attach(files ...AttachmentRef) SendOption {
	return func(c *sendConfig) { c.files = append(c.files, files...) }
}

// Upload is a stored file, as POST /v1/uploads answers.
type Upload struct {
	ID          string `json:"id"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	// URL is a signed URL of the file, valid for a short time (an hour by
	// default) without a token: relative to the server ("/v1/files/..."),
	// or absolute when the server sets its public URL (PARLEY_PUBLIC_URL).
	URL       string `json:"url"`
	Width     int    `json:"width,omitempty"`
	Height    int    `json:"height,omitempty"`
	Thumbnail string `json:"thumbnail,omitempty"`
}

// ResumableThreshold is the size above which Upload sends a file that it
// can seek in (an io.ReadSeeker, such as an *os.File) as a resumable upload.
const ResumableThreshold = 8 << 20

// resumableTries bounds the PATCH requests of one resumable upload.
const resumableTries = 8

// Upload stores size bytes of r, a file of contentType (such as
// "image/png"), and returns it; attach it to a send with Attach. The server
// refuses files over its limit (ErrTooLarge; 25 MiB by default), uploads
// beyond the user's quota of stored files (ErrQuotaExceeded; 1 GiB by
// default) or upload rate (ErrRateLimited; 60 a minute by default) and
// images that do not decode (ErrInvalidPayload). An upload no message
// refers to within a day is deleted.
//
// A file over ResumableThreshold that r can seek in goes as a resumable
// upload (the tus protocol, docs/api.md#resumable-uploads): when the
// transfer fails midway, Upload asks the server how much it kept and sends
// the rest, up to 8 times, reading r again from there. Other readers, which
// cannot be read twice, go in one request that is not retried.
func (a *API) Upload(ctx context.Context, contentType string, r io.Reader, size int64) (Upload, error) {
	if rs, ok := r.(io.ReadSeeker); ok && size > ResumableThreshold {
		return a.uploadResumable(ctx, contentType, rs, size)
	}
	var up Upload
	resp, err := a.file(ctx, "POST", "/v1/uploads", r, size, http.Header{"Content-Type": {contentType}})
	if err != nil {
		return up, err
	}
	defer resp.Body.Close()
	return up, decodeJSON(resp, "POST /v1/uploads", &up)
}

// Download returns the contents of file id (an attachment's ID or
// Thumbnail) for the user; the caller closes it. Users who may not see a
// message with the file get ErrNotFound.
func (a *API) Download(ctx context.Context, id string) (io.ReadCloser, error) {
	resp, err := a.file(ctx, "GET", "/v1/files/"+url.PathEscape(id), nil, 0, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// file makes an authenticated request with body r of size bytes (nil: none)
// and returns a 2xx response; any other is returned as a *ServerError.
func (a *API) file(ctx context.Context, method, path string, r io.Reader, size int64, hdr http.Header) (*http.Response, error) {
	tok, err := a.tokens.get(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, r)
	if err != nil {
		return nil, fmt.Errorf("parley: %s %s: %w", method, path, err)
	}
	if r != nil {
		req.ContentLength = size
		req.Header.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("parley: %s %s: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		return nil, apiError(resp.StatusCode, raw)
	}
	return resp, nil
}

func decodeJSON(resp *http.Response, what string, out any) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(raw, out)
	}
	if err != nil {
		return fmt.Errorf("parley: %s: decode response: %w", what, err)
	}
	return nil
}

// uploadResumable sends size bytes of r from its current position as a tus
// upload.
func (a *API) uploadResumable(ctx context.Context, contentType string, r io.ReadSeeker, size int64) (Upload, error) {
	var up Upload
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return up, fmt.Errorf("parley: upload: %w", err)
	}
	tusHdr := func(kv ...string) http.Header {
		h := http.Header{"Tus-Resumable": {"1.0.0"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	resp, err := a.file(ctx, "POST", "/v1/uploads", nil, 0, tusHdr("Upload-Length", strconv.FormatInt(size, 10),
		"Upload-Metadata", "content_type "+base64.StdEncoding.EncodeToString([]byte(contentType))))
	if err != nil {
		return up, err
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || path.Base(loc.Path) == "." || path.Base(loc.Path) == "/" {
		return up, fmt.Errorf("parley: POST /v1/uploads: no upload in Location %q", resp.Header.Get("Location"))
	}
	p := "/v1/uploads/" + url.PathEscape(path.Base(loc.Path))
	var off int64
	var last error
	for try := 0; try < resumableTries; try++ {
		if try > 0 {
			// Where to resume: what the server kept of the failed PATCH.
			select {
			case <-ctx.Done():
				return up, ctx.Err()
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
			resp, err := a.file(ctx, "HEAD", p, nil, 0, tusHdr())
			if err != nil {
				last = err
				if se := (*ServerError)(nil); errors.As(err, &se) && se.permanent() {
					return up, err
				}
				continue
			}
			resp.Body.Close()
			if off, err = strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64); err != nil || off < 0 || off > size {
				return up, fmt.Errorf("parley: HEAD %s: bad Upload-Offset %q", p, resp.Header.Get("Upload-Offset"))
			}
		}
		if off == size && try > 0 {
			// Complete, but its answer was lost: ask for it.
			resp, err := a.file(ctx, "GET", p, nil, 0, nil)
			if err != nil {
				return up, err
			}
			defer resp.Body.Close()
			return up, decodeJSON(resp, "GET "+p, &up)
		}
		if _, err := r.Seek(start+off, io.SeekStart); err != nil {
			return up, fmt.Errorf("parley: upload: %w", err)
		}
		resp, err := a.file(ctx, "PATCH", p, io.LimitReader(r, size-off), size-off, tusHdr("Upload-Offset", strconv.FormatInt(off, 10),
			"Content-Type", "application/offset+octet-stream"))
		if err != nil {
			last = err
			if se := (*ServerError)(nil); errors.As(err, &se) && se.permanent() && se.Code != CodeConflict {
				return up, err
			}
			if ctx.Err() != nil {
				return up, ctx.Err()
			}
			continue
		}
		if resp.StatusCode == http.StatusOK {
			defer resp.Body.Close()
			return up, decodeJSON(resp, "PATCH "+p, &up)
		}
		resp.Body.Close()
		last = fmt.Errorf("parley: PATCH %s: %s without the stored file", p, resp.Status)
	}
	return up, fmt.Errorf("parley: resumable upload: gave up after %d tries: %w", resumableTries, last)
}
