package broker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/s3test"
	"github.com/parley-im/parley/internal/testkit"
)

// upload is the answer of POST /v1/uploads.
type upload struct {
	ID          string `json:"id"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	URL         string `json:"url"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Thumbnail   string `json:"thumbnail"`
}

// forEachBlobStore runs fn with the options of each blob store: a
// directory, and a bucket of a real S3-compatible server (SeaweedFS).
func forEachBlobStore(t *testing.T, fn func(t *testing.T, opt func(*broker.Options))) {
	t.Run("dir", func(t *testing.T) {
		dir := t.TempDir()
		fn(t, func(o *broker.Options) { o.BlobDir = dir })
	})
	t.Run("s3", func(t *testing.T) {
		endpoint := s3test.Endpoint(t)
		t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
		bucket := strings.ToLower(fmt.Sprintf("t%d", len(t.Name())*7919+int(os.Getpid())%10000)) + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
		if len(bucket) > 60 {
			bucket = bucket[:60]
		}
		bucket = strings.TrimRight(bucket, "-")
		s3test.Bucket(t, endpoint, bucket)
		fn(t, func(o *broker.Options) { o.S3Endpoint, o.S3Bucket = endpoint, bucket })
	})
}

// postFile uploads body as contentType for user and returns the status and
// the answer.
func (e *env) postFile(user, contentType string, body []byte) (int, upload, apiErr) {
	e.t.Helper()
	var hdr []string
	if contentType != "" {
		hdr = []string{"Content-Type", contentType}
	}
	resp, b := e.request("POST", "/v1/uploads", user, bytes.NewReader(body), hdr...)
	var u upload
	var ae apiErr
	if resp.StatusCode == http.StatusCreated {
		json.Unmarshal(b, &u)
	} else {
		json.Unmarshal(b, &ae)
	}
	return resp.StatusCode, u, ae
}

// getFile fetches path as user ("" for none) with extra headers.
func (e *env) getFile(path, user string, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	return e.request("GET", path, user, nil, hdr...)
}

