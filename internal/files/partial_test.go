package files

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/wire"
)

// TestReservations: uploads admitted but not stored count against their
// owner's quota (and no one else's): resumable ones while their state file
// exists, one-shot ones until released; a new Service (a restart) reads the
// resumable ones back from PartialDir; a finishing upload is checked
// against the stored bytes only.
func TestReservations(t *testing.T) {
	ctx := context.Background()
	s := newService(t, usedStore{used: 100}, 1000, nil)
	writeInfo := func(id, owner string, size int64) {
		t.Helper()
		info := `{"ID":"` + id + `","Size":` + strconv.FormatInt(size, 10) + `,"MetaData":{"owner":"` + owner + `","content_type":"text/plain"}}`
		if err := os.WriteFile(filepath.Join(s.PartialDir, id+".info"), []byte(info), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if we := s.AdmitResumable(ctx, "alice", "u1", 600); we != nil {
		t.Fatal(we)
	}
	writeInfo("u1", "alice", 600)
	if we := s.AdmitResumable(ctx, "alice", "u2", 301); codeOf(we) != wire.CodeQuotaExceeded {
		t.Fatalf("100 stored + 600 in progress + 301: %v, want quota_exceeded", we)
	}
	if we := s.AdmitResumable(ctx, "bob", "b1", 900); we != nil {
		t.Fatalf("bob is not charged alice's upload: %v", we)
	}
	// Finishing: the upload itself is not counted twice.
	if err := s.checkQuota(ctx, "alice", 600, false); err != nil {
		t.Fatalf("finishing u1: %v", err)
	}
	// A restart reads the uploads in progress back from the state files.
	writeInfo("u2", "alice", 200)
	s2 := &Service{Store: usedStore{used: 100}, Blobs: s.Blobs, TempDir: t.TempDir(), PartialDir: s.PartialDir,
		URLSecret: []byte("k"), Quota: 1000, Log: s.Log}
	if err := s2.Init(); err != nil {
		t.Fatal(err)
	}
	if got := s2.reservedBytes("alice"); got != 800 {
		t.Fatalf("after a restart alice has %d bytes in progress, want 800", got)
	}
	// A state file gone (finished elsewhere, collected): no longer counted.
	if err := os.Remove(filepath.Join(s.PartialDir, "u2.info")); err != nil {
		t.Fatal(err)
	}
	s2.sweepReservations("")
	if got := s2.reservedBytes("alice"); got != 600 {
		t.Fatalf("u2 gone: %d bytes in progress, want 600", got)
	}
	s.Release("alice", "u1")
	if got := s.reservedBytes("alice"); got != 0 {
		t.Fatalf("u1 released: %d bytes in progress, want 0", got)
	}
	// Just admitted, no state file yet: counted within the grace.
	if we := s.AdmitResumable(ctx, "alice", "u3", 500); we != nil {
		t.Fatal(we)
	}
	if got := s.reservedBytes("alice"); got != 500 {
		t.Fatalf("u3 just admitted: %d bytes in progress, want 500", got)
	}
	s.Release("alice", "u3")
	if len(s.reserved.owners) != 1 { // bob's b1 only
		t.Fatalf("owners left in the tally: %v", s.reserved.owners)
	}
}

// TestAdmitTogether: uploads admitted at the same moment cannot pass the
// quota together: of 20 admissions of 100 bytes against 1000 with 100
// stored, exactly 9 pass.
func TestAdmitTogether(t *testing.T) {
	s := newService(t, slowStore{usedStore{used: 100}}, 1000, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for i := range 20 {
		wg.Go(func() {
			if we := s.AdmitResumable(context.Background(), "alice", "u"+strconv.Itoa(i), 100); we == nil {
				mu.Lock()
				passed++
				mu.Unlock()
			} else if we.Code != wire.CodeQuotaExceeded {
				t.Errorf("admission %d: %v", i, we)
			}
		})
	}
	wg.Wait()
	if passed != 9 {
		t.Fatalf("%d of 20 uploads of 100 bytes admitted at once against 900 free bytes, want 9", passed)
	}
}

// slowStore answers UploadBytes after a pause, as a store does, so that
// admissions that are not serialized would all read the same sum.
type slowStore struct{ usedStore }

func (s slowStore) UploadBytes(ctx context.Context, owner string) (int64, error) {
	time.Sleep(2 * time.Millisecond)
	return s.usedStore.UploadBytes(ctx, owner)
}

// blockingStore's UploadBytes waits until release is closed, for alice only.
type blockingStore struct {
	usedStore
	release chan struct{}
}

func (s blockingStore) UploadBytes(ctx context.Context, owner string) (int64, error) {
	if owner == "alice" {
		<-s.release
	}
	return s.used, nil
}

// TestAdmitLockPerOwner: while one of alice's admissions waits for the
// store, her next one gives up when its context ends (unavailable), and
// other users' admissions do not wait at all.
func TestAdmitLockPerOwner(t *testing.T) {
	st := blockingStore{release: make(chan struct{})}
	s := newService(t, st, 1000, nil)
	first := make(chan *wire.Error)
	go func() { first <- s.AdmitResumable(context.Background(), "alice", "a1", 10) }()
	for { // until the first admission holds alice's lock
		s.reserved.mu.Lock()
		held := s.reserved.slots["alice"] != nil && len(s.reserved.slots["alice"].ch) == 1
		s.reserved.mu.Unlock()
		if held {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for _, u := range []string{"bob", "carol", "dave", "erin", "frank"} {
		if we := s.AdmitResumable(context.Background(), u, u+"1", 10); we != nil {
			t.Fatalf("%s while alice waits: %v", u, we)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if we := s.AdmitResumable(ctx, "alice", "a2", 10); codeOf(we) != wire.CodeUnavailable {
		t.Fatalf("alice's second admission with a context that ends: %v, want unavailable", we)
	}
	close(st.release)
	if we := <-first; we != nil {
		t.Fatalf("alice's first admission: %v", we)
	}
	s.reserved.mu.Lock()
	defer s.reserved.mu.Unlock()
	if len(s.reserved.slots) != 0 {
		t.Fatalf("admission locks left: %v", s.reserved.slots)
	}
}
