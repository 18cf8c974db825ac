// Package wire holds Parley's public protocol formats: the topic layout,
// send payloads, inbox deliveries and events, and the one table of error
// codes with their MQTT 5 reason codes and HTTP statuses.
package wire

import (
	"strings"

	"github.com/parley-im/parley/history"
)

// DefaultPrefix is the default first level of Parley's topics.
const DefaultPrefix = "im"

// Topics names and parses Parley's MQTT topics under one prefix:
// PREFIX/inbox/USER, PREFIX/send/u/PEER and PREFIX/send/g/GROUP.
type Topics struct {
	Prefix string // default DefaultPrefix
}

func (t Topics) prefix() string {
	if t.Prefix == "" {
		return DefaultPrefix
	}
	return t.Prefix
}

// Inbox returns the inbox topic of user.
func (t Topics) Inbox(user string) string { return t.prefix() + "/inbox/" + user }

// Presence returns the presence topic of user.
func (t Topics) Presence(user string) string { return t.prefix() + "/presence/" + user }

// Read returns the topic of read markers.
func (t Topics) Read() string { return t.prefix() + "/read" }

// ParsePresence returns the user of a presence topic; ok is false for
// anything else, including filters with wildcards.
func (t Topics) ParsePresence(topic string) (user string, ok bool) {
	user, found := strings.CutPrefix(topic, t.prefix()+"/presence/")
	if !found || !history.ValidUserID(user) {
		return "", false
	}
	return user, true
}

// Target kinds of a send topic.
const (
	TargetUser  = "u"
	TargetGroup = "g"
)

// Owns reports whether topic (or filter) lies under the prefix.
func (t Topics) Owns(topic string) bool {
	p := t.prefix()
	return topic == p || strings.HasPrefix(topic, p+"/")
}

// ParseSend parses a send topic into its target kind (TargetUser or
// TargetGroup) and target id. ok is false when topic is not a send topic; a
// send topic with an invalid target id returns ok true and valid false.
func (t Topics) ParseSend(topic string) (kind, target string, ok, valid bool) {
	rest, found := strings.CutPrefix(topic, t.prefix()+"/send/")
	if !found {
		return "", "", false, false
	}
	kind, target, found = strings.Cut(rest, "/")
	if !found {
		return "", "", false, false
	}
	switch kind {
	case TargetUser:
		return kind, target, true, history.ValidUserID(target)
	case TargetGroup:
		return kind, target, true, history.ValidGroupID(target)
	}
	return "", "", false, false
}

// ParseInbox returns the user of an inbox topic or filter; ok is false for
// anything else, including filters with wildcards.
func (t Topics) ParseInbox(topic string) (user string, ok bool) {
	user, found := strings.CutPrefix(topic, t.prefix()+"/inbox/")
	if !found || !history.ValidUserID(user) {
		return "", false
	}
	return user, true
}

// HasWildcards reports whether filter contains + or #.
func HasWildcards(filter string) bool { return strings.ContainsAny(filter, "+#") }

// StripShare removes the $share/NAME/ prefix of a shared subscription filter.
// The prefix is matched regardless of case ($SHARE, $Share, ...), as the
// broker matches it.
func StripShare(filter string) (string, bool) {
	const share = "$share/"
	if len(filter) < len(share) || !strings.EqualFold(filter[:len(share)], share) {
		return filter, false
	}
	_, f, ok := strings.Cut(filter[len(share):], "/")
	if !ok {
		return "", true
	}
	return f, true
}
