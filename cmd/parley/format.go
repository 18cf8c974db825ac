package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// messageJSON is a message as on the wire, with its kind.
type messageJSON struct {
	Kind string          `json:"kind,omitempty"`
	Conv string          `json:"conv"`
	Seq  int64           `json:"seq,omitempty"`
	ID   string          `json:"id,omitempty"`
	CID  string          `json:"cid,omitempty"`
	From string          `json:"from"`
	TS   string          `json:"ts"`
	Type string          `json:"type"`
	Body json.RawMessage `json:"body"`
}

func toMessageJSON(kind string, m parley.Message) messageJSON {
	return messageJSON{Kind: kind, Conv: m.Conv, Seq: m.Seq, ID: m.ID, CID: m.CID, From: m.From,
		TS: m.TS.UTC().Format(tsLayout), Type: m.Type, Body: m.Body}
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
// conversation and seq (listen, history) where chat leaves them out.
func messageLine(m parley.Message, withConv bool) string {
	head := clock(m.TS) + " "
	if withConv {
		head += fmt.Sprintf("%s #%d ", m.Conv, m.Seq)
	}
	if m.Type == "text" {
		return head + m.From + ": " + m.Text()
	}
	return head + m.From + " [" + m.Type + "] " + string(m.Body)
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
		return fmt.Sprintf("%s %s read up to #%d", r.Conv, r.User, r.Seq)
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
		return map[string]any{"kind": ev.Kind, "conv": r.Conv, "user": r.User, "seq": r.Seq}
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
