package broker

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/rest"
)

// DevLoginTTL is the lifetime of a token issued by POST /dev/login.
const DevLoginTTL = 24 * time.Hour

// devLogin answers POST /dev/login {"user": "alice"} with a token for that
// user: {"user", "token", "expires_at"}. It is served only with
// Options.DevLogin, for development: it lets anyone sign in as anyone.
func (b *Broker) devLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User string `json:"user"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		devLoginError(w, http.StatusBadRequest, "invalid", "the body must be {\"user\": \"USER\"}")
		return
	}
	if !history.ValidUserID(req.User) {
		devLoginError(w, http.StatusBadRequest, "invalid", "a user id is 1 to 64 characters of A-Z a-z 0-9 . _ @ -")
		return
	}
	token, err := b.tokens.Sign(req.User, DevLoginTTL)
	if err != nil {
		b.log.Error("dev login", "error", err)
		devLoginError(w, http.StatusInternalServerError, "internal", "cannot sign a token")
		return
	}
	b.log.Info("dev login", "user", req.User)
	rest.WriteJSON(w, http.StatusOK, map[string]string{"user": req.User, "token": token,
		"expires_at": time.Now().Add(DevLoginTTL).UTC().Format("2006-01-02T15:04:05.000Z")})
}

func devLoginError(w http.ResponseWriter, status int, code, msg string) {
	rest.WriteJSON(w, status, map[string]map[string]string{"error": {"code": code, "message": msg}})
}
