package rest

import (
	"net/http"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// blockParam reads {user}, the user to block or unblock.
func blockParam(r *http.Request, user string) (string, error) {
	other := r.PathValue("user")
	if !history.ValidUserID(other) {
		return "", badRequest("user must be a user id (1 to 64 of A-Z a-z 0-9 . _ @ -)")
	}
	if other == user {
		return "", &apiError{http.StatusBadRequest, wire.CodeInvalidPeer, "you cannot block yourself"}
	}
	return other, nil
}

// putBlock blocks {user}: its direct sends to the caller, and the caller's
// to it, are refused with blocked; neither sees the other's presence or
// typing.
func (b *API) putBlock(w http.ResponseWriter, r *http.Request, user string) {
	b.changeBlock(w, r, user, true)
}

// deleteBlock unblocks {user}; unblocking a user not blocked succeeds.
func (b *API) deleteBlock(w http.ResponseWriter, r *http.Request, user string) {
	b.changeBlock(w, r, user, false)
}

func (b *API) changeBlock(w http.ResponseWriter, r *http.Request, user string, block bool) {
	p, err := b.privacy()
	if err != nil {
		b.fail(w, r, err)
		return
	}
	other, err := blockParam(r, user)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	if _, err := readBody(w, r, maxBody); err != nil { // none is expected: bound it
		b.fail(w, r, err)
		return
	}
	if block {
		err = p.Block(r.Context(), user, other, time.Now())
	} else {
		err = p.Unblock(r.Context(), user, other)
	}
	if err != nil {
		b.fail(w, r, err)
		return
	}
	if b.OnBlock != nil {
		b.OnBlock(user, other)
	}
	WriteJSON(w, http.StatusOK, map[string]any{"user": other, "blocked": block})
}

// listBlocks answers GET /v1/blocks: the users the caller blocks.
func (b *API) listBlocks(w http.ResponseWriter, r *http.Request, user string) {
	p, err := b.privacy()
	if err != nil {
		b.fail(w, r, err)
		return
	}
	bs, err := p.Blocks(r.Context(), user)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	type blockJSON struct {
		User      string `json:"user"`
		CreatedAt string `json:"created_at"`
	}
	out := make([]blockJSON, len(bs))
	for i, bl := range bs {
		out[i] = blockJSON{bl.User, bl.At.UTC().Format(wire.TSLayout)}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"blocks": out})
}
