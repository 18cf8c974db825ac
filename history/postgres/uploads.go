package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

var _ history.UploadStore = (*Store)(nil)

// queueFiles queues on batch the references of messages (conv, seq) to
// uploads id, and marks the uploads attached. A reference to an upload that
// is gone fails the transaction (foreign key).
func queueFiles(batch *pgx.Batch, conv []string, seq []int64, id []string) {
	batch.Queue(`INSERT INTO message_files (upload_id, conv, seq) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING`, id, conv, seq)
	batch.Queue(`UPDATE uploads SET attached = true WHERE id = ANY($1::text[]) AND NOT attached`, id)
}

// queueForgetFiles queues on batch what a delete of message seq of conv does
// to its files: the message no longer refers to them, so that the collector
// deletes those that no other message refers to.
func queueForgetFiles(batch *pgx.Batch, conv string, seq int64) {
	batch.Queue(`UPDATE messages SET attachments = NULL WHERE conv = $1 AND seq = $2 AND attachments IS NOT NULL`, conv, seq)
	batch.Queue(`DELETE FROM message_files WHERE conv = $1 AND seq = $2`, conv, seq)
}

const uploadColumns = `id, owner, size, content_type, sha256, width, height, coalesce(thumb_id, ''), thumb_size, thumb_type, created_at, attached`

func scanUpload(row pgx.Row) (history.Upload, error) {
	var u history.Upload
	err := row.Scan(&u.ID, &u.Owner, &u.Size, &u.ContentType, &u.SHA256, &u.Width, &u.Height, &u.Thumbnail, &u.ThumbSize, &u.ThumbType, &u.CreatedAt, &u.Attached)
	u.CreatedAt = u.CreatedAt.UTC()
	return u, err
}

// CreateUpload implements history.UploadStore.
func (s *Store) CreateUpload(ctx context.Context, u history.Upload) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO uploads (id, owner, size, content_type, sha256, width, height, thumb_id, thumb_size, thumb_type, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, ''), $9, $10, $11)`,
		u.ID, u.Owner, u.Size, u.ContentType, u.SHA256, u.Width, u.Height, u.Thumbnail, u.ThumbSize, u.ThumbType, u.CreatedAt)
	return translate(err)
}

// Upload implements history.UploadStore.
func (s *Store) Upload(ctx context.Context, id string) (history.Upload, error) {
	u, err := scanUpload(s.pool.QueryRow(ctx, `SELECT `+uploadColumns+` FROM uploads WHERE id = $1`, id))
	return u, translate(err)
}

// UploadBytes implements history.UploadStore: an index-only sum over
// uploads_owner (owner, with size).
func (s *Store) UploadBytes(ctx context.Context, owner string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(size), 0)::bigint FROM uploads WHERE owner = $1`, owner).Scan(&n)
	return n, translate(err)
}

// FileFor implements history.UploadStore.
func (s *Store) FileFor(ctx context.Context, user, id string) (history.Upload, error) {
	u, err := scanUpload(s.pool.QueryRow(ctx, `SELECT `+uploadColumns+` FROM uploads u WHERE (u.id = $2 OR u.thumb_id = $2)
		AND (u.owner = $1 OR EXISTS (SELECT 1 FROM message_files f JOIN members m ON m.conv = f.conv AND m.user_id = $1
			WHERE f.upload_id = u.id AND f.seq >= m.joined_seq AND (m.left_seq IS NULL OR f.seq <= m.left_seq)))`, user, id))
	return u, translate(err)
}

// CollectUploads implements history.UploadStore.
func (s *Store) CollectUploads(ctx context.Context, staleBefore time.Time, limit int) ([]history.Upload, error) {
	var out []history.Upload
	err := s.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM uploads WHERE id IN (SELECT u.id FROM uploads u
			WHERE (u.attached OR u.created_at < $1) AND NOT EXISTS (SELECT 1 FROM message_files f WHERE f.upload_id = u.id)
			LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING `+uploadColumns, staleBefore, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (history.Upload, error) { return scanUpload(r) })
		return err
	})
	return out, err
}

// ForgetUserUploads implements history.UploadStore.
func (s *Store) ForgetUserUploads(ctx context.Context, owner string) ([]history.Upload, error) {
	var out []history.Upload
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM message_files WHERE upload_id IN (SELECT id FROM uploads WHERE owner = $1)`, owner); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM uploads WHERE owner = $1 RETURNING `+uploadColumns, owner)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (history.Upload, error) { return scanUpload(r) })
		return err
	})
	return out, err
}
