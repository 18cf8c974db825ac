// Package files is the attachments engine: it stores uploads (hashing them,
// measuring images and making their thumbnails), resolves the attachments
// of a send, decides who may read a file, signs short-lived URLs and
// collects the files that no message refers to. It knows nothing of HTTP
// but the path its signed URLs name: internal/rest serves it. The bytes live in a blob.Store, what they are in
// the message store (history.UploadStore).
package files

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/blob"
	"github.com/parley-im/parley/internal/defaults"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

// Defaults of Service.
const (
	// DefaultMaxUpload bounds an upload: 25 MiB.
	DefaultMaxUpload = 25 << 20
	// DefaultUnreferencedTTL is how long an upload may wait for a message
	// to refer to it before it is collected.
	DefaultUnreferencedTTL = 24 * time.Hour
	// DefaultCollectEvery is the time between two collections.
	DefaultCollectEvery = 10 * time.Minute
	// DefaultURLTTL is how long a signed URL is valid.
	DefaultURLTTL = time.Hour
)

// ErrNotFound is returned for a file that does not exist or that the user
// may not read: the two are not told apart.
var ErrNotFound = errors.New("files: not found")

// Service stores and serves uploaded files. Set the required fields, then
// call Init once.
type Service struct {
	// Store records uploads and who may read them; required.
	Store history.UploadStore
	// Blobs holds the bytes; required.
	Blobs blob.Store
	// TempDir holds uploads while they are received; default os.TempDir().
	TempDir string
	// PartialDir holds the resumable uploads in progress (the tus protocol,
	// served by internal/rest): their bytes so far and their state, one
	// "ID" and one "ID.info" file each. Collect deletes those not written
	// to for UnreferencedTTL. Default TempDir/partial.
	PartialDir string
	// MaxUpload bounds an upload in bytes; default DefaultMaxUpload.
	MaxUpload int64
	// Quota bounds the bytes of one user's stored uploads (history.
	// UploadStore.UploadBytes: thumbnails not counted): an upload that
	// would take its user over it is refused with quota_exceeded. Uploads
	// deleted by Collect or DeleteUser give their bytes back. 0 or less:
	// no quota. Uploads checked at once may together pass it by at most
	// their own sizes.
	Quota int64
	// Limiter bounds the uploads each user may start (Admit takes one
	// token per upload): beyond it they are refused with rate_limited and
	// how long to wait. Nil: no limit.
	Limiter *send.RateLimiter
	// MaxPixels bounds the pixels of an image; default DefaultMaxPixels.
	MaxPixels int64
	// UnreferencedTTL is how long an upload may wait for a message; default
	// DefaultUnreferencedTTL.
	UnreferencedTTL time.Duration
	// CollectEvery is the time between collections in Run; default
	// DefaultCollectEvery.
	CollectEvery time.Duration
	// URLSecret signs URLs (HMAC-SHA256); required.
	URLSecret []byte
	// URLTTL is how long a signed URL is valid; default DefaultURLTTL.
	URLTTL time.Duration
	// PublicURL, when set, is the server's external base URL without a
	// trailing slash (https://chat.example.com): URL's answers are then
	// absolute. Empty: relative ("/v1/files/...").
	PublicURL string
	// Registry, when set, receives the metrics parley_upload_bytes_total,
	// parley_uploads_total and parley_files_deleted_total.
	Registry prometheus.Registerer
	// Log defaults to slog.Default().
	Log *slog.Logger

	uploadBytes prometheus.Counter
	uploads     *prometheus.CounterVec
	deleted     prometheus.Counter
	reserved    reservations
}

// PartialOwnerKey is the key of an upload's owner in the metadata of a
// resumable upload in progress (tusd's ID.info file).
const PartialOwnerKey = "owner"

// Init checks the required fields and applies the defaults. With a Quota,
// it reads the resumable uploads in progress back from their state files
// in PartialDir (a restart), to count them against their owners' quotas.
func (s *Service) Init() error {
	if s.Store == nil || s.Blobs == nil || len(s.URLSecret) == 0 {
		return errors.New("files: Service needs Store, Blobs and URLSecret")
	}
	if s.TempDir == "" {
		s.TempDir = os.TempDir()
	}
	if s.PartialDir == "" {
		s.PartialDir = filepath.Join(s.TempDir, "partial")
	}
	if err := os.MkdirAll(s.PartialDir, 0o750); err != nil {
		return fmt.Errorf("files: %w", err)
	}
	defaults.Positive(&s.MaxUpload, DefaultMaxUpload)
	defaults.Positive(&s.MaxPixels, DefaultMaxPixels)
	defaults.Positive(&s.UnreferencedTTL, DefaultUnreferencedTTL)
	defaults.Positive(&s.CollectEvery, DefaultCollectEvery)
	defaults.Positive(&s.URLTTL, DefaultURLTTL)
	if s.Log == nil {
		s.Log = slog.Default()
	}
	s.uploadBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_upload_bytes_total", Help: "Bytes of files uploaded and stored (thumbnails included)."})
	s.uploads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_uploads_total", Help: "Uploads by result: stored, too_large, invalid, quota_exceeded, rate_limited, failed."}, []string{"result"})
	s.deleted = prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_files_deleted_total", Help: "Files deleted: unreferenced, of deleted messages or of deleted accounts."})
	if s.Registry != nil {
		for _, c := range []prometheus.Collector{s.uploadBytes, s.uploads, s.deleted} {
			if err := s.Registry.Register(c); err != nil {
				return fmt.Errorf("files: %w", err)
			}
		}
	}
	if s.Quota > 0 {
		s.reserved.owners = s.loadPartials()
	}
	return nil
}

