// Package blob stores the bytes of uploaded files: Dir on the local
// filesystem (the default, written atomically with fsync) or S3 on any
// S3-compatible server. Keys are upload ids (history.NewUploadID); what a
// key holds and who may read it is recorded in the message store.
package blob

import (
	"context"
	"errors"
	"io"
)

// ErrNotFound is returned by Open for a key that holds nothing.
var ErrNotFound = errors.New("blob: not found")

// Store holds blobs by key. Implementations are safe for concurrent use.
type Store interface {
	// Put stores the size bytes of r under key, replacing nothing: keys are
	// unique. The blob is durable when Put returns nil.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	// Open returns the blob under key for reading and seeking; ErrNotFound
	// when there is none. The caller closes it.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, error)
	// Delete removes the blob under key; deleting a missing blob is not an
	// error.
	Delete(ctx context.Context, key string) error
}
