package history

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Attachment is a file that a message refers to: an upload's metadata as it
// was when the message was sent, with the name the sender gave it. Width,
// Height and Thumbnail are set for images.
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

// MaxAttachments bounds the files one message refers to.
const MaxAttachments = 10

// Upload is a stored file: who uploaded it and what it holds. Its bytes live
// in a blob store under the key ID (and its thumbnail, if any, under
// Thumbnail).
type Upload struct {
	ID          string
	Owner       string
	Size        int64
	ContentType string
	SHA256      string
	Width       int
	Height      int
	// Thumbnail is the id of the upload's thumbnail (images only), with its
	// size and content type.
	Thumbnail string
	ThumbSize int64
	ThumbType string
	CreatedAt time.Time
	// Attached is set once a message referred to the upload.
	Attached bool
}

// Attachment returns the upload as a message's attachment called name.
func (u Upload) Attachment(name string) Attachment {
	return Attachment{ID: u.ID, Name: name, Size: u.Size, ContentType: u.ContentType, SHA256: u.SHA256,
		Width: u.Width, Height: u.Height, Thumbnail: u.Thumbnail}
}

// NewUploadID returns a new random upload id: "f" and 32 hex digits (128
// random bits, so that ids cannot be guessed).
func NewUploadID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "f" + hex.EncodeToString(b[:])
}

// ValidUploadID reports whether s has the shape of an upload id (NewUploadID)
// or of a thumbnail's id (an upload id and "t").
func ValidUploadID(s string) bool {
	if len(s) == 34 && s[33] == 't' {
		s = s[:33]
	}
	if len(s) != 33 || s[0] != 'f' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ThumbnailID returns the id of the thumbnail of upload id.
func ThumbnailID(id string) string { return id + "t" }

// UploadStore is the part of a store that records uploads: both stores
// implement it. A message's attachments (NewMessage.Attachments) are
// recorded by AppendBatch in the same transaction as the message; a delete
// of the message forgets them.
type UploadStore interface {
	// CreateUpload records u. ECONFLICT when the id is taken.
	CreateUpload(ctx context.Context, u Upload) error

	// Upload returns the upload id. ENOTFOUND when there is none.
	Upload(ctx context.Context, id string) (Upload, error)

	// UploadBytes returns the sum of the sizes of owner's stored uploads
	// (Upload.Size: thumbnails are not counted), 0 when it has none: what
	// counts against the per-user upload quota. Uploads forgotten by
	// CollectUploads or ForgetUserUploads no longer count.
	UploadBytes(ctx context.Context, owner string) (int64, error)

	// FileFor returns the upload whose id or thumbnail id is id when user may
	// read it: user uploaded it, or may see a message (not deleted) that
	// refers to it (members see their conversations' messages from when
	// they joined until they left). ENOTFOUND otherwise.
	FileFor(ctx context.Context, user, id string) (Upload, error)

	// CollectUploads forgets up to limit uploads that no message refers to:
	// those that were attached (their messages were deleted) and those
	// created before staleBefore, and returns them so that the caller
	// deletes their blobs.
	CollectUploads(ctx context.Context, staleBefore time.Time, limit int) ([]Upload, error)

	// ForgetUserUploads forgets every upload of owner, and the references of
	// messages to them, and returns them so that the caller deletes their
	// blobs (account deletion).
	ForgetUserUploads(ctx context.Context, owner string) ([]Upload, error)
}
