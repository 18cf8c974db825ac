package auth

import (
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"

	"github.com/parley-im/parley/internal/wire"
)

// MQTT 5 reason codes a SUBACK explanation knows.
const (
	codeUnspecified   = 0x80
	codeSharedNoLocal = 0x82 // protocol violation: no local on a shared subscription
	codeNotAuthorized = 0x87
	codeFilterInvalid = 0x8F
)

// DefaultMaxSubscribeFilters is the default bound on the filters of one
// SUBSCRIBE packet: the filters beyond it are refused (0x8F topic filter
// invalid; MQTT 3.1.1: 0x80), so that one packet cannot ask for thousands of
// presence checks.
const DefaultMaxSubscribeFilters = 100

// maxRefusalsNamed bounds the filters a SUBACK's Reason String names.
const maxRefusalsNamed = 5

// SubackNote is what to change in a SUBACK to an MQTT 5 client: its Reason
// String, and the filters whose 0x87 (not authorized) becomes 0x80.
type SubackNote struct {
	// Text is the Reason String.
	Text string
	// Unspecified are the indexes of plain MQTT filters the ACL denies.
	Unspecified []int
}

// Apply returns codes with the changes of n (a copy when it changes any).
func (n SubackNote) Apply(codes []byte) []byte {
	if len(n.Unspecified) == 0 {
		return codes
	}
	codes = slices.Clone(codes)
	for _, i := range n.Unspecified {
		if i < len(codes) && codes[i] == codeNotAuthorized {
			codes[i] = codeUnspecified
		}
	}
	return codes
}

// ExplainSuback explains to clientID why filters of its SUBSCRIBE were
// refused (codes, the SUBACK's, at 0x80 and above): for each (up to 5 are
// named) the filter and the rule it broke, e.g. `"im/inbox/bob": you may
// read only your own inbox, im/inbox/alice`, and how many empty filters
// were beyond limit (the bound the SUBSCRIBE was held to; the caller
// applies DefaultMaxSubscribeFilters). A plain MQTT
// filter the operator's ACL denies gets 0x80, which the Eclipse Paho suites
// and their client expect; the Reason String still says why. ok is false
// when nothing was refused.
func (a *Authorizer) ExplainSuback(clientID string, filters []string, codes []byte, limit int) (note SubackNote, ok bool) {
	var parts []string
	beyond, more := 0, 0
	for i, code := range codes {
		if code < 0x80 || i >= len(filters) {
			continue
		}
		f := filters[i]
		if t, _ := wire.StripShare(f); code == codeNotAuthorized && !a.Topics.Owns(t) {
			note.Unspecified = append(note.Unspecified, i)
		}
		if f == "" && code == codeFilterInvalid && i >= limit {
			beyond++
			continue
		}
		if len(parts) == maxRefusalsNamed {
			more++
			continue
		}
		var why string
		switch code {
		case codeNotAuthorized:
			why = a.ReadRefusal(clientID, f)
		case codeFilterInvalid:
			why = "not a valid topic filter"
		case codeSharedNoLocal:
			why = "no local is not allowed on a shared subscription"
		default:
			why = fmt.Sprintf("refused (reason code 0x%02X)", code)
		}
		parts = append(parts, fmt.Sprintf("%q: %s", f, why))
	}
	if more > 0 {
		parts = append(parts, fmt.Sprintf("and %d more refused", more))
	}
	if beyond > 0 {
		noun := "filters"
		if beyond == 1 {
			noun = "filter"
		}
		parts = append(parts, fmt.Sprintf("%d %s beyond the limit of %d per SUBSCRIBE", beyond, noun, limit))
	}
	note.Text = strings.Join(parts, "; ")
	return note, len(parts) > 0
}

// Direct reports whether one of filters (shared or not) matches topic
// without a wildcard at its first level: a delivery AllowDelivery may let
// through.
func Direct(filters iter.Seq[string], topic string) bool {
	for f := range filters {
		f, _ = wire.StripShare(f)
		if f != "" && f[0] != '+' && f[0] != '#' && Covers(f, topic) {
			return true
		}
	}
	return false
}

// ConnackV3 keeps a CONNACK reason code to an MQTT 3.1.1 client within the
// 3.1.1 return codes: mochi answers some malformed CONNECTs with MQTT 5
// codes (0x81 malformed, 0x82 protocol error, 0x84 unsupported version),
// which a 3.1.1 client cannot read; they become 0x01 (unacceptable
// protocol). Codes below 0x80 pass.
func ConnackV3(code byte) byte {
	switch {
	case code < 0x80:
		return code
	case code == 0x86:
		return 0x04
	case code == 0x87:
		return 0x05
	case code == 0x85:
		return 0x02
	case code == 0x88 || code == 0x89:
		return 0x03
	}
	return 0x01
}

// Subscribes follows the SUBSCRIBE packets of sessions (any comparable
// value, one per connection) on their way: the filters of the one being
// processed (between mochi's OnSubscribe and OnSubscribed, on the client's
// own goroutine), and the notes for the SUBACKs not yet written. The zero
// value is ready. Safe for concurrent use.
type Subscribes struct {
	mu     sync.Mutex
	asking map[any][]string
	notes  map[subackKey]SubackNote
}

// subackKey names a SUBACK on its way to a session.
type subackKey struct {
	session any
	id      uint16
}

// Begin notes the filters of the SUBSCRIBE session is processing.
func (s *Subscribes) Begin(session any, filters []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.asking == nil {
		s.asking = map[any][]string{}
	}
	s.asking[session] = filters
}

// Asking reports whether the SUBSCRIBE session is processing asks for
// filter.
func (s *Subscribes) Asking(session any, filter string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.asking[session], filter)
}

// End forgets the filters of the SUBSCRIBE session processed and returns
// them (nil when Begin noted none).
func (s *Subscribes) End(session any) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	filters := s.asking[session]
	delete(s.asking, session)
	return filters
}

// Note keeps n for the SUBACK of packet id to session.
func (s *Subscribes) Note(session any, id uint16, n SubackNote) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notes == nil {
		s.notes = map[subackKey]SubackNote{}
	}
	s.notes[subackKey{session, id}] = n
}

// Take returns and forgets the note for the SUBACK of packet id to session.
func (s *Subscribes) Take(session any, id uint16) (SubackNote, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := subackKey{session, id}
	n, ok := s.notes[k]
	delete(s.notes, k)
	return n, ok
}

// Forget drops what is noted for session, which went away.
func (s *Subscribes) Forget(session any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.asking, session)
	for k := range s.notes {
		if k.session == session {
			delete(s.notes, k)
		}
	}
}
