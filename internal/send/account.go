package send

import (
	"context"
	"errors"
	"time"

	"github.com/parley-im/parley/history"
)

// DeleteAccount deletes user's data (history.Privacy.DeleteUser) and
// delivers the message.deleted events it appended to the members of their
// conversations; the groups it left are reloaded. The caller disconnects
// the user's devices. It fails without a Privacy store.
func (m *Service) DeleteAccount(ctx context.Context, user string) (history.DeletedUser, error) {
	if m.Privacy == nil {
		return history.DeletedUser{}, errors.New("send: account deletion needs a Privacy store")
	}
	m.inflight.Add(1)
	defer m.inflight.Done()
	del, err := m.Privacy.DeleteUser(ctx, user, time.Now(), func() string { return history.NewID(time.Now()) })
	m.relations.forgetAll() // its blocks are gone, both ways
	if err != nil {
		return del, err
	}
	for _, ev := range del.Events {
		m.Deliver.DeliverMessage(del.Members[ev.Conv], ev)
	}
	for conv := range del.Members {
		if kind, group, _, _ := history.ParseConvID(conv); kind == history.KindGroup {
			m.Groups.Forget(group)
			m.invalidate(group)
		}
	}
	return del, nil
}
