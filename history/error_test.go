package history_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/parley-im/parley/history"
)

func TestErrorCodeAndMessage(t *testing.T) {
	notFound := history.Errorf(history.ENOTFOUND, "group %q not found", "team")
	cases := []struct {
		name    string
		err     error
		code    string
		message string
	}{
		{"Nil", nil, "", "the message store is unavailable, try again"},
		{"Error", notFound, history.ENOTFOUND, `group "team" not found`},
		{"Wrapped", fmt.Errorf("load group: %w", notFound), history.ENOTFOUND, `group "team" not found`},
		{"Joined", errors.Join(errors.New("other"), history.Errorf(history.ECONFLICT, "taken")), history.ECONFLICT, "taken"},
		{"Plain", errors.New("dial tcp: connection refused"), history.EUNAVAILABLE, "the message store is unavailable, try again"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := history.ErrorCode(tc.err); got != tc.code {
				t.Fatalf("ErrorCode(%v) = %q, want %q", tc.err, got, tc.code)
			}
			if got := history.ErrorMessage(tc.err); got != tc.message {
				t.Fatalf("ErrorMessage(%v) = %q, want %q", tc.err, got, tc.message)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	e := history.Errorf(history.EINVALID, "role must be %q", "member")
	if got, want := e.Error(), `invalid: role must be "member"`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestTranslate(t *testing.T) {
	noRows := errors.New("no rows")
	other := errors.New("disk full")
	conflict := history.Errorf(history.ECONFLICT, "taken")
	cases := []struct {
		name string
		err  error
		code string
		ok   bool
	}{
		{"Nil", nil, "", true},
		{"Error", fmt.Errorf("wrapped: %w", conflict), history.ECONFLICT, true},
		{"NoRows", fmt.Errorf("scan: %w", noRows), history.ENOTFOUND, true},
		{"Other", other, history.EUNAVAILABLE, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := history.Translate(tc.err, noRows)
			if ok != tc.ok || history.ErrorCode(out) != tc.code {
				t.Fatalf("Translate(%v) = %v, %v; want code %q, %v", tc.err, out, ok, tc.code, tc.ok)
			}
			if !ok && out != tc.err {
				t.Fatalf("Translate(%v) changed an error it does not handle: %v", tc.err, out)
			}
		})
	}
}
