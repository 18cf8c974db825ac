package history_test

import (
	"reflect"
	"testing"

	"github.com/parley-im/parley/history"
)

func TestCheckPushToken(t *testing.T) {
	for _, c := range []struct {
		device, provider, token string
		ok                      bool
	}{
		{"alice/phone", "fcm", "t", true},
		{"alice", "apns", "t", true},
		{"alicex/phone", "fcm", "t", false},
		{"bob/phone", "fcm", "t", false},
		{"alice/phone", "", "t", false},
		{"alice/phone", "fcm", "", false},
	} {
		err := history.CheckPushToken("alice", history.PushToken{Device: c.device, Provider: c.provider, Token: c.token})
		if (err == nil) != c.ok || (err != nil && history.ErrorCode(err) != history.EINVALID) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if history.CheckOutboxLimit(1) != nil || history.ErrorCode(history.CheckOutboxLimit(0)) != history.EINVALID {
		t.Error("CheckOutboxLimit: want 1 accepted and 0 refused")
	}
}

func TestWithTokens(t *testing.T) {
	tok := history.PushToken{Device: "bob/phone", Provider: "fcm", Token: "t"}
	targets := []history.PushTarget{{User: "alice", Unread: 1}, {User: "bob", Unread: 2}}
	if got := history.TargetUsers(targets); !reflect.DeepEqual(got, []string{"alice", "bob"}) {
		t.Errorf("TargetUsers %v", got)
	}
	got := history.WithTokens(targets, map[string][]history.PushToken{"bob": {tok}})
	if want := []history.PushTarget{{User: "bob", Unread: 2, Tokens: []history.PushToken{tok}}}; !reflect.DeepEqual(got, want) {
		t.Errorf("WithTokens %+v, want %+v", got, want)
	}
	if got := history.WithTokens([]history.PushTarget{{User: "alice"}}, nil); got != nil {
		t.Errorf("WithTokens without tokens: %+v, want nil", got)
	}
}