func pngImage(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestAttachments runs the acceptance of attachments on both stores and
// both blob stores.
func TestAttachments(t *testing.T) {
	forEachBlobStore(t, func(t *testing.T, blobs func(*broker.Options)) {
		testkit.ForEachStore(t, func(t *testing.T, store history.Store) {
			e := setup(t, store, blobs, func(o *broker.Options) { o.MaxUpload = 1 << 20 })
			bob := e.dial("bob/phone", "bob", dialOpts{})
			pic := pngImage(t, 640, 480)

			// Upload: the image is measured and gets a thumbnail.
			status, up, ae := e.postFile("alice", "image/png", pic)
			if status != 201 || up.Size != int64(len(pic)) || up.ContentType != "image/png" || len(up.SHA256) != 64 || up.Width != 640 || up.Height != 480 || up.Thumbnail == "" || up.URL == "" {
				t.Fatalf("upload: %d %+v %+v", status, up, ae)
			}

			// Attach and deliver: bob's device gets the attachments.
			var sent struct {
				Seq         int64                `json:"seq"`
				Attachments []history.Attachment `json:"attachments"`
			}
			if s := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"look","attachments":[{"id":"`+up.ID+`","name":"cat.png"}]}`, &sent); s != 201 {
				t.Fatalf("send: %d", s)
			}
			ev := bob.nextMessage()
			var got struct {
				Attachments []history.Attachment `json:"attachments"`
			}
			json.Unmarshal(ev.raw, &got)
			want := history.Attachment{ID: up.ID, Name: "cat.png", Size: up.Size, ContentType: "image/png", SHA256: up.SHA256, Width: 640, Height: 480, Thumbnail: up.Thumbnail}
			if len(got.Attachments) != 1 || got.Attachments[0] != want {
				t.Fatalf("delivered attachments %+v, want %+v", got.Attachments, want)
			}
			// Stored: history has them too.
			var hist struct {
				Messages []struct {
					Attachments []history.Attachment `json:"attachments"`
				} `json:"messages"`
			}
			e.do("GET", "/v1/conversations/dm:alice:bob/messages", "bob", "", &hist)
			if len(hist.Messages) != 1 || len(hist.Messages[0].Attachments) != 1 || hist.Messages[0].Attachments[0] != want {
				t.Fatalf("history: %+v", hist)
			}

			// Download by the member, Range, ETag.
			resp, b := e.getFile("/v1/files/"+up.ID, "bob")
			if resp.StatusCode != 200 || !bytes.Equal(b, pic) || resp.Header.Get("ETag") != `"`+up.SHA256+`"` || resp.Header.Get("Content-Type") != "image/png" {
				t.Fatalf("download: %d %d bytes, headers %v", resp.StatusCode, len(b), resp.Header)
			}
			resp, b = e.getFile("/v1/files/"+up.ID, "bob", "Range", "bytes=100-199")
			if resp.StatusCode != 206 || !bytes.Equal(b, pic[100:200]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(pic)) {
				t.Fatalf("range: %d %d bytes %q", resp.StatusCode, len(b), resp.Header.Get("Content-Range"))
			}
			if resp, _ = e.getFile("/v1/files/"+up.ID, "bob", "If-None-Match", `"`+up.SHA256+`"`); resp.StatusCode != 304 {
				t.Fatalf("If-None-Match: %d", resp.StatusCode)
			}
			// Thumbnail dimensions: 320×240.
			resp, b = e.getFile("/v1/files/"+up.Thumbnail, "bob")
			cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
			if resp.StatusCode != 200 || err != nil || format != "jpeg" || cfg.Width != 320 || cfg.Height != 240 {
				t.Fatalf("thumbnail: %d %s %dx%d %v", resp.StatusCode, format, cfg.Width, cfg.Height, err)
			}
			// Signed URL: no bearer needed; a forged one is refused.
			if resp, b = e.getFile(up.URL, ""); resp.StatusCode != 200 || !bytes.Equal(b, pic) {
				t.Fatalf("signed URL: %d", resp.StatusCode)
			}
			forged := up.URL[:len(up.URL)-1] + "0" // the signature's last digit changed
			if strings.HasSuffix(up.URL, "0") {
				forged = up.URL[:len(up.URL)-1] + "1"
			}
			if resp, _ = e.getFile(forged, ""); resp.StatusCode != 404 {
				t.Fatalf("forged signed URL: %d", resp.StatusCode)
			}
			if resp, _ = e.getFile("/v1/files/"+up.ID, ""); resp.StatusCode != 401 {
				t.Fatalf("no token: %d", resp.StatusCode)
			}

			// A stranger gets 404, for the file and its thumbnail.
			for _, id := range []string{up.ID, up.Thumbnail} {
				if resp, _ = e.getFile("/v1/files/"+id, "carol"); resp.StatusCode != 404 {
					t.Fatalf("stranger: %d", resp.StatusCode)
				}
			}

			// Only the uploader may attach; unknown ids are invalid_payload.
			var se apiErr
			if s := e.do("POST", "/v1/users/alice/messages", "bob", `{"body":"x","attachments":[{"id":"`+up.ID+`","name":"x"}]}`, &se); s != 400 || se.Error.Code != "invalid_payload" {
				t.Fatalf("attach another's upload: %d %+v", s, se)
			}
			if s := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"x","attachments":[{"id":"f0123456789abcdef0123456789abcdef","name":"x"}]}`, &se); s != 400 || se.Error.Code != "invalid_payload" {
				t.Fatalf("unknown id: %d %+v", s, se)
			}

			// A removed group member gets 404 for the files sent after the
			// removal, not for those before.
			e.do("POST", "/v1/groups", "alice", `{"id":"team","name":"T","members":["bob","dave"]}`, nil)
			_, before, _ := e.postFile("alice", "text/plain", []byte("before"))
			e.do("POST", "/v1/conversations/g:team/messages", "alice", `{"body":1,"attachments":[{"id":"`+before.ID+`","name":"a.txt"}]}`, nil)
			if s := e.do("DELETE", "/v1/groups/team/members/dave", "alice", "", nil); s != 200 {
				t.Fatalf("remove dave: %d", s)
			}
			_, later, _ := e.postFile("alice", "text/plain", []byte("later"))
			e.do("POST", "/v1/conversations/g:team/messages", "alice", `{"body":2,"attachments":[{"id":"`+later.ID+`","name":"b.txt"}]}`, nil)
			if resp, b = e.getFile("/v1/files/"+before.ID, "dave"); resp.StatusCode != 200 || string(b) != "before" {
				t.Fatalf("removed member, earlier file: %d", resp.StatusCode)
			}
			if resp, _ = e.getFile("/v1/files/"+later.ID, "dave"); resp.StatusCode != 404 {
				t.Fatalf("removed member, later file: %d", resp.StatusCode)
			}
			if resp, _ = e.getFile("/v1/files/"+later.ID, "bob"); resp.StatusCode != 200 {
				t.Fatalf("member, later file: %d", resp.StatusCode)
			}

			// Size limit and corrupt images.
			if s, _, ae := e.postFile("alice", "application/octet-stream", make([]byte, 1<<20+1)); s != 413 || ae.Error.Code != "too_large" {
				t.Fatalf("too large: %d %+v", s, ae)
			}
			if s, _, ae := e.postFile("alice", "image/png", []byte("\x89PNG\r\n\x1a\nnot really")); s != 400 || ae.Error.Code != "invalid_payload" {
				t.Fatalf("corrupt image: %d %+v", s, ae)
			}
			if s, _, ae := e.postFile("alice", "image/jpeg", pic); s != 400 || ae.Error.Code != "invalid_payload" {
				t.Fatalf("PNG declared as JPEG: %d %+v", s, ae)
			}
			if s, _, _ := e.postFile("alice", "", []byte("x")); s != 400 {
				t.Fatalf("no Content-Type: %d", s)
			}

			// A deleted message's file is gone once collected.
			if s := e.do("DELETE", fmt.Sprintf("/v1/conversations/dm:alice:bob/messages/%d", sent.Seq), "alice", "", nil); s != 200 {
				t.Fatalf("delete: %d", s)
			}
			if n, err := e.b.CollectFiles(t.Context()); err != nil || n != 1 {
				t.Fatalf("collect: %d %v", n, err)
			}
			for _, id := range []string{up.ID, up.Thumbnail} {
				for _, u := range []string{"alice", "bob"} {
					if resp, _ = e.getFile("/v1/files/"+id, u); resp.StatusCode != 404 {
						t.Fatalf("deleted message's file %s for %s: %d", id, u, resp.StatusCode)
					}
				}
			}
			// Files still referenced stay.
			if resp, _ = e.getFile("/v1/files/"+later.ID, "bob"); resp.StatusCode != 200 {
				t.Fatalf("referenced file after collection: %d", resp.StatusCode)
			}
		})
	})
}

