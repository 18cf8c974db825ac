package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/push"
	"github.com/parley-im/parley/internal/wire"
)

// TypePushNotify is the event that the webhook push provider sends to the
// webhooks: an app's own push gateway delivers it.
const TypePushNotify = "push.notify"

// DefaultPushDelay is how long a message may go unacknowledged by every
// device of a user before the user's devices get a push notification.
const DefaultPushDelay = 5 * time.Second

// Push is the sink of push notifications. For each new message it waits
// until Delay has passed, then notifies every member other than the sender
// none of whose devices acknowledged the message, whose conversation is not
// muted and who registered push tokens: one notification per conversation
// for the messages of a burst (within Delay), with the user's total unread
// count as the badge.
type Push struct {
	Store history.Outboxer
	// Users returns the users of a conversation.
	Users func(ctx context.Context, conv string) ([]string, error)
	// Providers send to the tokens of their name ("fcm", "apns").
	Providers map[string]push.Provider
	// Webhooks receive a push.notify event for the tokens of provider
	// "webhook"; a receiver that does not answer, or answers 408, 429 or
	// 5xx, gets it once more, as the providers do.
	Webhooks []*Webhook
	// Delay defaults to DefaultPushDelay.
	Delay time.Duration
	// Preview puts the message's text into the notification; without it the
	// body says only that there are new messages.
	Preview bool
	// ImageURL, when set (and with Preview), returns a short-lived signed
	// URL of a file, relative to the server: a notification of one message
	// with an image attachment carries its thumbnail's as Data["image"].
	ImageURL func(fileID string) string
	Metrics  *Metrics
	Log      *slog.Logger

	mu       sync.Mutex
	notified map[pushKey]time.Time // when (user, conv) was last notified
}

type pushKey struct{ user, conv string }

// Name implements Sink.
func (p *Push) Name() string { return "push" }

// pushMsg is a new message to notify of.
type pushMsg struct {
	ev Event
	d  wire.Delivery
}

// Deliver implements Sink. It returns an error (and the batch is offered
// again) only when the store cannot say whom to notify.
func (p *Push) Deliver(ctx context.Context, evs []Event) (int, error) {
	delay := p.Delay
	if delay <= 0 {
		delay = DefaultPushDelay
	}
	var msgs []pushMsg
	var newest time.Time
	for _, ev := range evs {
		if ev.Type != TypeMessageCreated {
			continue
		}
		var d wire.Delivery
		if err := json.Unmarshal(ev.Data, &d); err != nil || d.Deleted {
			continue
		}
		msgs = append(msgs, pushMsg{ev, d})
		if ev.TS.After(newest) {
			newest = ev.TS
		}
	}
	if len(msgs) == 0 {
		return len(evs), nil
	}
	if !sleep(ctx, nil, time.Until(newest.Add(delay))) {
		return 0, ctx.Err()
	}
	// The latest message of the batch for each (user, conversation), and
	// how many there were.
	last := map[pushKey]pushMsg{}
	count := map[pushKey]int{}
	for _, m := range msgs {
		users, err := p.Users(ctx, m.ev.Conv)
		if err != nil {
			if history.ErrorCode(err) == history.ENOTFOUND {
				continue
			}
			return 0, err
		}
		for _, u := range users {
			if u == m.d.From {
				continue
			}
			k := pushKey{u, m.ev.Conv}
			last[k] = m
			count[k]++
		}
	}
	// One PushTargets call per (conversation, seq).
	bySeq := map[history.SeqKey][]string{}
	for k, m := range last {
		sk := history.SeqKey{Conv: k.conv, Seq: m.ev.Seq}
		bySeq[sk] = append(bySeq[sk], k.user)
	}
	keys := make([]history.SeqKey, 0, len(bySeq))
	for sk := range bySeq {
		keys = append(keys, sk)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Conv != keys[j].Conv {
			return keys[i].Conv < keys[j].Conv
		}
		return keys[i].Seq < keys[j].Seq
	})
	now := time.Now()
	// Each webhook and provider waits for a retry at most once a batch, so
	// that one that fails does not hold the others' notifications back
	// for long.
	retried := map[string]bool{}
	for _, sk := range keys {
		users := bySeq[sk]
		sort.Strings(users)
		targets, err := p.Store.PushTargets(ctx, sk.Conv, sk.Seq, users, now)
		if err != nil {
			return 0, err
		}
		for _, t := range targets {
			k := pushKey{t.User, sk.Conv}
			if p.recently(k, now, delay) {
				continue // collapsed into the notification of this burst
			}
			n := p.notification(last[k], count[k], t.Unread)
			for _, tok := range t.Tokens {
				p.send(ctx, t.User, tok, n, last[k].ev, retried)
			}
		}
	}
	return len(evs), nil
}

