package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/parley-im/parley/history"
)

var _ history.UploadStore = (*Store)(nil)

// insertFiles records the references of message m to its attachments and
// marks the uploads attached. EINVALID when an upload is gone.
func insertFiles(ctx context.Context, ex execer, m history.Message) error {
	for _, a := range m.Attachments {
		res, err := ex.ExecContext(ctx, `INSERT INTO message_files (upload_id, conv, seq) SELECT ?1, ?2, ?3
			WHERE EXISTS (SELECT 1 FROM uploads WHERE id = ?1) ON CONFLICT DO NOTHING`, a.ID, m.Conv, m.Seq)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return history.Errorf(history.EINVALID, "an attached file is gone")
		}
		if _, err := ex.ExecContext(ctx, `UPDATE uploads SET attached = 1 WHERE id = ? AND attached = 0`, a.ID); err != nil {
			return err
		}
	}
	return nil
}

// forgetFiles is what a delete of message seq of conv does to its files:
// the message no longer refers to them, so that the collector deletes those
// that no other message refers to.
func forgetFiles(ctx context.Context, ex execer, conv string, seq int64) error {
	if _, err := ex.ExecContext(ctx, `UPDATE messages SET attachments = NULL WHERE conv = ? AND seq = ? AND attachments IS NOT NULL`, conv, seq); err != nil {
		return err
	}
	_, err := ex.ExecContext(ctx, `DELETE FROM message_files WHERE conv = ? AND seq = ?`, conv, seq)
	return err
}

const uploadColumns = `id, owner, size, content_type, sha256, width, height, coalesce(thumb_id, ''), thumb_size, thumb_type, created_at, attached`

func scanUpload(row scanner) (history.Upload, error) {
	var u history.Upload
	var ts string
	if err := row.Scan(&u.ID, &u.Owner, &u.Size, &u.ContentType, &u.SHA256, &u.Width, &u.Height, &u.Thumbnail, &u.ThumbSize, &u.ThumbType, &ts, &u.Attached); err != nil {
		return u, err
	}
	t, err := time.Parse(tsLayout, ts)
	u.CreatedAt = t.UTC()
	return u, err
}

// CreateUpload implements history.UploadStore.
func (s *Store) CreateUpload(ctx context.Context, u history.Upload) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO uploads (id, owner, size, content_type, sha256, width, height, thumb_id, thumb_size, thumb_type, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			u.ID, u.Owner, u.Size, u.ContentType, u.SHA256, u.Width, u.Height, nullable(u.Thumbnail), u.ThumbSize, u.ThumbType, u.CreatedAt.UTC().Format(tsLayout))
		return err
	})
}

// Upload implements history.UploadStore.
func (s *Store) Upload(ctx context.Context, id string) (history.Upload, error) {
	u, err := scanUpload(s.read.QueryRowContext(ctx, `SELECT `+uploadColumns+` FROM uploads WHERE id = ?`, id))
	return u, translate(err)
}

// UploadBytes implements history.UploadStore: an index-only sum over
// uploads_owner (owner, with size).
func (s *Store) UploadBytes(ctx context.Context, owner string) (int64, error) {
	var n int64
	err := s.read.QueryRowContext(ctx, `SELECT coalesce(sum(size), 0) FROM uploads WHERE owner = ?`, owner).Scan(&n)
	return n, translate(err)
}

// FileFor implements history.UploadStore.
func (s *Store) FileFor(ctx context.Context, user, id string) (history.Upload, error) {
	u, err := scanUpload(s.read.QueryRowContext(ctx, `SELECT `+uploadColumns+` FROM uploads u WHERE (u.id = ?2 OR u.thumb_id = ?2)
		AND (u.owner = ?1 OR EXISTS (SELECT 1 FROM message_files f JOIN members m ON m.conv = f.conv AND m.user_id = ?1
			WHERE f.upload_id = u.id AND f.seq >= m.joined_seq AND (m.left_seq IS NULL OR f.seq <= m.left_seq)))`, user, id))
	return u, translate(err)
}

// CollectUploads implements history.UploadStore.
func (s *Store) CollectUploads(ctx context.Context, staleBefore time.Time, limit int) ([]history.Upload, error) {
	var out []history.Upload
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM uploads WHERE id IN (SELECT u.id FROM uploads u
			WHERE (u.attached = 1 OR u.created_at < ?) AND NOT EXISTS (SELECT 1 FROM message_files f WHERE f.upload_id = u.id)
			LIMIT ?) RETURNING `+uploadColumns, staleBefore.UTC().Format(tsLayout), limit)
		out, err = collect(rows, err, scanUpload)
		return err
	})
	return out, err
}

// ForgetUserUploads implements history.UploadStore.
func (s *Store) ForgetUserUploads(ctx context.Context, owner string) ([]history.Upload, error) {
	var out []history.Upload
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM message_files WHERE upload_id IN (SELECT id FROM uploads WHERE owner = ?)`, owner); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `DELETE FROM uploads WHERE owner = ? RETURNING `+uploadColumns, owner)
		out, err = collect(rows, err, scanUpload)
		return err
	})
	return out, err
}

// scanAttachments sets the attachments of m from their column (JSON, ""
// for none), for the reads that scan a joined message column by column.
func scanAttachments(m *history.Message, attachments string) error {
	if attachments == "" {
		return nil
	}
	return json.Unmarshal([]byte(attachments), &m.Attachments)
}
