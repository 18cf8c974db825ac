package auth

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// ACL holds the rules for plain MQTT topics outside Parley's prefix. Each
// line of an ACL file is a rule:
//
//	# comment
//	USER    ACCESS     FILTER
//	*       readwrite  devices/{user}/#
//	alice   read       sensors/#
//	*       deny       secret/#
//
// USER is a user id or * for everyone; ACCESS is read, write, readwrite or
// deny; FILTER is an MQTT topic filter in which {user} stands for the
// connecting user. For a publish, a subscription or a delivery, the first rule
// whose user matches and whose filter covers the topic decides; without one,
// access is denied.
type ACL struct {
	rules []aclRule
}

type aclRule struct {
	user   string
	read   bool
	write  bool
	filter string
}

// ParseACL reads ACL rules from r. Errors name the offending line.
func ParseACL(r io.Reader) (*ACL, error) {
	acl := &ACL{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("acl: line %d: want USER ACCESS FILTER, got %q", n, line)
		}
		rule := aclRule{user: f[0], filter: f[2]}
		switch f[1] {
		case "read":
			rule.read = true
		case "write":
			rule.write = true
		case "readwrite":
			rule.read, rule.write = true, true
		case "deny":
		default:
			return nil, fmt.Errorf("acl: line %d: access must be read, write, readwrite or deny, got %q", n, f[1])
		}
		if !validFilter(strings.ReplaceAll(rule.filter, "{user}", "u")) {
			return nil, fmt.Errorf("acl: line %d: invalid topic filter %q", n, f[2])
		}
		acl.rules = append(acl.rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	return acl, nil
}

// Allow reports whether user may publish to topic (write) or subscribe to and
// receive from topic (read); topic may be a filter with wildcards, which is
// allowed only when the rule's filter covers all of it. A nil ACL denies all.
func (a *ACL) Allow(user, topic string, write bool) bool {
	if a == nil {
		return false
	}
	for _, r := range a.rules {
		if r.user != "*" && r.user != user {
			continue
		}
		if !Covers(strings.ReplaceAll(r.filter, "{user}", user), topic) {
			continue
		}
		if write {
			return r.write
		}
		return r.read
	}
	return false
}

// Covers reports whether every topic matched by filter f is matched by
// pattern p (for a topic name f: whether p matches it).
func Covers(p, f string) bool {
	pl := strings.Split(p, "/")
	fl := strings.Split(f, "/")
	if strings.HasPrefix(f, "$") != strings.HasPrefix(p, "$") && pl[0] != fl[0] {
		return false // wildcards at the first level never match $ topics
	}
	for i, level := range pl {
		if level == "#" {
			return true
		}
		if i >= len(fl) {
			return false
		}
		switch {
		case fl[i] == "#":
			return false
		case level == "+":
		case level != fl[i]:
			return false
		}
	}
	return len(fl) == len(pl)
}

func validFilter(f string) bool {
	if f == "" {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}
