package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/parley-im/parley/clients/parley"
)

// tsLayout is the wire format of timestamps.
const tsLayout = "2006-01-02T15:04:05.000Z"

// clock formats a time for people: the local time of day.
func clock(t time.Time) string {
	if t.IsZero() {
		return "--:--:--"
	}
	return t.Local().Format("15:04:05")
}

// messageJSON is a message as on the wire, with its kind: the SDK's Message
// with its times in the wire format (the outer TS and EditedAt hide the
// SDK's).
type messageJSON struct {
	Kind string `json:"kind,omitempty"`
	parley.Message
	TS       string `json:"ts"`
	EditedAt string `json:"edited_at,omitempty"`
}

func toMessageJSON(kind string, m parley.Message) messageJSON {
	out := messageJSON{Kind: kind, Message: m, TS: m.TS.UTC().Format(tsLayout)}
	if !m.EditedAt.IsZero() {
		out.EditedAt = m.EditedAt.UTC().Format(tsLayout)
	}
	return out
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// messageLine formats a stored message for people; withConv adds the
// conversation and seq (listen) where history and chat put the seq first.
// A reply shows the seq it replies to ("bob ↪ 12: ..."), a message its
// state ("(edited)", "(deleted)") and reactions ("[👍 2 🎉 1]"), a change
// event what it changed ("alice edited #3: ...").
func messageLine(m parley.Message, withConv bool) string {
	head := clock(m.TS) + " "
	if withConv {
		head += fmt.Sprintf("%s #%d ", m.Conv, m.Seq)
	}
	if m.IsChange() {
		return head + changeLine(m)
	}
	if text, ok := groupLine(m); ok {
		return head + text
	}
	line := head + m.From
	if m.ReplyTo > 0 {
		line += fmt.Sprintf(" ↪ %d", m.ReplyTo)
	}
	switch {
	case m.Deleted:
		line += ": (deleted)"
	case m.Type == "text":
		line += ": " + m.Text()
	default:
		line += " [" + m.Type + "] " + string(m.Body)
	}
	if !m.EditedAt.IsZero() && !m.Deleted {
		line += " (edited)"
	}
	if len(m.Mentions) > 0 {
		line += " (mentions " + strings.Join(m.Mentions, ", ") + ")"
	}
	return line + reactionsText(m.Reactions)
}

// groupLine describes a group event (group.created, member.*) in words:
// "alice created the group "team" with bob, carol", "alice added dave
// (admin)". ok is false for other messages and for bodies it cannot read,
// which are then shown as JSON.
func groupLine(m parley.Message) (text string, ok bool) {
	if !strings.HasPrefix(m.Type, "group.") && !strings.HasPrefix(m.Type, "member.") {
		return "", false
	}
	var b struct {
		Name    string `json:"name"`
		User    string `json:"user"`
		Role    string `json:"role"`
		Count   int    `json:"member_count"`
		Members []struct {
			User string `json:"user"`
		} `json:"members"`
	}
	if json.Unmarshal(m.Body, &b) != nil {
		return "", false
	}
	switch m.Type {
	case "group.created":
		var others []string
		for _, mb := range b.Members {
			if mb.User != m.From {
				others = append(others, mb.User)
			}
		}
		text = fmt.Sprintf("%s created the group %q", m.From, b.Name)
		switch {
		case len(others) > 0:
			text += " with " + strings.Join(others, ", ")
		case b.Count > 1:
			text += fmt.Sprintf(" with %d members", b.Count)
		}
		return text, true
	case "member.added":
		text = fmt.Sprintf("%s added %s", m.From, b.User)
	case "member.role":
		text = fmt.Sprintf("%s made %s %s", m.From, b.User, b.Role)
		return text, b.User != "" && b.Role != ""
	case "member.removed":
		text = fmt.Sprintf("%s removed %s", m.From, b.User)
	case "member.left":
		text = fmt.Sprintf("%s left", b.User)
	default:
		return "", false
	}
	if b.Role == "admin" {
		text += " (admin)"
	}
	return text, b.User != ""
}

// reactionsText formats reactions as "  [👍 2 🎉 1]", emoji in byte order;
// "" when there are none.
func reactionsText(rs map[string]parley.Reaction) string {
	if len(rs) == 0 {
		return ""
	}
	parts := make([]string, 0, len(rs))
	for _, e := range slices.Sorted(maps.Keys(rs)) {
		parts = append(parts, fmt.Sprintf("%s %d", e, rs[e].Count))
	}
	return "  [" + strings.Join(parts, " ") + "]"
}

// eventLine formats an event for people.
func eventLine(ev parley.Event) string {
	switch ev.Kind {
	case parley.EventMessage:
		return messageLine(ev.Message, true)
	case parley.EventEphemeral:
		m := ev.Message
		if m.Type == "typing" {
			return fmt.Sprintf("%s %s %s is typing", clock(m.TS), m.Conv, m.From)
		}
		return fmt.Sprintf("%s %s %s [ephemeral %s] %s", clock(m.TS), m.Conv, m.From, m.Type, m.Body)
	case parley.EventRead:
		r := ev.Receipt
		if r.HasCounts {
			return fmt.Sprintf("%s %s read up to #%d (unread %d, mentions %d)", r.Conv, r.User, r.Seq, r.Unread, r.Mentions)
		}
		return fmt.Sprintf("%s %s read up to #%d", r.Conv, r.User, r.Seq)
	case parley.EventSettings:
		st := ev.Settings
		var marks []string
		if !st.MutedUntil.IsZero() {
			marks = append(marks, "muted until "+st.MutedUntil.Local().Format(time.DateTime))
		}
		if st.Archived {
			marks = append(marks, "archived")
		}
		if st.Pinned {
			marks = append(marks, "pinned")
		}
		if len(marks) == 0 {
			marks = append(marks, "not muted, archived or pinned")
		}
		return fmt.Sprintf("%s settings: %s", st.Conv, strings.Join(marks, ", "))
	case parley.EventDelivered:
		r := ev.Receipt
		return fmt.Sprintf("%s delivered to %s up to #%d", r.Conv, r.User, r.Seq)
	case parley.EventPresence:
		p := ev.Presence
		if p.Online {
			return fmt.Sprintf("%s is online", p.User)
		}
		return fmt.Sprintf("%s is offline (last seen %s)", p.User, clock(p.LastSeen))
	case parley.EventGap:
		g := ev.Gap
		return fmt.Sprintf("%s gap after #%d before #%d: filling from history", g.Conv, g.After, g.Before)
	case parley.EventError:
		return "error: " + errorText(ev.Err)
	}
	return string(ev.Kind)
}

// errorText formats an error event's error.
func errorText(err error) string {
	var se *parley.ServerError
	if errors.As(err, &se) && se.Status == 0 {
		s := se.Code + ": " + se.Message
		if se.CID != "" {
			s += " (cid " + se.CID + ")"
		}
		return s
	}
	return err.Error()
}

// eventJSON returns an event in the wire format of its kind.
func eventJSON(ev parley.Event) any {
	switch ev.Kind {
	case parley.EventMessage, parley.EventEphemeral:
		return toMessageJSON(string(ev.Kind), ev.Message)
	case parley.EventRead, parley.EventDelivered:
		r := ev.Receipt
		out := map[string]any{"kind": ev.Kind, "conv": r.Conv, "user": r.User, "seq": r.Seq}
		if r.HasCounts {
			out["unread"], out["mentions"] = r.Unread, r.Mentions
		}
		return out
	case parley.EventSettings:
		st := ev.Settings
		var muted any
		if !st.MutedUntil.IsZero() {
			muted = st.MutedUntil.UTC().Format(tsLayout)
		}
		return map[string]any{"kind": ev.Kind, "conv": st.Conv, "muted_until": muted, "archived": st.Archived, "pinned": st.Pinned}
	case parley.EventPresence:
		p := ev.Presence
		return map[string]any{"kind": ev.Kind, "user": p.User, "online": p.Online, "last_seen": p.LastSeen.UTC().Format(tsLayout)}
	case parley.EventGap:
		g := ev.Gap
		return map[string]any{"kind": ev.Kind, "conv": g.Conv, "after": g.After, "before": g.Before}
	case parley.EventError:
		out := map[string]any{"kind": ev.Kind, "message": ev.Err.Error()}
		var se *parley.ServerError
		var ge *parley.GapError
		switch {
		case errors.As(ev.Err, &ge):
			out["code"], out["conv"], out["after"], out["before"] = "gap_not_filled", ge.Conv, ge.After, ge.Before
		case errors.As(ev.Err, &se):
			out["code"], out["message"] = se.Code, se.Message
			if se.CID != "" {
				out["cid"] = se.CID
			}
			if se.Topic != "" {
				out["topic"] = se.Topic
			}
		}
		return out
	}
	return map[string]any{"kind": ev.Kind}
}
