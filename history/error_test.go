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
