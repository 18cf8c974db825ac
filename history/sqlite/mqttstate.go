package sqlite

import (
	"context"
	"database/sql"

	"github.com/parley-im/parley/history"
)

var _ history.MQTTStater = (*Store)(nil)

// PutMQTT implements history.MQTTStater.
func (s *Store) PutMQTT(ctx context.Context, recs ...history.MQTTRecord) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, r := range recs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO mqtt_state (kind, client, key, data) VALUES (?1, ?2, ?3, ?4)
				ON CONFLICT (kind, client, key) DO UPDATE SET data = ?4`, string(r.Kind), r.Client, r.Key, r.Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteMQTT implements history.MQTTStater.
func (s *Store) DeleteMQTT(ctx context.Context, kind byte, client, key string) error {
	_, err := s.write.ExecContext(ctx, `DELETE FROM mqtt_state WHERE kind = ? AND client = ? AND key = ?`, string(kind), client, key)
	return translate(err)
}

// DeleteMQTTClient implements history.MQTTStater.
func (s *Store) DeleteMQTTClient(ctx context.Context, client string) error {
	_, err := s.write.ExecContext(ctx, `DELETE FROM mqtt_state WHERE client = ? AND kind IN ('c', 's', 'i')`, client)
	return translate(err)
}

// MQTTState implements history.MQTTStater.
func (s *Store) MQTTState(ctx context.Context, kind byte) ([]history.MQTTRecord, error) {
	return s.mqttRecords(ctx, `SELECT kind, client, key, data FROM mqtt_state WHERE kind = ? ORDER BY client, key`, string(kind))
}

// MQTTSession implements history.MQTTStater.
func (s *Store) MQTTSession(ctx context.Context, client string) ([]history.MQTTRecord, error) {
	return s.mqttRecords(ctx, `SELECT kind, client, key, data FROM mqtt_state WHERE client = ? AND kind IN ('c', 's', 'i')
		ORDER BY kind, key`, client)
}

func (s *Store) mqttRecords(ctx context.Context, query string, arg string) ([]history.MQTTRecord, error) {
	rows, err := s.read.QueryContext(ctx, query, arg)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	out, err := history.CollectMQTTRecords(rows)
	return out, translate(err)
}
