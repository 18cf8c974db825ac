package rest

import (
	"net/http"
	"slices"
	"strings"

	"github.com/parley-im/parley/history"
)

// deviceParam reads {device}, a device of the user: the device part of its
// client id USER/DEVICE. It returns the client id.
func (b *API) deviceParam(r *http.Request, user string) (string, error) {
	if b.Push == nil {
		return "", &apiError{http.StatusNotFound, "not_found", "push notifications are not available on this server"}
	}
	device := r.PathValue("device")
	if !history.ValidDeviceID(device) {
		return "", badRequest("device must be the DEVICE part of your client id USER/DEVICE: 1 to 64 of A-Z a-z 0-9 . _ -")
	}
	return user + "/" + device, nil
}

// putPush registers the device's push token: {"provider": "fcm" | "apns" |
// "webhook", "token": "..."}.
func (b *API) putPush(w http.ResponseWriter, r *http.Request, user string) {
	device, err := b.deviceParam(r, user)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	var req struct {
		Provider string `json:"provider"`
		Token    string `json:"token"`
	}
	if err := decode(w, r, &req, false); err != nil {
		b.fail(w, r, err)
		return
	}
	if !slices.Contains(b.PushProviders, req.Provider) {
		b.fail(w, r, badRequest("provider must be one of the providers configured on this server: "+strings.Join(b.PushProviders, ", ")))
		return
	}
	if req.Token == "" || len(req.Token) > 4096 || !history.ValidText(req.Token) {
		b.fail(w, r, badRequest("token must be 1 to 4096 bytes of text"))
		return
	}
	t := history.PushToken{Device: device, Provider: req.Provider, Token: req.Token}
	if err := b.Push.SetPushToken(r.Context(), user, t); err != nil {
		b.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"device": device, "provider": t.Provider, "token": t.Token})
}

// deletePush removes the device's push token; removing none succeeds.
func (b *API) deletePush(w http.ResponseWriter, r *http.Request, user string) {
	device, err := b.deviceParam(r, user)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	if err := b.Push.DeletePushToken(r.Context(), device, ""); err != nil {
		b.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"device": device, "deleted": true})
}
