package plain

import (
	"sync"
	"time"
)

// Timers runs functions after a delay, at most one per key (a client id):
// a newer one replaces it, and Cancel drops it. Wills with a delay wait
// here. The zero value is ready. Safe for concurrent use.
type Timers struct {
	mu     sync.Mutex
	timers map[string]*timer
}

// timer is one waiting function; its t is set under Timers.mu.
type timer struct{ t *time.Timer }

// After runs fn after d unless Cancel(key), Stop or another After(key)
// comes first.
func (ts *Timers) After(key string, d time.Duration, fn func()) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if old := ts.timers[key]; old != nil {
		old.t.Stop()
	}
	if ts.timers == nil {
		ts.timers = map[string]*timer{}
	}
	w := &timer{}
	w.t = time.AfterFunc(d, func() {
		ts.mu.Lock()
		if ts.timers[key] != w {
			ts.mu.Unlock()
			return
		}
		delete(ts.timers, key)
		ts.mu.Unlock()
		fn()
	})
	ts.timers[key] = w
}

// Cancel drops the function waiting for key, if any.
func (ts *Timers) Cancel(key string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if w := ts.timers[key]; w != nil {
		w.t.Stop()
		delete(ts.timers, key)
	}
}

// Stop drops every waiting function.
func (ts *Timers) Stop() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for key, w := range ts.timers {
		w.t.Stop()
		delete(ts.timers, key)
	}
}
