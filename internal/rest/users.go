package rest

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// putRetention sets the conversation's own retention: {"seconds": N}, 0
// for none. The answer carries the retention in effect, the shorter of it
// and the server's.
func (b *API) putRetention(w http.ResponseWriter, r *http.Request, user string) {
	p, err := b.privacy()
	if err != nil {
		b.fail(w, r, err)
		return
	}
	var req struct {
		Seconds *int64 `json:"seconds"`
	}
	conv, err := convBody(w, r, &req)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	if req.Seconds == nil || *req.Seconds < 0 || *req.Seconds > int64(history.MaxRetention/time.Second) {
		b.fail(w, r, badRequest(`body must be {"seconds": N}, N from 0 (no retention) to 3153600000`))
		return
	}
	d, err := p.SetRetention(r.Context(), user, conv, time.Duration(*req.Seconds)*time.Second)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	eff := history.EffectiveRetention(b.Retention, d)
	WriteJSON(w, http.StatusOK, map[string]any{"conv": conv, "seconds": int64(d / time.Second), "effective_seconds": int64(eff / time.Second)})
}

// deleteMe deletes the caller's account (history.Privacy.DeleteUser): its
// messages become deleted events for the others, its tokens stop working
// and its devices are disconnected.
func (b *API) deleteMe(w http.ResponseWriter, r *http.Request, user string) {
	if _, err := b.privacy(); err != nil {
		b.fail(w, r, err)
		return
	}
	var n int
	if b.DeleteUser != nil {
		var err error
		if n, err = b.DeleteUser(r.Context(), user); err != nil {
			b.fail(w, r, err)
			return
		}
	} else {
		del, err := b.Service.DeleteAccount(r.Context(), user)
		if err != nil {
			b.fail(w, r, err)
			return
		}
		if b.Tokens.Revocations != nil {
			b.Tokens.Revocations.Forget(user)
		}
		if b.Disconnect != nil {
			b.Disconnect(user)
		}
		n = len(del.Events) + del.Erased
	}
	WriteJSON(w, http.StatusOK, map[string]any{"user": user, "deleted": true, "messages": n})
}

// exportMe streams the caller's data as JSON lines: a user line, its
// conversations, then every message it sent and every change it made to
// a message (edits, deletes, reactions).
func (b *API) exportMe(w http.ResponseWriter, r *http.Request, user string) {
	p, err := b.privacy()
	if err != nil {
		b.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="parley-export.jsonl"`)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	_ = enc.Encode(map[string]any{"record": "user", "user": user, "exported_at": time.Now().UTC().Format(wire.TSLayout)})
	n := 0
	err = p.Export(r.Context(), user, func(it history.ExportItem) error {
		var line any
		if it.Conversation != nil {
			c := toConversationJSON(*it.Conversation)
			line = struct {
				Record string `json:"record"`
				conversationJSON
			}{"conversation", c}
		} else {
			line = struct {
				Record string `json:"record"`
				messageJSON
			}{"message", toMessageJSON(*it.Message)}
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
		if n++; n%100 == 0 && flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil {
		// The status is sent: end the stream with an error line.
		b.Log.Error("export", "user", user, "error", err)
		_ = enc.Encode(map[string]any{"record": "error", "error": map[string]string{"code": wire.CodeUnavailable, "message": "the export failed, try again"}})
		return
	}
	_ = enc.Encode(map[string]any{"record": "end"})
}
