package parley

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
	// URL is a signed URL of the file (relative to the server), valid for
	// a short time (an hour by default) without a token.
	URL       string `json:"url"`
	Width     int    `json:"width,omitempty"`
	Height    int    `json:"height,omitempty"`
	Thumbnail string `json:"thumbnail,omitempty"`
}

// Upload stores size bytes of r, a file of contentType (such as
// "image/png"), and returns it; attach it to a send with Attach. The server
// refuses files over its limit (ErrTooLarge; 25 MiB by default) and images
// that do not decode (ErrInvalidPayload). An upload no message refers to
// within a day is deleted.
func (a *API) Upload(ctx context.Context, contentType string, r io.Reader, size int64) (Upload, error) {
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
