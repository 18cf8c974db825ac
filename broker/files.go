package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/blob"
	"github.com/parley-im/parley/internal/files"
	"github.com/parley-im/parley/internal/send"
)

// DefaultMaxUpload is the default Options.MaxUpload: 25 MiB.
const DefaultMaxUpload = files.DefaultMaxUpload

// Defaults of the per-user bounds of uploads.
const (
	// DefaultUploadQuota is the default Options.UploadQuota: 1 GiB.
	DefaultUploadQuota = 1 << 30
	// DefaultUploadRate is the default Options.UploadRate: 60 uploads a
	// minute.
	DefaultUploadRate = 60
)

// newFiles builds the attachments engine of opts: nil when neither BlobDir
// nor S3Endpoint is set.
func newFiles(opts Options, store history.Store, reg prometheus.Registerer) (*files.Service, error) {
	if opts.BlobDir == "" && opts.S3Endpoint == "" {
		return nil, nil
	}
	us, ok := store.(history.UploadStore)
	if !ok {
		return nil, errors.New("broker: attachments need a store that records uploads (history.UploadStore)")
	}
	var blobs blob.Store
	tmp := opts.BlobDir
	partial := opts.UploadDir
	if opts.S3Endpoint != "" {
		s3, err := blob.NewS3(blob.S3Config{Endpoint: opts.S3Endpoint, Bucket: opts.S3Bucket, Region: opts.S3Region})
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		blobs = s3
		tmp = ""
		if partial == "" {
			partial = filepath.Join(os.TempDir(), "parley-partial")
		}
	} else {
		if err := os.MkdirAll(filepath.Join(opts.BlobDir, "tmp"), 0o750); err != nil {
			return nil, fmt.Errorf("broker: blob dir: %w", err)
		}
		blobs = &blob.Dir{Path: opts.BlobDir}
		tmp = filepath.Join(opts.BlobDir, "tmp")
		if partial == "" {
			partial = filepath.Join(opts.BlobDir, "partial")
		}
	}
	secret := opts.FileURLSecret
	if len(secret) == 0 {
		secret = opts.JWTSecret
	}
	if len(secret) == 0 {
		// Tokens verified with a public key only: URLs signed by this node
		// are valid on this node only.
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	var limiter *send.RateLimiter
	if opts.UploadRate > 0 {
		// Rate per second; bursts of a minute's uploads.
		limiter = send.NewRateLimiter(opts.UploadRate/60, opts.UploadRate)
	}
	f := &files.Service{Store: us, Blobs: blobs, TempDir: tmp, PartialDir: partial, MaxUpload: opts.MaxUpload, MaxPixels: opts.MaxImagePixels,
		Quota: max(opts.UploadQuota, 0), Limiter: limiter,
		UnreferencedTTL: opts.UploadTTL, CollectEvery: opts.FileCollectEvery, URLSecret: secret, URLTTL: opts.FileURLTTL, PublicURL: opts.PublicURL,
		Registry: reg, Log: opts.Logger}
	return f, f.Init()
}

// CheckBlobs reports whether the blob store can be reached: for S3, that the
// bucket exists. It is nil without attachments or with BlobDir.
func (b *Broker) CheckBlobs(ctx context.Context) error {
	if b.files == nil {
		return nil
	}
	if s3, ok := b.files.Blobs.(*blob.S3); ok {
		return s3.Check(ctx)
	}
	return nil
}

// CollectFiles deletes now the files that no message refers to (as the
// collector does every FileCollectEvery) and returns how many it deleted.
func (b *Broker) CollectFiles(ctx context.Context) (int, error) {
	if b.files == nil {
		return 0, nil
	}
	return b.files.Collect(ctx)
}

// DeleteUserFiles deletes every file that user uploaded, and the references
// of messages to them (account deletion).
func (b *Broker) DeleteUserFiles(ctx context.Context, user string) error {
	if b.files == nil {
		return nil
	}
	return b.files.DeleteUser(ctx, user)
}

// startFiles starts the collector; stopFiles stops it.
func (b *Broker) startFiles() {
	if b.files == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.stopFiles = func() { cancel(); <-done }
	go func() {
		defer close(done)
		b.files.Run(ctx)
	}()
}
