package sqlite

import (
	"context"
	"errors"

	"github.com/parley-im/parley/history"
)

// TODO(msgs): the store helper replaces these.
var errTODO = errors.New("sqlite: not implemented yet")

// Counts implements history.Store.
func (s *Store) Counts(ctx context.Context, user, conv string) (int64, int64, error) {
	return 0, 0, errTODO
}

// SetSettings implements history.Store.
func (s *Store) SetSettings(ctx context.Context, user, conv string, st history.Settings) (history.Settings, error) {
	return st, errTODO
}
