package files

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// reservations holds, per owner, the bytes admitted but not yet stored:
// resumable uploads in progress (their declared length, until finished or
// deleted) and one-shot uploads being received. Admission reads the stored
// bytes and the reservations and reserves, under a lock per owner, so that
// uploads started at once cannot pass the quota together; a user cannot
// hold unfinished resumable uploads beyond it either.
//
// The resumable ones are read back from PartialDir's state files by Init
// (a restart); an entry whose state file is gone (finished, deleted,
// collected, or never created) drops out when its owner is next checked,
// or at the next collection. The tally is this node's: in cluster mode
// with a shared PartialDir each node knows the uploads in progress that
// were there when it started, and those created through it.
type reservations struct {
	mu     sync.Mutex
	owners map[string]map[string]reservation // owner -> upload id -> reservation
	slots  map[string]*ownerSlot             // admission locks of the owners admitting now
}

// ownerSlot is the admission lock of one owner: a one-place channel (so
// that waiting for it can be cancelled) and how many hold or wait for it.
type ownerSlot struct {
	ch   chan struct{}
	refs int
}

// lockOwner takes owner's admission lock, or gives up with ctx's error;
// unlock releases it.
func (r *reservations) lockOwner(ctx context.Context, owner string) (unlock func(), err error) {
	r.mu.Lock()
	if r.slots == nil {
		r.slots = map[string]*ownerSlot{}
	}
	sl := r.slots[owner]
	if sl == nil {
		sl = &ownerSlot{ch: make(chan struct{}, 1)}
		r.slots[owner] = sl
	}
	sl.refs++
	r.mu.Unlock()
	done := func() {
		r.mu.Lock()
		if sl.refs--; sl.refs == 0 {
			delete(r.slots, owner)
		}
		r.mu.Unlock()
	}
	select {
	case sl.ch <- struct{}{}:
		return func() { <-sl.ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// reservation is one upload admitted but not stored yet.
type reservation struct {
	size int64
	at   time.Time
	// receiving marks a one-shot upload being received: it has no state
	// file and is released by Put itself.
	receiving bool
}

// partialGrace is how long a resumable upload admitted at its creation
// counts without its state file, which tusd writes just after.
const partialGrace = time.Minute

// partialInfo is what is read of tusd's ID.info state file.
type partialInfo struct {
	ID       string
	Size     int64
	MetaData map[string]string
}

// AdmitResumable decides, at its creation and before any of its bytes are
// read, whether owner may start the resumable upload id of size bytes (its
// declared length): it takes one of owner's tokens from Limiter
// (rate_limited, with RetryAfter, when there is none), then checks Quota
// (quota_exceeded) against owner's stored uploads and the uploads admitted
// but not stored yet. Admitted, its size stays reserved until Release
// (stored, refused or deleted) or until its state file in PartialDir is
// gone. Errors are *wire.Error; unavailable when the message store fails.
// Put admits a one-shot upload the same way itself.
func (s *Service) AdmitResumable(ctx context.Context, owner, id string, size int64) *wire.Error {
	if err := s.admit(ctx, owner, id, size, false); err != nil {
		_, we := s.result(owner, history.Upload{}, err)
		return we
	}
	return nil
}

// Release gives back the reservation of upload id of owner: it was
// stored, refused or deleted.
func (s *Service) Release(owner, id string) {
	r := &s.reserved
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop(owner, id)
}

// drop deletes the reservation of upload id of owner, and owner's entry
// when it was the last. The caller holds r.mu.
func (r *reservations) drop(owner, id string) {
	delete(r.owners[owner], id)
	if len(r.owners[owner]) == 0 {
		delete(r.owners, owner)
	}
}

// admit takes a token of owner's upload rate, then, under owner's
// admission lock, checks the quota against the stored bytes and the
// reservations and reserves size under id (when there is a quota).
func (s *Service) admit(ctx context.Context, owner, id string, size int64, receiving bool) error {
	if ok, wait := s.Limiter.Take(owner, time.Now()); !ok {
		return wire.RateLimited("uploads", wait)
	}
	if s.Quota <= 0 {
		return nil
	}
	unlock, err := s.reserved.lockOwner(ctx, owner)
	if err != nil {
		return fmt.Errorf("wait to admit an upload of %s: %w", owner, err)
	}
	defer unlock()
	if err := s.checkQuota(ctx, owner, size, true); err != nil {
		return err
	}
	r := &s.reserved
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owners == nil {
		r.owners = map[string]map[string]reservation{}
	}
	if r.owners[owner] == nil {
		r.owners[owner] = map[string]reservation{}
	}
	r.owners[owner][id] = reservation{size: size, at: time.Now(), receiving: receiving}
	return nil
}

// reservedBytes is the sum of owner's reservations, those whose state file
// is gone dropped first (sweepReservations).
func (s *Service) reservedBytes(owner string) int64 {
	s.sweepReservations(owner)
	r := &s.reserved
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, e := range r.owners[owner] {
		n += e.size
	}
	return n
}

// sweepReservations drops the reservations of owner's resumable uploads
// (every owner's when owner is "", as Collect does after deleting the
// abandoned ones) admitted over partialGrace ago whose state file is gone.
// The state files are looked at without holding s.reserved.mu.
func (s *Service) sweepReservations(owner string) {
	type key struct{ owner, id string }
	var check []key
	r := &s.reserved
	r.mu.Lock()
	scan := r.owners
	if owner != "" {
		scan = map[string]map[string]reservation{owner: r.owners[owner]}
	}
	for o, ids := range scan {
		for id, e := range ids {
			if !e.receiving && time.Since(e.at) >= partialGrace {
				check = append(check, key{o, id})
			}
		}
	}
	r.mu.Unlock()
	var gone []key
	for _, k := range check {
		if _, err := os.Stat(filepath.Join(s.PartialDir, k.id+".info")); err != nil {
			gone = append(gone, k)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range gone {
		r.drop(k.owner, k.id)
	}
}

// loadPartials returns the reservations of the resumable uploads in
// progress, by owner, read from their state files in PartialDir: their
// declared sizes, admitted long enough ago to be dropped as soon as their
// state file is gone. Init calls it once, before any admission.
func (s *Service) loadPartials() map[string]map[string]reservation {
	owners := map[string]map[string]reservation{}
	infos, _ := filepath.Glob(filepath.Join(s.PartialDir, "*.info"))
	for _, path := range infos {
		b, err := os.ReadFile(path)
		var info partialInfo
		if err != nil || json.Unmarshal(b, &info) != nil || info.MetaData[PartialOwnerKey] == "" {
			continue
		}
		owner := info.MetaData[PartialOwnerKey]
		if owners[owner] == nil {
			owners[owner] = map[string]reservation{}
		}
		owners[owner][info.ID] = reservation{size: info.Size}
	}
	return owners
}
