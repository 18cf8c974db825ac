// Package auth holds authentication and authorization rules without MQTT:
// JWT tokens (Tokens), client ids bound to users, and the ACL file for plain
// MQTT topics outside Parley's prefix.
package auth

import (
	"strings"

	"github.com/parley-im/parley/history"
)

// AnonPrefix begins the client ids of anonymous sessions in open mode.
const AnonPrefix = "anon:"

// IsAnonymous reports whether a client id belongs to an anonymous session.
func IsAnonymous(clientID string) bool { return strings.HasPrefix(clientID, AnonPrefix) }

// UserOf returns the user part of a client id (USER or USER/DEVICE).
func UserOf(clientID string) string {
	user, _, _ := strings.Cut(clientID, "/")
	return user
}

// ValidClientID reports whether id is USER or USER/DEVICE for user.
func ValidClientID(id, user string) bool {
	u, device, hasDevice := strings.Cut(id, "/")
	if u != user {
		return false
	}
	return !hasDevice || history.ValidDeviceID(device)
}