// recently reports whether (user, conv) was notified within d, and marks it
// notified now otherwise.
func (p *Push) recently(k pushKey, now time.Time, d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.notified == nil {
		p.notified = map[pushKey]time.Time{}
	}
	if at, ok := p.notified[k]; ok && now.Sub(at) < d {
		return true
	}
	for key, at := range p.notified { // forget the old ones
		if now.Sub(at) >= d {
			delete(p.notified, key)
		}
	}
	p.notified[k] = now
	return false
}

// notification is what a user sees of n messages ending with m.
func (p *Push) notification(m pushMsg, count int, unread int64) push.Notification {
	title := m.d.From
	if kind, g, _, _ := history.ParseConvID(m.ev.Conv); kind == history.KindGroup {
		title = m.d.From + " in " + g
	}
	body := "New message"
	if count > 1 {
		body = strconv.Itoa(count) + " new messages"
	}
	if p.Preview && count == 1 {
		if text := previewText(m.d.Body); text != "" {
			body = text
		}
	}
	n := push.Notification{Title: title, Body: body, Conv: m.ev.Conv, Seq: m.ev.Seq, Badge: int(unread), CollapseKey: m.ev.Conv,
		Data: map[string]string{"conv": m.ev.Conv, "seq": strconv.FormatInt(m.ev.Seq, 10), "id": m.ev.ID}}
	if p.Preview && p.ImageURL != nil && count == 1 {
		for _, a := range m.d.Attachments {
			if a.Thumbnail != "" {
				n.Data["image"] = p.ImageURL(a.Thumbnail)
				break
			}
		}
	}
	return n
}

// previewText is the text of a body: a JSON string, or the "text" field of
// an object; "" for anything else. It is cut to 200 characters.
func previewText(body json.RawMessage) string {
	var s string
	if json.Unmarshal(body, &s) != nil {
		var obj struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(body, &obj) != nil {
			return ""
		}
		s = obj.Text
	}
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}

// send notifies one token; an invalid token is removed. A failure that
// may pass gets one more try (see try).
func (p *Push) send(ctx context.Context, user string, tok history.PushToken, n push.Notification, ev Event, retried map[string]bool) {
	log := p.Log
	if log == nil {
		log = slog.Default()
	}
	var err error
	if tok.Provider == "webhook" {
		note := map[string]any{"user": user, "device": tok.Device, "token": tok.Token,
			"title": n.Title, "body": n.Body, "badge": n.Badge, "conv": n.Conv, "seq": n.Seq}
		if img := n.Data["image"]; img != "" {
			note["image"] = img
		}
		data, _ := json.Marshal(note)
		pe := Event{ID: "push:" + ev.ID + ":" + tok.Device, Type: TypePushNotify, TS: time.Now().UTC(), Conv: ev.Conv, Seq: ev.Seq, Data: data}
		for _, w := range p.Webhooks {
			if werr := try(ctx, "webhook "+w.URL, retried, func() error { return w.Post(ctx, pe) }); werr != nil {
				err = werr
			}
		}
	} else if prov := p.Providers[tok.Provider]; prov == nil {
		err = errors.New("push provider " + tok.Provider + " is not configured")
	} else {
		err = try(ctx, "provider "+tok.Provider, retried, func() error { return prov.Send(ctx, tok.Token, n) })
	}
	switch {
	case err == nil:
		p.Metrics.push(tok.Provider, "sent")
	case errors.Is(err, push.ErrInvalidToken):
		p.Metrics.push(tok.Provider, "invalid_token")
		log.Info("push: token refused by the provider, removed", "device", tok.Device, "provider", tok.Provider)
		if derr := p.Store.DeletePushToken(ctx, tok.Device, tok.Token); derr != nil {
			log.Warn("push: remove an invalid token", "device", tok.Device, "error", derr)
		}
	default:
		p.Metrics.push(tok.Provider, "failed")
		log.Warn("push: notification not sent", "device", tok.Device, "provider", tok.Provider, "error", err)
	}
}

// try calls send, and once more after a bounded wait (what the provider or
// receiver asked for, 0.5 to 5 s) when its failure may pass
// (push.Retryable) and key (a webhook or provider) has not waited yet in
// this batch (retried): push is best effort, the batch is not offered
// again for one token, and one that keeps failing holds the others back
// by one wait only.
func try(ctx context.Context, key string, retried map[string]bool, send func() error) error {
	err := send()
	if push.Retryable(err) && !retried[key] {
		retried[key] = true
		if sleep(ctx, nil, min(max(push.RetryAfter(err), 500*time.Millisecond), 5*time.Second)) {
			err = send()
		}
	}
	return err
}
