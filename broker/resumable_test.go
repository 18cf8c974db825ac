package broker_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/testkit"
)

// tusReq makes a tus request as user ("" for none) and returns the
// response with its body read.
func (e *env) tusReq(method, path, user string, body []byte, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	return e.request(method, path, user, r, append([]string{"Tus-Resumable", "1.0.0"}, hdr...)...)
}

// tusCreate creates a resumable upload of size bytes of contentType for
// user and returns its path (/v1/uploads/ID).
func (e *env) tusCreate(user, contentType string, size int) string {
	e.t.Helper()
	resp, body := e.tusReq("POST", "/v1/uploads", user, nil, "Upload-Length", strconv.Itoa(size),
		"Upload-Metadata", "content_type "+base64.StdEncoding.EncodeToString([]byte(contentType)))
	if resp.StatusCode != 201 {
		e.t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || len(u.Path) != len("/v1/uploads/")+33 {
		e.t.Fatalf("Location %q", resp.Header.Get("Location"))
	}
	return u.Path
}

// tusOffset returns the offset of the upload at path (HEAD).
func (e *env) tusOffset(path, user string) (int, int64) {
	e.t.Helper()
	resp, _ := e.tusReq("HEAD", path, user, nil)
	off, _ := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	return resp.StatusCode, off
}

// tusInterrupted sends a PATCH at offset 0 that declares all of data but
// sends only its first n bytes, then closes the connection.
func (e *env) tusInterrupted(path, user string, data []byte, n int) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.http[len("http://"):])
	if err != nil {
		e.t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: %d\r\n\r\n",
		path, testkit.Token(e.t, user), len(data))
	if _, err := conn.Write(data[:n]); err != nil {
		e.t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the server reads what was sent
	conn.Close()
}

