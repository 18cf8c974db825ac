package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

var _ history.MQTTStater = (*Store)(nil)

// PutMQTT implements history.MQTTStater.
func (s *Store) PutMQTT(ctx context.Context, recs ...history.MQTTRecord) error {
	b := &pgx.Batch{}
	for _, r := range recs {
		b.Queue(`INSERT INTO mqtt_state (kind, client, key, data) VALUES ($1, $2, $3, $4)
			ON CONFLICT (kind, client, key) DO UPDATE SET data = EXCLUDED.data`, string(r.Kind), r.Client, r.Key, r.Data)
	}
	return translate(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	}))
}

// DeleteMQTT implements history.MQTTStater.
func (s *Store) DeleteMQTT(ctx context.Context, kind byte, client, key string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM mqtt_state WHERE kind = $1 AND client = $2 AND key = $3`, string(kind), client, key)
	return translate(err)
}

// DeleteMQTTClient implements history.MQTTStater.
func (s *Store) DeleteMQTTClient(ctx context.Context, client string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM mqtt_state WHERE client = $1 AND kind IN ('c', 's', 'i')`, client)
	return translate(err)
}

// MQTTState implements history.MQTTStater.
func (s *Store) MQTTState(ctx context.Context, kind byte) ([]history.MQTTRecord, error) {
	return s.mqttRecords(ctx, `SELECT kind, client, key, data FROM mqtt_state WHERE kind = $1 ORDER BY client, key`, string(kind))
}

// MQTTSession implements history.MQTTStater.
func (s *Store) MQTTSession(ctx context.Context, client string) ([]history.MQTTRecord, error) {
	return s.mqttRecords(ctx, `SELECT kind, client, key, data FROM mqtt_state WHERE client = $1 AND kind IN ('c', 's', 'i')
		ORDER BY kind, key`, client)
}

func (s *Store) mqttRecords(ctx context.Context, query string, arg string) ([]history.MQTTRecord, error) {
	rows, err := s.pool.Query(ctx, query, arg)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	out, err := history.CollectMQTTRecords(rows)
	return out, translate(err)
}
