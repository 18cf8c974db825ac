package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestModerationConfig: PARLEY_MODERATION_URL, _TIMEOUT (default 2s) and
// _FAIL (open or closed, default open) and PARLEY_WEBHOOK_SECRET reach the
// broker's options; values that cannot work are errors naming the variable.
func TestModerationConfig(t *testing.T) {
	cases := []struct {
		name, url, timeout, fail, secret string
		ok, closed                       bool
		wantTimeout                      time.Duration
		errHas                           string
	}{
		{"Off", "", "", "", "", true, false, 2 * time.Second, ""},
		{"Defaults", "http://mod.local/check", "", "", "s", true, false, 2 * time.Second, ""},
		{"Closed", "https://mod.local/check", "500ms", "closed", "s", true, true, 500 * time.Millisecond, ""},
		{"Open", "http://mod.local", "3s", "open", "", true, false, 3 * time.Second, ""},
		{"BadFail", "http://mod.local", "", "sometimes", "", false, false, 0, "PARLEY_MODERATION_FAIL"},
		{"BadTimeout", "http://mod.local", "soon", "", "", false, false, 0, "PARLEY_MODERATION_TIMEOUT"},
		{"NegativeTimeout", "http://mod.local", "-1s", "", "", false, false, 0, "PARLEY_MODERATION_TIMEOUT"},
		{"BadURL", "mod.local:80", "", "", "", false, false, 0, "PARLEY_MODERATION_URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PARLEY_MODERATION_URL", tc.url)
			t.Setenv("PARLEY_MODERATION_TIMEOUT", tc.timeout)
			t.Setenv("PARLEY_MODERATION_FAIL", tc.fail)
			t.Setenv("PARLEY_WEBHOOK_SECRET", tc.secret)
			t.Setenv("PARLEY_JWT_SECRET", "moderation-config-secret-moderation")
			m := NewMain()
			m.Stderr = &bytes.Buffer{}
			err := m.ParseFlags("serve", nil)
			if err == nil {
				_, err = m.options()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok = %v", err, tc.ok)
			}
			if !tc.ok {
				if !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %q does not name %s", err, tc.errHas)
				}
				return
			}
			opts, _ := m.options()
			if opts.ModerationURL != tc.url || opts.ModerationFailClosed != tc.closed || opts.ModerationTimeout != tc.wantTimeout ||
				string(opts.WebhookSecret) != tc.secret {
				t.Fatalf("options: url %q closed %v timeout %v secret %q", opts.ModerationURL, opts.ModerationFailClosed,
					opts.ModerationTimeout, opts.WebhookSecret)
			}
		})
	}
	// The flags win over the environment.
	t.Setenv("PARLEY_MODERATION_FAIL", "open")
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags("serve", []string{"-moderation-url", "http://x", "-moderation-fail", "closed", "-moderation-timeout", "1s"}); err != nil {
		t.Fatal(err)
	}
	if opts, err := m.options(); err != nil || !opts.ModerationFailClosed || opts.ModerationTimeout != time.Second || opts.ModerationURL != "http://x" {
		t.Fatalf("flags: %+v %v", opts, err)
	}
}
