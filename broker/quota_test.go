package broker_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// withQuota returns the options of a broker with attachments in a
// directory and an upload quota of quota bytes.
func withQuota(t *testing.T, quota int64) func(*broker.Options) {
	dir := t.TempDir()
	return func(o *broker.Options) { o.BlobDir, o.UploadQuota = dir, quota }
}

// wantAPIError fails unless the answer is status with the error code.
func wantAPIError(t *testing.T, what string, status int, ae apiErr, wantStatus int, code string) {
	t.Helper()
	if status != wantStatus || ae.Error.Code != code || ae.Error.Message == "" {
		t.Fatalf("%s: %d %+v, want %d %s", what, status, ae, wantStatus, code)
	}
}

// rawUploadHead sends the headers of a one-shot upload of size bytes as
// user, and not its body, and returns the status line of the answer: the
// server answers without waiting for the body, or the read times out.
func (e *env) rawUploadHead(user string, size int) string {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.http[len("http://"):])
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n",
		testkit.Token(e.t, user), size)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		e.t.Fatalf("no answer before the body was sent: %v", err)
	}
	return strings.TrimSpace(line)
}

// TestUploadQuota: a user's stored uploads may reach the quota, not pass
// it: the upload that would is refused with 413 quota_exceeded before its
// body is read, other users are not affected, and the bytes of a file
// collected after its message was deleted, or collected unreferenced,
// count no more. On both stores.
func TestUploadQuota(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, store history.Store) {
		e := setup(t, store, withQuota(t, 1000))
		s, first, ae := e.postFile("alice", "text/plain", make([]byte, 600))
		if s != 201 {
			t.Fatalf("first upload: %d %+v", s, ae)
		}
		s, _, ae = e.postFile("alice", "text/plain", make([]byte, 401))
		wantAPIError(t, "upload over the quota", s, ae, 413, "quota_exceeded")
		if !strings.Contains(ae.Error.Message, "600 of your 1000 bytes") {
			t.Fatalf("quota message %q does not say what is used", ae.Error.Message)
		}
		// The refusal comes before the body: the server answers headers
		// alone.
		if line := e.rawUploadHead("alice", 401); !strings.HasPrefix(line, "HTTP/1.1 413") {
			t.Fatalf("headers alone: %q, want 413", line)
		}
		// Exactly at the quota is allowed; one byte more is not.
		if s, _, ae = e.postFile("alice", "text/plain", make([]byte, 400)); s != 201 {
			t.Fatalf("upload to the quota: %d %+v", s, ae)
		}
		s, _, ae = e.postFile("alice", "text/plain", []byte("x"))
		wantAPIError(t, "one byte over the quota", s, ae, 413, "quota_exceeded")
		// Another user has a quota of its own.
		if s, _, ae = e.postFile("bob", "text/plain", make([]byte, 1000)); s != 201 {
			t.Fatalf("bob's upload: %d %+v", s, ae)
		}

		// A deleted message's file, once collected, gives its bytes back.
		var sent struct {
			Seq int64 `json:"seq"`
		}
		if s := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"f","attachments":[{"id":"`+first.ID+`","name":"f.txt"}]}`, &sent); s != 201 {
			t.Fatalf("send: %d", s)
		}
		if s := e.do("DELETE", fmt.Sprintf("/v1/conversations/dm:alice:bob/messages/%d", sent.Seq), "alice", "", nil); s != 200 {
			t.Fatalf("delete: %d", s)
		}
		s, _, ae = e.postFile("alice", "text/plain", make([]byte, 600))
		wantAPIError(t, "upload before the collection", s, ae, 413, "quota_exceeded")
		if n, err := e.b.CollectFiles(t.Context()); err != nil || n != 1 {
			t.Fatalf("collect: %d %v", n, err)
		}
		if s, _, ae = e.postFile("alice", "text/plain", make([]byte, 600)); s != 201 {
			t.Fatalf("upload after the collection: %d %+v", s, ae)
		}
	})
}

// TestUploadQuotaCollected: unreferenced uploads collected after
// UploadTTL give their bytes back. On both stores.
func TestUploadQuotaCollected(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, store history.Store) {
		e := setup(t, store, withQuota(t, 100), func(o *broker.Options) { o.UploadTTL = time.Millisecond })
		if s, _, ae := e.postFile("alice", "text/plain", make([]byte, 100)); s != 201 {
			t.Fatalf("upload: %d %+v", s, ae)
		}
		s, _, ae := e.postFile("alice", "text/plain", make([]byte, 1))
		wantAPIError(t, "full quota", s, ae, 413, "quota_exceeded")
		time.Sleep(5 * time.Millisecond)
		if n, err := e.b.CollectFiles(t.Context()); err != nil || n != 1 {
			t.Fatalf("collect: %d %v", n, err)
		}
		if s, _, ae := e.postFile("alice", "text/plain", make([]byte, 100)); s != 201 {
			t.Fatalf("upload after the collection: %d %+v", s, ae)
		}
	})
}

// tusCreateAnswer starts a resumable upload of size bytes for user and
// returns the answer's status, error and Location.
func (e *env) tusCreateAnswer(user string, size int) (int, apiErr, string) {
	e.t.Helper()
	resp, body := e.tusReq("POST", "/v1/uploads", user, nil, "Upload-Length", strconv.Itoa(size),
		"Upload-Metadata", "content_type "+base64.StdEncoding.EncodeToString([]byte("text/plain")))
	var ae apiErr
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(body, &ae); err != nil {
			e.t.Fatalf("create %d: %q is not the error object: %v", resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode, ae, resp.Header.Get("Location")
}

// TestResumableUploadQuota: a resumable upload whose declared length would
// pass the quota is refused at its creation; an unfinished one counts
// against the quota of later uploads (one-shot and resumable) until it is
// finished or deleted; finishing it does not count it twice. On both
// stores.
func TestResumableUploadQuota(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, store history.Store) {
		e := setup(t, store, withQuota(t, 1000))
		s, ae, loc := e.tusCreateAnswer("alice", 1001)
		wantAPIError(t, "create over the quota", s, ae, 413, "quota_exceeded")
		if loc != "" {
			t.Fatalf("refused creation has a Location: %q", loc)
		}
		path := e.tusCreate("alice", "text/plain", 800)
		// 800 bytes in progress: 201 more do not fit, either way.
		s, _, ae = e.postFile("alice", "text/plain", make([]byte, 201))
		wantAPIError(t, "one-shot upload beside an unfinished one", s, ae, 413, "quota_exceeded")
		if !strings.Contains(ae.Error.Message, "uploads in progress 800") {
			t.Fatalf("the refusal does not say that uploads in progress count: %q", ae.Error.Message)
		}
		s, ae, _ = e.tusCreateAnswer("alice", 201)
		wantAPIError(t, "second resumable upload beside an unfinished one", s, ae, 413, "quota_exceeded")
		if s, _, ae := e.postFile("bob", "text/plain", make([]byte, 1000)); s != 201 {
			t.Fatalf("bob is not charged alice's upload: %d %+v", s, ae)
		}
		if s, _, ae := e.postFile("alice", "text/plain", make([]byte, 200)); s != 201 {
			t.Fatalf("one-shot upload to the quota: %d %+v", s, ae)
		}
		resp, body := e.tusReq("PATCH", path, "alice", make([]byte, 800), "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0")
		if resp.StatusCode != 200 {
			t.Fatalf("completion of the admitted upload (200 + 800 = the quota): %d %s", resp.StatusCode, body)
		}
		s, _, ae = e.postFile("alice", "text/plain", []byte("x"))
		wantAPIError(t, "upload with the quota full", s, ae, 413, "quota_exceeded")
		// An unfinished upload deleted by its owner no longer counts.
		e2 := setup(t, store, withQuota(t, 1000))
		path = e2.tusCreate("carol", "text/plain", 900)
		if resp, body := e2.tusReq("DELETE", path, "carol", nil); resp.StatusCode != 204 {
			t.Fatalf("DELETE of an upload in progress: %d %s", resp.StatusCode, body)
		}
		if s, _, ae := e2.postFile("carol", "text/plain", make([]byte, 1000)); s != 201 {
			t.Fatalf("after deleting the unfinished upload: %d %+v", s, ae)
		}
	})
}

// TestUploadRate: beyond UploadRate uploads a minute (bursts of as many) a
// user's one-shot uploads and resumable creations are refused with 429
// rate_limited and a Retry-After in whole seconds; other users are not
// affected. On both stores.
func TestUploadRate(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, store history.Store) {
		e := setup(t, store, func(o *broker.Options) { o.BlobDir, o.UploadRate = t.TempDir(), 3 })
		for i := range 3 {
			if s, _, ae := e.postFile("alice", "text/plain", []byte("x")); s != 201 {
				t.Fatalf("upload %d of the burst: %d %+v", i, s, ae)
			}
		}
		for _, tus := range []bool{false, true} {
			var resp *http.Response
			var body []byte
			if tus {
				resp, body = e.tusReq("POST", "/v1/uploads", "alice", nil, "Upload-Length", "1",
					"Upload-Metadata", "content_type "+base64.StdEncoding.EncodeToString([]byte("text/plain")))
			} else {
				resp, body = e.request("POST", "/v1/uploads", "alice", strings.NewReader("x"), "Content-Type", "text/plain")
			}
			var ae apiErr
			json.Unmarshal(body, &ae)
			wantAPIError(t, fmt.Sprintf("upload beyond the rate (tus %v)", tus), resp.StatusCode, ae, 429, "rate_limited")
			// 3 a minute: a token every 20 s.
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 20 {
				t.Fatalf("Retry-After %q, want 1..20 seconds", resp.Header.Get("Retry-After"))
			}
		}
		if s, _, ae := e.postFile("bob", "text/plain", []byte("x")); s != 201 {
			t.Fatalf("bob's upload: %d %+v", s, ae)
		}
	})
}