// TestUnreferencedUploadCollected: an upload no message refers to within
// UploadTTL is deleted.
func TestUnreferencedUploadCollected(t *testing.T) {
	forEachBlobStore(t, func(t *testing.T, blobs func(*broker.Options)) {
		testkit.ForEachStore(t, func(t *testing.T, store history.Store) {
			e := setup(t, store, blobs, func(o *broker.Options) { o.UploadTTL = 1 })
			s, up, _ := e.postFile("alice", "application/pdf", []byte("%PDF-1.4"))
			if s != 201 {
				t.Fatalf("upload: %d", s)
			}
			if n, err := e.b.CollectFiles(t.Context()); err != nil || n != 1 {
				t.Fatalf("collect: %d %v", n, err)
			}
			if resp, _ := e.getFile("/v1/files/"+up.ID, "alice"); resp.StatusCode != 404 {
				t.Fatalf("collected upload: %d", resp.StatusCode)
			}
			var ae apiErr
			if s := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"x","attachments":[{"id":"`+up.ID+`","name":"x"}]}`, &ae); s != 400 || ae.Error.Code != "invalid_payload" {
				t.Fatalf("attach collected upload: %d %+v", s, ae)
			}
		})
	})
}

// TestDeleteAccountFiles: deleting an account deletes the files it
// uploaded: a member who could download one before gets 404 after.
func TestDeleteAccountFiles(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) { o.BlobDir = t.TempDir() })
		st, up, ae := e.postFile("alice", "text/plain", []byte("alice's notes"))
		if st != 201 {
			t.Fatalf("upload: %d %+v", st, ae)
		}
		body := fmt.Sprintf(`{"cid":"f1","body":"notes","attachments":[{"id":%q,"name":"n.txt"}]}`, up.ID)
		if st := e.do("POST", "/v1/users/bob/messages", "alice", body, nil); st != 201 {
			t.Fatalf("send: %d", st)
		}
		if resp, _ := e.getFile("/v1/files/"+up.ID, "bob"); resp.StatusCode != 200 {
			t.Fatalf("bob downloads before: %d", resp.StatusCode)
		}
		if st := e.do("DELETE", "/v1/users/me", "alice", "", nil); st != 200 {
			t.Fatalf("delete account: %d", st)
		}
		if resp, _ := e.getFile("/v1/files/"+up.ID, "bob"); resp.StatusCode != 404 {
			t.Fatalf("bob downloads after alice's account was deleted: %d", resp.StatusCode)
		}
	})
}
