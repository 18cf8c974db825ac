package files

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/parley-im/parley/internal/wire"
)

// TestPartialQuota: unfinished resumable uploads count against the quota
// of their owner (and no one else's) as long as their state file exists;
// the tally is read back from PartialDir by a new Service (a restart);
// a finishing upload is checked against the stored bytes only.
func TestPartialQuota(t *testing.T) {
	ctx := context.Background()
	s := newService(t, usedStore{used: 100}, 1000, nil)
	writeInfo := func(id, owner string, size int64) {
		t.Helper()
		info := `{"ID":"` + id + `","Size":` + strconv.FormatInt(size, 10) + `,"MetaData":{"owner":"` + owner + `","content_type":"text/plain"}}`
		if err := os.WriteFile(filepath.Join(s.PartialDir, id+".info"), []byte(info), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.NotePartial("alice", "u1", 600)
	writeInfo("u1", "alice", 600)
	if we := s.Admit(ctx, "alice", 301); codeOf(we) != wire.CodeQuotaExceeded {
		t.Fatalf("100 stored + 600 in progress + 301: %v, want quota_exceeded", we)
	}
	if we := s.Admit(ctx, "alice", 300); we != nil {
		t.Fatalf("100 + 600 + 300 = the quota: %v", we)
	}
	if we := s.Admit(ctx, "bob", 900); we != nil {
		t.Fatalf("bob is not charged alice's upload: %v", we)
	}
	// Finishing: the upload itself is not counted twice.
	if err := s.checkQuota(ctx, "alice", 600, false); err != nil {
		t.Fatalf("finishing u1: %v", err)
	}
	// A restart reads the tally back from the state files.
	writeInfo("u2", "alice", 200)
	s2 := newService(t, usedStore{used: 100}, 1000, nil)
	s2.PartialDir = s.PartialDir
	if got := s2.partialBytes("alice", ""); got != 800 {
		t.Fatalf("after a restart alice has %d bytes in progress, want 800", got)
	}
	// Deleted (finished, abandoned, collected): no longer counted, noted
	// ones after the grace for tusd to write the state file.
	if err := os.Remove(filepath.Join(s.PartialDir, "u2.info")); err != nil {
		t.Fatal(err)
	}
	if got := s2.partialBytes("alice", ""); got != 600 {
		t.Fatalf("u2 deleted: %d bytes in progress, want 600", got)
	}
	s.ForgetPartial("alice", "u1")
	if got := s.partialBytes("alice", ""); got != 0 {
		t.Fatalf("u1 forgotten: %d bytes in progress, want 0", got)
	}
	s.NotePartial("alice", "u3", 500) // no state file yet: within the grace
	if got := s.partialBytes("alice", ""); got != 500 {
		t.Fatalf("u3 just noted: %d bytes in progress, want 500", got)
	}
}
