package moderation

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/parley-im/parley/internal/signature"
)

// TestCheck: the answers a Check turns into verdicts, and the failures it
// turns into allow (fail open) or an error (fail closed), counted.
func TestCheck(t *testing.T) {
	answer := map[string]struct {
		status int
		body   string
	}{
		"allow":        {200, `{"action":"allow","extra":1}`},
		"reject":       {200, `{"action":"reject","reason":"nope\u0000"}`},
		"long":         {200, `{"action":"reject","reason":"` + strings.Repeat("é", 300) + `"}`},
		"replace":      {200, `{"action":"replace","body":[1,2]}`},
		"nobody":       {200, `{"action":"replace"}`},
		"unknown":      {200, `{"action":"shrug"}`},
		"garbage":      {200, `not json`},
		"notfound":     {404, `{"action":"allow"}`},
		"down":         {503, ``},
		"created":      {201, `{"action":"allow"}`},
		"huge":         {200, `{"action":"reject","reason":"` + strings.Repeat("x", 2<<20) + `"}`},
		"slow":         {0, ``},
		"emptyReplace": {200, `{"action":"replace","body":null}`},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := signature.Verify([]byte("k"), r.Header.Get(signature.Header), b, time.Minute, time.Now()); err != nil {
			t.Errorf("signature: %v", err)
		}
		for key, a := range answer {
			if strings.Contains(string(b), `"cid":"`+key+`"`) {
				if a.status == 0 {
					<-r.Context().Done()
					return
				}
				w.WriteHeader(a.status)
				io.WriteString(w, a.body)
				return
			}
		}
		t.Errorf("unexpected request %s", b)
	}))
	defer srv.Close()
	for _, closed := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		c := New(srv.URL, []byte("k"), 200*time.Millisecond, closed, nil, reg)
		check := func(cid string) (Verdict, error) {
			return c.Check(context.Background(), Request{ID: "i", Type: TypeMessageCreated, Conv: "dm:a:b", From: "a", CID: cid, Body: []byte(`"x"`)})
		}
		if v, err := check("allow"); err != nil || v.Action != Allow {
			t.Fatalf("allow: %+v %v", v, err)
		}
		if v, err := check("created"); err != nil || v.Action != Allow {
			t.Fatalf("201: %+v %v", v, err)
		}
		if v, err := check("reject"); err != nil || v.Action != Reject || v.Reason != "nope" {
			t.Fatalf("reject: %+v %v", v, err)
		}
		if v, err := check("long"); err != nil || v.Reason != strings.Repeat("é", MaxReason) {
			t.Fatalf("long reason: %d runes, %v", len([]rune(v.Reason)), err)
		}
		if v, err := check("replace"); err != nil || v.Action != Replace || string(v.Body) != "[1,2]" {
			t.Fatalf("replace: %+v %v", v, err)
		}
		failures := []string{"nobody", "unknown", "garbage", "notfound", "down", "huge", "slow", "emptyReplace"}
		for _, cid := range failures {
			v, err := check(cid)
			if closed && (err == nil || !errors.Is(err, ErrFailed)) {
				t.Fatalf("closed, %s: %+v %v", cid, v, err)
			}
			if !closed && (err != nil || v.Action != Allow) {
				t.Fatalf("open, %s: %+v %v", cid, v, err)
			}
		}
		result := "failed_open"
		if closed {
			result = "failed_closed"
		}
		if n := counted(c, result); n != float64(len(failures)) {
			t.Fatalf("%s = %v, want %d", result, n, len(failures))
		}
		if n := counted(c, Allow); n != 2 {
			t.Fatalf("allow = %v", n)
		}
	}
}

// counted reads parley_moderation_checks_total{result}.
func counted(c *Client, result string) float64 {
	var m dto.Metric
	c.checks.WithLabelValues(result).Write(&m)
	return m.GetCounter().GetValue()
}
