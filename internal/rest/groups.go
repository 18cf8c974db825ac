package rest

import (
	"net/http"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

// groupJSON is a group on the wire.
type groupJSON struct {
	ID        string           `json:"id"`
	Conv      string           `json:"conv"`
	Name      string           `json:"name"`
	CreatedBy string           `json:"created_by"`
	CreatedAt string           `json:"created_at"`
	Members   []history.Member `json:"members"`
}

func toGroupJSON(g history.Group, ms []history.Member) groupJSON {
	if ms == nil {
		ms = []history.Member{}
	}
	return groupJSON{ID: g.ID, Conv: g.Conv(), Name: g.Name, CreatedBy: g.CreatedBy,
		CreatedAt: g.CreatedAt.UTC().Format(wire.TSLayout), Members: ms}
}

// memberChangeJSON answers a membership change: the members after it and the
// membership message written to the group conversation.
type memberChangeJSON struct {
	Members []history.Member `json:"members"`
	Message messageJSON      `json:"message"`
}

// messageJSON is a stored message on the wire: the fields it has on MQTT,
// without the kind, and its state, which the REST API always writes (the
// outer EditedAt and Deleted hide the Delivery's).
type messageJSON struct {
	wire.Delivery
	EditedAt  *string                          `json:"edited_at"`
	Deleted   bool                             `json:"deleted"`
	Reactions map[string]history.ReactionCount `json:"reactions"`
}

func toMessageJSON(m history.Message) messageJSON {
	out := messageJSON{Delivery: wire.StoredDelivery(m), Deleted: m.Deleted, Reactions: m.Reactions}
	out.Kind = ""
	if ts := out.Delivery.EditedAt; ts != "" {
		out.EditedAt = &ts
	}
	if out.Reactions == nil {
		out.Reactions = map[string]history.ReactionCount{}
	}
	return out
}

func (b *API) createGroup(w http.ResponseWriter, r *http.Request, user string) {
	var req send.CreateGroupRequest
	if err := decode(w, r, &req, false); err != nil {
		b.fail(w, r, err)
		return
	}
	g, ms, err := b.Service.CreateGroup(r.Context(), user, req)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusCreated, toGroupJSON(g, ms))
}

func (b *API) getGroup(w http.ResponseWriter, r *http.Request, user string) {
	g, ms, err := b.Service.Group(r.Context(), user, r.PathValue("id"))
	if err != nil {
		b.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, toGroupJSON(g, ms))
}

func (b *API) putMember(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		Role string `json:"role"`
	}
	if err := decode(w, r, &req, true); err != nil {
		b.fail(w, r, err)
		return
	}
	if req.Role == "" {
		req.Role = history.RoleMember
	}
	b.changeMember(w, r, history.MemberChange{Group: r.PathValue("id"), Actor: user, User: r.PathValue("user"), Role: req.Role})
}

func (b *API) deleteMember(w http.ResponseWriter, r *http.Request, user string) {
	b.changeMember(w, r, history.MemberChange{Group: r.PathValue("id"), Actor: user, User: r.PathValue("user"), Remove: true})
}

func (b *API) changeMember(w http.ResponseWriter, r *http.Request, c history.MemberChange) {
	c.TS = time.Now()
	msg, ms, err := b.Service.ChangeMember(r.Context(), c)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, memberChangeJSON{Members: ms, Message: toMessageJSON(msg)})
}
