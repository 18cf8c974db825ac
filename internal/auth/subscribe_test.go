package auth_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/wire"
)

// TestExplainSuback: each refused filter is named with its rule, up to 5;
// plain filters the ACL denies get 0x80; empty filters beyond the limit are
// counted.
func TestExplainSuback(t *testing.T) {
	acl, err := auth.ParseACL(strings.NewReader("* read chat/#\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := &auth.Authorizer{ACL: acl}
	t.Run("OK", func(t *testing.T) {
		if _, ok := a.ExplainSuback("alice", []string{"chat/x"}, []byte{1}, 0); ok {
			t.Fatal("a note for a SUBSCRIBE without refusals")
		}
	})
	t.Run("Refused", func(t *testing.T) {
		note, ok := a.ExplainSuback("alice", []string{"chat/x", "im/inbox/bob", "$share/g/other", "a/+x", ""},
			[]byte{1, 0x87, 0x87, 0x8F, 0x8F}, 4)
		want := `"im/inbox/bob": you may read only your own inbox, im/inbox/alice; ` +
			`"$share/g/other": the ACL does not let you read it; "a/+x": not a valid topic filter; ` +
			`1 filter beyond the limit of 4 per SUBSCRIBE`
		if !ok || note.Text != want || !slices.Equal(note.Unspecified, []int{2}) {
			t.Fatalf("note %+v\nwant %q and filter 2 unspecified", note, want)
		}
		codes := []byte{1, 0x87, 0x87, 0x8F, 0x8F}
		if got := note.Apply(codes); !slices.Equal(got, []byte{1, 0x87, 0x80, 0x8F, 0x8F}) || codes[2] != 0x87 {
			t.Fatalf("applied %x (original %x)", got, codes)
		}
	})
	t.Run("More", func(t *testing.T) {
		filters := []string{"a", "b", "c", "d", "e", "f", "g"}
		note, _ := a.ExplainSuback("alice", filters, slices.Repeat([]byte{0x87}, 7), 0)
		if !strings.HasSuffix(note.Text, `"e": the ACL does not let you read it; and 2 more refused`) {
			t.Fatalf("text %q", note.Text)
		}
	})
}

func TestConnackV3(t *testing.T) {
	for code, want := range map[byte]byte{0: 0, 0x05: 0x05, 0x86: 0x04, 0x87: 0x05, 0x85: 0x02, 0x88: 0x03, 0x89: 0x03,
		0x81: 0x01, 0x82: 0x01, 0x84: 0x01, 0x97: 0x01} {
		if got := auth.ConnackV3(code); got != want {
			t.Errorf("ConnackV3(0x%02X) = 0x%02X, want 0x%02X", code, got, want)
		}
	}
}

func TestDirect(t *testing.T) {
	for _, c := range []struct {
		filters []string
		topic   string
		want    bool
	}{
		{[]string{"im/inbox/bob"}, "im/inbox/bob", true},
		{[]string{"$share/g/im/inbox/+"}, "im/inbox/bob", true},
		{[]string{"+/inbox/bob"}, "im/inbox/bob", false},
		{[]string{"#"}, "$SYS/x", false},
		{[]string{"im/other"}, "im/inbox/bob", false},
		{nil, "im/inbox/bob", false},
	} {
		if got := auth.Direct(slices.Values(c.filters), c.topic); got != c.want {
			t.Errorf("Direct(%v, %q) = %v", c.filters, c.topic, got)
		}
	}
}

// TestSubscribes: the filters being subscribed and the SUBACK notes of one
// session, forgotten when it goes.
func TestSubscribes(t *testing.T) {
	var s auth.Subscribes
	s.Begin(1, []string{"a", "b"})
	if !s.Asking(1, "b") || s.Asking(1, "c") || s.Asking(2, "a") {
		t.Fatal("Asking")
	}
	if got := s.End(1); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("End returned %q, want the filters Begin noted", got)
	}
	if s.Asking(1, "a") {
		t.Fatal("still asking after End")
	}
	s.Note(1, 7, auth.SubackNote{Text: "x"})
	if n, ok := s.Take(1, 7); !ok || n.Text != "x" {
		t.Fatal("Take lost the note")
	}
	if _, ok := s.Take(1, 7); ok {
		t.Fatal("Take twice")
	}
	s.Note(1, 8, auth.SubackNote{})
	s.Forget(1)
	if _, ok := s.Take(1, 8); ok {
		t.Fatal("a note outlived Forget")
	}
}

func TestWriteRefusal(t *testing.T) {
	want := "not authorized: publish to im/send/u/PEER, im/send/g/GROUP, im/read or a topic your ACL allows"
	if got := auth.WriteRefusal(wire.Topics{}); got != want {
		t.Fatalf("got %q", got)
	}
}