// checkQuota refuses (quota_exceeded) an upload of size bytes that would
// take owner's stored uploads over Quota; withReserved counts the uploads
// admitted but not stored yet too, as a new upload must (admit). One that
// finishes was admitted with the others, and is checked against the
// stored ones only.
func (s *Service) checkQuota(ctx context.Context, owner string, size int64, withReserved bool) error {
	if s.Quota <= 0 {
		return nil
	}
	// Reservations first: an upload is stored before its reservation is
	// released, so one that finishes in between is counted twice, never
	// missed.
	var reserved int64
	if withReserved {
		reserved = s.reservedBytes(owner)
	}
	used, err := s.Store.UploadBytes(ctx, owner)
	if err != nil {
		return fmt.Errorf("upload bytes of %s: %w", owner, err)
	}
	if used+reserved+size > s.Quota {
		if reserved > 0 {
			return wire.Errorf(wire.CodeQuotaExceeded, "upload quota exceeded: your stored files take %d and your uploads in progress %d of your %d bytes, and this one has %d", used, reserved, s.Quota, size)
		}
		return wire.Errorf(wire.CodeQuotaExceeded, "upload quota exceeded: your stored files take %d of your %d bytes, and this one has %d", used, s.Quota, size)
	}
	return nil
}

// Put admits (Admit) and stores the upload of owner: size bytes of
// contentType read from r. Errors are *wire.Error: too_large beyond
// MaxUpload or when r holds more than size bytes, rate_limited and
// quota_exceeded as Admit's (r is not read then), invalid_payload for a
// short body or an image that cannot be decoded or has too many pixels,
// unavailable when the blob or message store fails.
func (s *Service) Put(ctx context.Context, owner, contentType string, size int64, r io.Reader) (history.Upload, *wire.Error) {
	u, err := s.put(ctx, owner, contentType, size, r)
	return s.result(owner, u, err)
}

// result counts the outcome of an upload and turns err into a *wire.Error.
func (s *Service) result(owner string, u history.Upload, err error) (history.Upload, *wire.Error) {
	var we *wire.Error
	switch {
	case err == nil:
		s.uploads.WithLabelValues("stored").Inc()
		return u, nil
	case errors.As(err, &we):
	default:
		s.Log.Error("store upload", "owner", owner, "error", err)
		we = wire.Errorf(wire.CodeUnavailable, "the file store is unavailable, try again")
	}
	result := map[string]string{wire.CodeTooLarge: "too_large", wire.CodeInvalidPayload: "invalid",
		wire.CodeQuotaExceeded: "quota_exceeded", wire.CodeRateLimited: "rate_limited"}[we.Code]
	if result == "" {
		result = "failed"
	}
	s.uploads.WithLabelValues(result).Inc()
	return history.Upload{}, we
}

func (s *Service) put(ctx context.Context, owner, contentType string, size int64, r io.Reader) (history.Upload, error) {
	if size > s.MaxUpload {
		return history.Upload{}, wire.Errorf(wire.CodeTooLarge, "file of %d bytes is larger than the limit of %d bytes", size, s.MaxUpload)
	}
	id := history.NewUploadID()
	if err := s.admit(ctx, owner, id, size, true); err != nil {
		return history.Upload{}, err
	}
	defer s.Release(owner, id) // stored (then counted as such) or refused
	tmp, err := os.CreateTemp(s.TempDir, "parley-upload-*")
	if err != nil {
		return history.Upload{}, err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, size+1))
	if err != nil {
		return history.Upload{}, wire.Errorf(wire.CodeInvalidPayload, "cannot read the file: %v", err)
	}
	switch {
	case n > size:
		return history.Upload{}, wire.Errorf(wire.CodeTooLarge, "the body is longer than its Content-Length of %d bytes", size)
	case n < size:
		return history.Upload{}, wire.Errorf(wire.CodeInvalidPayload, "the body has %d bytes, not its Content-Length of %d", n, size)
	}
	u := history.Upload{ID: id, Owner: owner, Size: size, ContentType: contentType,
		SHA256: hex.EncodeToString(h.Sum(nil)), CreatedAt: time.Now().UTC()}
	return u, s.store(ctx, &u, tmp)
}

