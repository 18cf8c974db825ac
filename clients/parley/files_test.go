package parley_test

import (
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
