package parley_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/clients/parley"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// TestAttachments: Upload, Send with Attach, the delivered attachments and
// Download, on both stores.
func TestAttachments(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		dir := t.TempDir()
		e := setup(t, s, func(o *broker.Options) { o.BlobDir = dir })
		alice := e.dial("alice", "a")
		bob := e.dial("bob", "b")
		ctx := ctxT(t)
		const text = "minutes of the meeting"
		up, err := alice.Upload(ctx, "text/plain", strings.NewReader(text), int64(len(text)))
		if err != nil || up.Size != int64(len(text)) || up.ContentType != "text/plain" || len(up.SHA256) != 64 {
			t.Fatalf("Upload = %+v, %v", up, err)
		}
		m := mustSend(t, ctx, alice, parley.User("bob"), "see the file", parley.Attach(parley.AttachmentRef{ID: up.ID, Name: "minutes.txt"}))
		want := parley.Attachment{ID: up.ID, Name: "minutes.txt", Size: up.Size, ContentType: "text/plain", SHA256: up.SHA256}
		if len(m.Attachments) != 1 || m.Attachments[0] != want {
			t.Fatalf("Send returned %+v", m.Attachments)
		}
		got := messages(t, bob, m.Conv, 1)[0]
		if len(got.Attachments) != 1 || got.Attachments[0] != want {
			t.Fatalf("bob got %+v", got.Attachments)
		}
		rc, err := bob.Download(ctx, got.Attachments[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != text {
			t.Fatalf("Download = %q", b)
		}
		carol := e.dial("carol", "c")
		if _, err := carol.Download(ctx, up.ID); !errors.Is(err, parley.ErrNotFound) {
			t.Fatalf("stranger's Download: %v", err)
		}
		if _, err := bob.Send(ctx, parley.User("alice"), "mine", parley.Attach(parley.AttachmentRef{ID: up.ID, Name: "x"})); !errors.Is(err, parley.ErrInvalidPayload) {
			t.Fatalf("attach another's upload: %v", err)
		}
	})
}

// flakyFile is a file whose first read through fails at failAt: the
// transfer breaks midway, as on a dropped link.
type flakyFile struct {
	*bytes.Reader
	failAt int64
	failed bool
}

func (f *flakyFile) Read(p []byte) (int, error) {
	pos, _ := f.Seek(0, io.SeekCurrent)
	if !f.failed && pos+int64(len(p)) > f.failAt {
		if pos >= f.failAt {
			f.failed = true
			return 0, errors.New("link dropped")
		}
		p = p[:f.failAt-pos]
	}
	return f.Reader.Read(p)
}

// TestUploadResumable: Upload sends a large seekable file as a resumable
// upload, and resumes it from the server's offset when the transfer fails
// midway.
func TestUploadResumable(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.BlobDir = t.TempDir() })
	alice := e.dial("alice", "a")
	data := make([]byte, parley.ResumableThreshold+3<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	f := &flakyFile{Reader: bytes.NewReader(data), failAt: 5 << 20}
	up, err := alice.Upload(ctxT(t), "application/octet-stream", f, int64(len(data)))
	if err != nil || up.SHA256 != hex.EncodeToString(sum[:]) || up.Size != int64(len(data)) {
		t.Fatalf("Upload = %+v, %v", up, err)
	}
	if !f.failed {
		t.Fatal("the transfer never failed")
	}
	rc, err := alice.Download(ctxT(t), up.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("Download: %d bytes, not the file", len(got))
	}
}