// PutFile stores the whole file at path, received by a resumable upload
// of owner, as upload id: the same checks, hash, thumbnail and record as
// Put, the quota checked again (the upload was admitted at its creation,
// and owner's other uploads may have been stored since), no token taken.
// The caller removes the file afterwards. Errors are as Put's.
func (s *Service) PutFile(ctx context.Context, id, owner, contentType, path string) (history.Upload, *wire.Error) {
	u, err := s.putFile(ctx, id, owner, contentType, path)
	return s.result(owner, u, err)
}

func (s *Service) putFile(ctx context.Context, id, owner, contentType, path string) (history.Upload, error) {
	if !history.ValidUploadID(id) || len(id) != 33 {
		return history.Upload{}, fmt.Errorf("files: invalid upload id %q", id)
	}
	f, err := os.Open(path)
	if err != nil {
		return history.Upload{}, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return history.Upload{}, err
	}
	if size > s.MaxUpload {
		return history.Upload{}, wire.Errorf(wire.CodeTooLarge, "file of %d bytes is larger than the limit of %d bytes", size, s.MaxUpload)
	}
	if err := s.checkQuota(ctx, owner, size, false); err != nil {
		return history.Upload{}, err
	}
	u := history.Upload{ID: id, Owner: owner, Size: size, ContentType: contentType,
		SHA256: hex.EncodeToString(h.Sum(nil)), CreatedAt: time.Now().UTC()}
	return u, s.store(ctx, &u, f)
}

// store measures and thumbnails the image in f (u's bytes, hashed), puts
// f and the thumbnail into the blob store and records u.
func (s *Service) store(ctx context.Context, u *history.Upload, f *os.File) error {
	var thumb []byte
	var err error
	if IsImage(u.ContentType) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		u.Width, u.Height, thumb, err = thumbnail(f, u.ContentType, s.MaxPixels)
		if errors.Is(err, errImage) {
			return wire.Errorf(wire.CodeInvalidPayload, "%s", err.Error()[len("files: "):])
		}
		if err != nil {
			return err
		}
		u.Thumbnail, u.ThumbSize, u.ThumbType = history.ThumbnailID(u.ID), int64(len(thumb)), "image/jpeg"
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := s.Blobs.Put(ctx, u.ID, f, u.Size, u.ContentType); err != nil {
		return err
	}
	if thumb != nil {
		if err := s.Blobs.Put(ctx, u.Thumbnail, bytes.NewReader(thumb), u.ThumbSize, u.ThumbType); err != nil {
			s.deleteBlobs(*u)
			return err
		}
	}
	if err := s.Store.CreateUpload(ctx, *u); err != nil {
		s.deleteBlobs(*u)
		return err
	}
	s.uploadBytes.Add(float64(u.Size + u.ThumbSize))
	return nil
}

// Resolve returns the attachments of a send by owner: each ref must name
// an upload of owner (invalid_payload otherwise, for unknown ids too);
// unavailable when the store fails.
func (s *Service) Resolve(ctx context.Context, owner string, refs []wire.AttachmentRef) ([]history.Attachment, *wire.Error) {
	out := make([]history.Attachment, 0, len(refs))
	for _, ref := range refs {
		u, err := s.Store.Upload(ctx, ref.ID)
		switch history.ErrorCode(err) {
		case "":
		case history.ENOTFOUND:
			return nil, wire.Errorf(wire.CodeInvalidPayload, "attachments: no upload %q", ref.ID)
		default:
			s.Log.Error("load upload", "id", ref.ID, "error", err)
			return nil, wire.Errorf(wire.CodeUnavailable, "the message store is unavailable, try again")
		}
		if u.Owner != owner {
			return nil, wire.Errorf(wire.CodeInvalidPayload, "attachments: no upload %q", ref.ID)
		}
		out = append(out, u.Attachment(ref.Name))
	}
	return out, nil
}

// File is a file opened for reading.
type File struct {
	io.ReadSeekCloser
	ID          string
	Size        int64
	ContentType string
	// ETag is the file's strong entity tag: its SHA-256 (or its id for a
	// thumbnail), quoted.
	ETag    string
	ModTime time.Time
}

