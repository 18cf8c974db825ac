package main

import (
	"bytes"
	"testing"

	"github.com/parley-im/parley/broker"
)

// TestUploadBoundsConfig: PARLEY_UPLOAD_QUOTA and PARLEY_UPLOAD_RATE reach
// the broker's options; empty means the defaults, 0 turns the bound off
// (negative options), a flag wins over the environment, and a value that is
// not a non-negative integer is refused.
func TestUploadBoundsConfig(t *testing.T) {
	for _, tc := range []struct {
		name         string
		quota, rate  string
		args         []string
		wantQuota    int64
		wantRate     float64
		wantParseErr bool
	}{
		{"Defaults", "", "", nil, broker.DefaultUploadQuota, broker.DefaultUploadRate, false},
		{"Env", "1000", "5", nil, 1000, 5, false},
		{"ZeroDisables", "0", "0", nil, -1, -1, false},
		{"FlagWins", "1000", "5", []string{"-upload-quota", "2000", "-upload-rate", "7"}, 2000, 7, false},
		{"ErrNegative", "-5", "", nil, 0, 0, true},
		{"ErrNotANumber", "", "fast", nil, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PARLEY_UPLOAD_QUOTA", tc.quota)
			t.Setenv("PARLEY_UPLOAD_RATE", tc.rate)
			m := NewMain()
			m.Stderr = &bytes.Buffer{}
			err := m.ParseFlags("serve", tc.args)
			if tc.wantParseErr {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			opts, err := m.options()
			if err != nil || opts.UploadQuota != tc.wantQuota || opts.UploadRate != tc.wantRate {
				t.Fatalf("UploadQuota %d, UploadRate %v (%v); want %d and %v", opts.UploadQuota, opts.UploadRate, err, tc.wantQuota, tc.wantRate)
			}
		})
	}
	// A negative flag is refused too, not taken as "off".
	t.Setenv("PARLEY_UPLOAD_QUOTA", "")
	t.Setenv("PARLEY_UPLOAD_RATE", "")
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags("serve", []string{"-upload-quota", "-5"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.options(); err == nil {
		t.Fatal("-upload-quota -5 accepted")
	}
}
