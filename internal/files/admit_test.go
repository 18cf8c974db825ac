package files

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/blob"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

// usedStore is an UploadStore whose users have stored used bytes (or
// whose UploadBytes fails with err); its other methods are not called.
type usedStore struct {
	history.UploadStore
	used int64
	err  error
}

func (s usedStore) UploadBytes(context.Context, string) (int64, error) { return s.used, s.err }

// TestAdmit: AdmitResumable refuses an upload that would pass the quota
// (quota_exceeded), one beyond the rate (rate_limited with RetryAfter),
// and answers unavailable when the store fails; reaching the quota exactly
// is allowed, and 0 means no quota.
func TestAdmit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		quota, used int64
		storeErr    error
		size        int64
		want        string
	}{
		{"OK", 1000, 100, nil, 900, ""},
		{"OKNoQuota", 0, 1 << 40, nil, 1 << 20, ""},
		{"ErrOverQuota", 1000, 100, nil, 901, wire.CodeQuotaExceeded},
		{"ErrStoreDown", 1000, 0, errors.New("connection refused"), 1, wire.CodeUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t, usedStore{used: tc.used, err: tc.storeErr}, tc.quota, nil)
			we := s.AdmitResumable(context.Background(), "alice", "u1", tc.size)
			if got := codeOf(we); got != tc.want {
				t.Fatalf("AdmitResumable = %v, want code %q", we, tc.want)
			}
			if tc.want == wire.CodeQuotaExceeded {
				if n := testutil.ToFloat64(s.uploads.WithLabelValues("quota_exceeded")); n != 1 {
					t.Fatalf("parley_uploads_total{result=quota_exceeded} = %v, want 1", n)
				}
			}
		})
	}
	t.Run("ErrRate", func(t *testing.T) {
		s := newService(t, usedStore{}, 0, send.NewRateLimiter(1.0/60, 2))
		for i := range 2 {
			if we := s.AdmitResumable(context.Background(), "alice", "u"+strconv.Itoa(i), 1); we != nil {
				t.Fatalf("upload %d of the burst: %v", i, we)
			}
		}
		we := s.AdmitResumable(context.Background(), "alice", "u9", 1)
		if codeOf(we) != wire.CodeRateLimited || we.RetryAfter <= 0 || we.RetryAfter > time.Minute {
			t.Fatalf("beyond the burst: %+v, want rate_limited within a minute", we)
		}
		if we := s.AdmitResumable(context.Background(), "bob", "b1", 1); we != nil {
			t.Fatalf("another user: %v", we)
		}
	})
}

// newService returns an initialized Service on store with quota and
// limiter, its blobs in a temporary directory.
func newService(t *testing.T, store history.UploadStore, quota int64, limiter *send.RateLimiter) *Service {
	t.Helper()
	s := &Service{Store: store, Blobs: &blob.Dir{Path: t.TempDir()}, TempDir: t.TempDir(), URLSecret: []byte("k"), Quota: quota, Limiter: limiter,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	return s
}

func codeOf(we *wire.Error) string {
	if we == nil {
		return ""
	}
	return we.Code
}