// Open opens file id (an upload or a thumbnail) for user: ErrNotFound when
// it does not exist or user may not read it (history.UploadStore.FileFor).
// user "" skips the check: the caller verified a signed URL.
func (s *Service) Open(ctx context.Context, user, id string) (*File, error) {
	if !history.ValidUploadID(id) {
		return nil, ErrNotFound
	}
	var u history.Upload
	var err error
	if user == "" {
		u, err = s.Store.Upload(ctx, id)
		if history.ErrorCode(err) == history.ENOTFOUND && len(id) == 34 {
			u, err = s.Store.Upload(ctx, id[:33])
		}
	} else {
		u, err = s.Store.FileFor(ctx, user, id)
	}
	if history.ErrorCode(err) == history.ENOTFOUND {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	f := &File{ID: id, Size: u.Size, ContentType: u.ContentType, ETag: `"` + u.SHA256 + `"`, ModTime: u.CreatedAt}
	if id != u.ID {
		if id != u.Thumbnail {
			return nil, ErrNotFound
		}
		f.Size, f.ContentType, f.ETag = u.ThumbSize, u.ThumbType, `"`+id+`"`
	}
	rc, err := s.Blobs.Open(ctx, id)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	f.ReadSeekCloser = rc
	return f, nil
}

// URL returns the signed URL of file id, valid for URLTTL from now: the
// path internal/rest serves files at with Sign's query,
// "/v1/files/ID?exp=UNIX&sig=HEX", after PublicURL when it is set.
func (s *Service) URL(id string) string {
	return s.PublicURL + "/v1/files/" + id + "?" + s.Sign(id, time.Now())
}

// Sign returns the query of a URL that lets anyone read file id until
// URLTTL from now: "exp=UNIX&sig=HEX".
func (s *Service) Sign(id string, now time.Time) string {
	exp := strconv.FormatInt(now.Add(s.URLTTL).Unix(), 10)
	return "exp=" + exp + "&sig=" + s.mac(id, exp)
}

// Verify reports whether sig signs file id until exp (Unix seconds, as
// text) and exp is not past at now.
func (s *Service) Verify(id, exp, sig string, now time.Time) bool {
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || now.Unix() > t {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(s.mac(id, exp)))
}

func (s *Service) mac(id, exp string) string {
	m := hmac.New(sha256.New, s.URLSecret)
	m.Write([]byte("parley-file\x00" + id + "\x00" + exp))
	return hex.EncodeToString(m.Sum(nil))
}

// Collect deletes the uploads that no message refers to (history.
// UploadStore.CollectUploads: unreferenced for UnreferencedTTL, or whose
// messages were deleted) and their blobs, and the resumable uploads in
// progress abandoned for UnreferencedTTL, and returns how many it deleted.
func (s *Service) Collect(ctx context.Context) (int, error) {
	total := s.collectPartial(time.Now().Add(-s.UnreferencedTTL))
	s.sweepReservations("")
	for {
		us, err := s.Store.CollectUploads(ctx, time.Now().Add(-s.UnreferencedTTL), 500)
		if err != nil {
			return total, err
		}
		for _, u := range us {
			s.deleteBlobs(u)
		}
		total += len(us)
		if len(us) < 500 {
			return total, nil
		}
	}
}

// collectPartial deletes the resumable uploads in progress whose data was
// last written before staleBefore, and returns how many it deleted.
func (s *Service) collectPartial(staleBefore time.Time) int {
	infos, err := filepath.Glob(filepath.Join(s.PartialDir, "*.info"))
	if err != nil {
		return 0
	}
	n := 0
	for _, info := range infos {
		id := strings.TrimSuffix(filepath.Base(info), ".info")
		last := time.Time{}
		for _, p := range []string{info, filepath.Join(s.PartialDir, id)} {
			if st, err := os.Stat(p); err == nil && st.ModTime().After(last) {
				last = st.ModTime()
			}
		}
		if last.After(staleBefore) {
			continue
		}
		for _, suffix := range []string{"", ".lock", ".stop", ".info"} {
			if err := os.Remove(filepath.Join(s.PartialDir, id+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.Log.Warn("delete an abandoned upload", "id", id, "error", err)
			}
		}
		s.deleted.Inc()
		n++
	}
	return n
}

// DeleteUser deletes every file of owner (account deletion).
func (s *Service) DeleteUser(ctx context.Context, owner string) error {
	us, err := s.Store.ForgetUserUploads(ctx, owner)
	if err != nil {
		return err
	}
	for _, u := range us {
		s.deleteBlobs(u)
	}
	return nil
}

// deleteBlobs deletes the blobs of u, whose record is gone; a failure leaves
// an orphan blob behind and is logged.
func (s *Service) deleteBlobs(u history.Upload) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, key := range []string{u.ID, u.Thumbnail} {
		if key == "" {
			continue
		}
		if err := s.Blobs.Delete(ctx, key); err != nil {
			s.Log.Warn("delete file", "id", key, "error", err)
		}
	}
	s.deleted.Inc()
}

// Run collects every CollectEvery until ctx is done.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.CollectEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.Collect(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("collect files", "error", err)
		} else if n > 0 {
			s.Log.Info("collected files", "deleted", n)
		}
	}
}
