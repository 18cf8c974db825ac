package historytest

import (
	"context"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

// uploadCases are the cases of uploads (history.UploadStore).
var uploadCases = []storeCase{
	{"UploadBytes", testUploadBytes},
}

// testUploadBytes: UploadBytes sums the sizes of an owner's stored uploads,
// thumbnails not counted, and gives back what CollectUploads and
// ForgetUserUploads forget.
func testUploadBytes(t *testing.T, s history.Store) {
	us := as[history.UploadStore](t, s)
	ctx := context.Background()
	bytesOf := func(owner string) int64 {
		t.Helper()
		n, err := us.UploadBytes(ctx, owner)
		if err != nil {
			t.Fatalf("UploadBytes(%s): %v", owner, err)
		}
		return n
	}
	if n := bytesOf("alice"); n != 0 {
		t.Fatalf("no uploads: %d bytes, want 0", n)
	}
	old := time.Now().Add(-time.Hour).UTC()
	create := func(owner string, size, thumb int64, at time.Time) history.Upload {
		t.Helper()
		u := history.Upload{ID: history.NewUploadID(), Owner: owner, Size: size, ContentType: "text/plain", SHA256: "00", CreatedAt: at}
		if thumb > 0 {
			u.ContentType, u.Thumbnail, u.ThumbSize, u.ThumbType = "image/png", history.ThumbnailID(u.ID), thumb, "image/jpeg"
		}
		if err := us.CreateUpload(ctx, u); err != nil {
			t.Fatalf("CreateUpload: %v", err)
		}
		return u
	}
	create("alice", 1000, 0, old)
	create("alice", 3000, 500, time.Now().UTC())
	create("bob", 7, 0, old)
	if a, b := bytesOf("alice"), bytesOf("bob"); a != 4000 || b != 7 {
		t.Fatalf("alice %d bytes, bob %d: want 4000 and 7", a, b)
	}
	// The collector forgets the stale ones: their bytes come back.
	got, err := us.CollectUploads(ctx, time.Now().Add(-time.Minute), 100)
	if err != nil || len(got) != 2 {
		t.Fatalf("CollectUploads = %d uploads, %v; want 2", len(got), err)
	}
	if a, b := bytesOf("alice"), bytesOf("bob"); a != 3000 || b != 0 {
		t.Fatalf("after collection: alice %d bytes, bob %d; want 3000 and 0", a, b)
	}
	if _, err := us.ForgetUserUploads(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if a := bytesOf("alice"); a != 0 {
		t.Fatalf("after ForgetUserUploads: %d bytes, want 0", a)
	}
}
