package files

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// partials tallies, per owner, the declared sizes of the resumable uploads
// in progress in PartialDir, so that the quota counts them: without it a
// user could hold any number of unfinished uploads until Collect deletes
// them. The tally is this node's: it is read from the directory once, then
// kept by NotePartial; an entry whose state file is gone (finished,
// abandoned, collected, or never created) is dropped when its owner is
// next checked.
type partials struct {
	mu     sync.Mutex
	loaded bool
	owners map[string]map[string]partialEntry // owner -> upload id -> entry
}

// partialEntry is one upload in progress: its declared size, and when
// NotePartial noted it (tusd writes its state file just after).
type partialEntry struct {
	size  int64
	noted time.Time
}

// partialGrace is how long an upload noted by NotePartial counts without
// its state file, which tusd writes after the creation is admitted.
const partialGrace = time.Minute

// partialInfo is what partialBytes reads of tusd's ID.info state file.
type partialInfo struct {
	ID       string
	Size     int64
	MetaData map[string]string
}

// NotePartial records that owner created the resumable upload id of size
// bytes in PartialDir (internal/rest calls it when it names a new upload):
// until it is finished or deleted, it counts against owner's Quota.
func (s *Service) NotePartial(owner, id string, size int64) {
	s.partials.mu.Lock()
	defer s.partials.mu.Unlock()
	s.loadPartials()
	if s.partials.owners[owner] == nil {
		s.partials.owners[owner] = map[string]partialEntry{}
	}
	s.partials.owners[owner][id] = partialEntry{size, time.Now()}
}

// ForgetPartial drops owner's resumable upload id from the tally: it was
// finished or deleted.
func (s *Service) ForgetPartial(owner, id string) {
	s.partials.mu.Lock()
	defer s.partials.mu.Unlock()
	delete(s.partials.owners[owner], id)
}

// partialBytes is the sum of the declared sizes of owner's resumable
// uploads in progress, leaving out the one named except (finishing).
func (s *Service) partialBytes(owner, except string) int64 {
	s.partials.mu.Lock()
	defer s.partials.mu.Unlock()
	s.loadPartials()
	var n int64
	for id, e := range s.partials.owners[owner] {
		if _, err := os.Stat(filepath.Join(s.PartialDir, id+".info")); err != nil && time.Since(e.noted) > partialGrace {
			delete(s.partials.owners[owner], id)
			continue
		}
		if id != except {
			n += e.size
		}
	}
	if len(s.partials.owners[owner]) == 0 {
		delete(s.partials.owners, owner)
	}
	return n
}

// loadPartials reads the owners and sizes of the uploads in progress from
// their state files, once. The caller holds s.partials.mu.
func (s *Service) loadPartials() {
	if s.partials.loaded {
		return
	}
	s.partials.loaded = true
	s.partials.owners = map[string]map[string]partialEntry{}
	infos, _ := filepath.Glob(filepath.Join(s.PartialDir, "*.info"))
	for _, path := range infos {
		b, err := os.ReadFile(path)
		var info partialInfo
		if err != nil || json.Unmarshal(b, &info) != nil || info.MetaData[PartialOwnerKey] == "" {
			continue
		}
		owner := info.MetaData[PartialOwnerKey]
		if s.partials.owners[owner] == nil {
			s.partials.owners[owner] = map[string]partialEntry{}
		}
		s.partials.owners[owner][info.ID] = partialEntry{size: info.Size}
	}
}
