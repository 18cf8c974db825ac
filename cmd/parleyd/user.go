package main

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/postgres"
)

// DeleteUser deletes user's account in the configured store (parleyd user
// delete USER) and prints what it did.
func (m *Main) DeleteUser(ctx context.Context, user string) error {
	if !history.ValidUserID(user) {
		return configErrorf("user delete: %q is not a user id (1 to 64 of A-Z a-z 0-9 . _ @ -)", user)
	}
	s, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	p, ok := s.(history.Privacy)
	if !ok {
		return fmt.Errorf("user delete: the store cannot delete users")
	}
	del, err := p.DeleteUser(ctx, user, time.Now(), func() string { return history.NewID(time.Now()) })
	if err != nil {
		return fmt.Errorf("user delete %s: %w", user, err)
	}
	fmt.Fprintf(m.Stdout, "deleted user %s: %d messages deleted in %d conversations, %d erased\n", user, len(del.Events), len(del.Members), del.Erased)
	return nil
}

// setSearchLanguage applies PARLEY_SEARCH_LANGUAGE to a PostgreSQL store
// (which indexes every message again when it changes).
func (m *Main) setSearchLanguage(ctx context.Context) error {
	ps, ok := m.store.(*postgres.Store)
	if !ok {
		if m.Config.SearchLanguage != "" && m.Config.SearchLanguage != "simple" {
			m.Logger.Warn("PARLEY_SEARCH_LANGUAGE applies to PostgreSQL only: SQLite search uses its unicode61 tokenizer", "language", m.Config.SearchLanguage)
		}
		return nil
	}
	if err := ps.SetSearchLanguage(ctx, m.Config.SearchLanguage); err != nil {
		return configErrorf("search language (PARLEY_SEARCH_LANGUAGE): %v", err)
	}
	return nil
}