// TestResumableUpload: a tus upload interrupted midway (the client closes
// the connection) resumes from HEAD's offset to the same file; a stranger
// can neither see nor resume it; the size limit holds; an image goes
// through the same thumbnailing; an abandoned upload is collected. On both
// blob stores.
func TestResumableUpload(t *testing.T) {
	forEachBlobStore(t, func(t *testing.T, blobs func(*broker.Options)) {
		partial := t.TempDir()
		e := setup(t, testkit.OpenSQLite(t), blobs, func(o *broker.Options) { o.MaxUpload, o.UploadDir = 4<<20, partial })
		data := make([]byte, 3<<20+12345)
		rand.Read(data)
		sum := sha256.Sum256(data)

		path := e.tusCreate("alice", "application/zip", len(data))
		e.tusInterrupted(path, "alice", data, 1<<20+777)
		var off int64
		deadline := time.Now().Add(10 * time.Second)
		for {
			var code int
			code, off = e.tusOffset(path, "alice")
			if code != 200 {
				t.Fatalf("HEAD = %d", code)
			}
			if off > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if off <= 0 || off > 1<<20+777 {
			t.Fatalf("offset after the interruption = %d, want 1..%d", off, 1<<20+777)
		}

		// A stranger cannot see, resume, finish or abandon it.
		if code, _ := e.tusOffset(path, "dave"); code != 404 {
			t.Errorf("stranger's HEAD = %d", code)
		}
		for _, m := range []string{"PATCH", "DELETE", "GET"} {
			var b []byte
			if m == "PATCH" {
				b = data[off:]
			}
			resp, body := e.tusReq(m, path, "dave", b, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(off, 10))
			var ae apiErr
			json.Unmarshal(body, &ae)
			if resp.StatusCode != 404 || ae.Error.Code != "not_found" {
				t.Errorf("stranger's %s = %d %s", m, resp.StatusCode, body)
			}
		}
		if code, _ := e.tusOffset(path, ""); code != 401 {
			t.Errorf("anonymous HEAD = %d", code)
		}
		// A PATCH at the wrong offset is 409.
		if resp, body := e.tusReq("PATCH", path, "alice", []byte("x"), "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"); resp.StatusCode != 409 {
			t.Errorf("PATCH at a wrong offset = %d %s", resp.StatusCode, body)
		}
		// GET of an upload in progress: 409 conflict.
		if resp, body := e.tusReq("GET", path, "alice", nil); resp.StatusCode != 409 {
			t.Errorf("GET in progress = %d %s", resp.StatusCode, body)
		}

		// Resume from HEAD's offset: the last PATCH answers the file.
		resp, body := e.tusReq("PATCH", path, "alice", data[off:], "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(off, 10))
		var up upload
		if resp.StatusCode != 200 || json.Unmarshal(body, &up) != nil {
			t.Fatalf("resume = %d %s", resp.StatusCode, body)
		}
		if up.SHA256 != hex.EncodeToString(sum[:]) || up.Size != int64(len(data)) || "/v1/uploads/"+up.ID != path || up.ContentType != "application/zip" {
			t.Fatalf("resumed upload %+v, want sha256 %x of %d bytes", up, sum, len(data))
		}
		if code, off := e.tusOffset(path, "alice"); code != 200 || off != int64(len(data)) {
			t.Errorf("HEAD of the finished upload = %d offset %d", code, off)
		}
		var again upload
		if resp, body := e.tusReq("GET", path, "alice", nil); resp.StatusCode != 200 || json.Unmarshal(body, &again) != nil || again.SHA256 != up.SHA256 {
			t.Errorf("GET of the finished upload = %d %s", resp.StatusCode, body)
		}
		if resp, _ := e.tusReq("GET", path, "bob", nil); resp.StatusCode != 404 {
			t.Errorf("GET of another's upload = %d", resp.StatusCode)
		}
		if resp, got := e.getFile("/v1/files/"+up.ID, "alice"); resp.StatusCode != 200 || !bytes.Equal(got, data) {
			t.Fatalf("download = %d, %d bytes", resp.StatusCode, len(got))
		}
		if left, _ := filepath.Glob(filepath.Join(partial, up.ID+"*")); len(left) != 0 {
			t.Errorf("the finished upload left %v", left)
		}

		// The limit: 413 too_large.
		resp, body = e.tusReq("POST", "/v1/uploads", "alice", nil, "Upload-Length", strconv.Itoa(4<<20+1),
			"Upload-Metadata", "content_type "+base64.StdEncoding.EncodeToString([]byte("text/plain")))
		var ae apiErr
		if json.Unmarshal(body, &ae); resp.StatusCode != 413 || ae.Error.Code != "too_large" {
			t.Errorf("create over the limit = %d %s", resp.StatusCode, body)
		}
		// No content type: 400.
		if resp, body := e.tusReq("POST", "/v1/uploads", "alice", nil, "Upload-Length", "5"); resp.StatusCode != 400 {
			t.Errorf("create without content_type = %d %s", resp.StatusCode, body)
		}

		// An image in the creation request (creation-with-upload) gets its
		// thumbnail.
		img := pngImage(t, 640, 400)
		resp, body = e.tusReq("POST", "/v1/uploads", "alice", img, "Upload-Length", strconv.Itoa(len(img)),
			"Upload-Metadata", "filetype "+base64.StdEncoding.EncodeToString([]byte("image/png")), "Content-Type", "application/offset+octet-stream")
		var pic upload
		if resp.StatusCode != 201 || json.Unmarshal(body, &pic) != nil || pic.Width != 640 || pic.Height != 400 || pic.Thumbnail == "" {
			t.Fatalf("image upload = %d %s", resp.StatusCode, body)
		}
		if resp, _ := e.getFile("/v1/files/"+pic.Thumbnail, "alice"); resp.StatusCode != 200 {
			t.Errorf("thumbnail = %d", resp.StatusCode)
		}

		// DELETE abandons an upload; one abandoned without DELETE is
		// collected once it is a day old.
		gone := e.tusCreate("alice", "text/plain", 100)
		if resp, body := e.tusReq("DELETE", gone, "alice", nil); resp.StatusCode != 204 {
			t.Errorf("DELETE = %d %s", resp.StatusCode, body)
		}
		if code, _ := e.tusOffset(gone, "alice"); code != 404 {
			t.Errorf("HEAD after DELETE = %d", code)
		}
		stale := e.tusCreate("alice", "text/plain", 100)
		if resp, body := e.tusReq("PATCH", stale, "alice", []byte("half"), "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"); resp.StatusCode != 204 {
			t.Fatalf("PATCH = %d %s", resp.StatusCode, body)
		}
		fresh := e.tusCreate("alice", "text/plain", 100)
		old := time.Now().Add(-25 * time.Hour)
		files, _ := filepath.Glob(filepath.Join(partial, filepath.Base(stale)+"*"))
		for _, f := range files {
			if err := os.Chtimes(f, old, old); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := e.b.CollectFiles(t.Context()); err != nil || n != 1 {
			t.Fatalf("CollectFiles = %d, %v", n, err)
		}
		if code, _ := e.tusOffset(stale, "alice"); code != 404 {
			t.Errorf("HEAD of a collected upload = %d", code)
		}
		if left, _ := filepath.Glob(filepath.Join(partial, filepath.Base(stale)+"*")); len(left) != 0 {
			t.Errorf("the collected upload left %v", left)
		}
		if code, _ := e.tusOffset(fresh, "alice"); code != 200 {
			t.Errorf("HEAD of a fresh upload after collection = %d", code)
		}
	})
}
