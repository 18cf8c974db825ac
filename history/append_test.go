package history_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

var ts0 = time.Date(2026, 11, 30, 6, 0, 0, 123456789, time.FixedZone("CET", 3600))

func nm(conv, from, cid string) history.NewMessage {
	return history.NewMessage{Conv: conv, ID: conv + "/" + from + "/" + cid, CID: cid, From: from, TS: ts0, Type: history.TypeText, Body: []byte(`1`)}
}

// outcome sums up a result: "seq N", "dup N" or the error code.
func outcome(r history.AppendResult) string {
	switch {
	case r.Err != nil:
		return history.ErrorCode(r.Err)
	case r.Created:
		return fmt.Sprintf("seq %d v%d", r.Message.Seq, r.MemberVersion)
	}
	return fmt.Sprintf("dup %d v%d", r.Message.Seq, r.MemberVersion)
}

func TestPlanAppend(t *testing.T) {
	const dm, team, nope = "dm:alice:bob", "g:team", "g:nope"
	earlier := nm(dm, "alice", "old").Stored(1)
	cases := []struct {
		name    string
		ms      []history.NewMessage
		st      history.AppendState
		want    []string // outcome per message
		convs   []string // plan.Convs
		members []history.MemberKey
		cids    []history.CIDKey
		last    []history.ConvLast
	}{
		{
			name: "Empty",
		},
		{
			name: "InvalidConv",
			ms:   []history.NewMessage{nm("nonsense", "alice", ""), nm("dm:bob:alice", "alice", "")},
			want: []string{history.EINVALID, history.EINVALID},
		},
		{
			name: "NotPartOfDirect",
			ms:   []history.NewMessage{nm(dm, "carol", "c1")},
			want: []string{history.ENOTMEMBER},
		},
		{
			name:  "NewDirect",
			ms:    []history.NewMessage{nm(dm, "alice", ""), nm(dm, "bob", "")},
			st:    history.AppendState{Convs: map[string]history.ConvState{dm: {}}},
			want:  []string{"seq 1 v0", "seq 2 v0"},
			convs: []string{dm},
			last:  []history.ConvLast{{Conv: dm, Seq: 2, TS: ts0.UTC().Truncate(time.Microsecond)}},
		},
		{
			name: "Dedup",
			ms:   []history.NewMessage{nm(dm, "alice", "old"), nm(dm, "alice", "new"), nm(dm, "alice", "new"), nm(dm, "bob", "old")},
			st: history.AppendState{
				Convs:   map[string]history.ConvState{dm: {Last: 4}},
				Earlier: map[history.CIDKey]history.Message{{Conv: dm, From: "alice", CID: "old"}: earlier},
			},
			want:  []string{"dup 1 v0", "seq 5 v0", "dup 5 v0", "seq 6 v0"},
			convs: []string{dm},
			cids:  []history.CIDKey{{Conv: dm, From: "alice", CID: "old"}, {Conv: dm, From: "alice", CID: "new"}, {Conv: dm, From: "bob", CID: "old"}},
			last:  []history.ConvLast{{Conv: dm, Seq: 6, TS: ts0.UTC().Truncate(time.Microsecond)}},
		},
		{
			name: "Groups",
			ms:   []history.NewMessage{nm(team, "bob", ""), nm(nope, "alice", ""), nm(team, "carol", ""), nm(team, "bob", ""), nm(dm, "alice", "")},
			st: history.AppendState{
				Convs:   map[string]history.ConvState{team: {Last: 7, Version: 3}, dm: {Last: 1}},
				Members: map[history.MemberKey]history.MemberState{{Conv: team, User: "bob"}: {Role: history.RoleMember}},
			},
			want:    []string{"seq 8 v3", history.ENOTFOUND, history.ENOTMEMBER, "seq 9 v3", "seq 2 v0"},
			convs:   []string{dm, nope, team},
			members: []history.MemberKey{{Conv: team, User: "bob"}, {Conv: nope, User: "alice"}, {Conv: team, User: "carol"}},
			last: []history.ConvLast{
				{Conv: dm, Seq: 2, TS: ts0.UTC().Truncate(time.Microsecond)},
				{Conv: team, Seq: 9, TS: ts0.UTC().Truncate(time.Microsecond)},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := history.PlanAppend(tc.ms)
			var convs []string
			for _, c := range p.Convs {
				convs = append(convs, c.ID)
			}
			if !slices.Equal(convs, tc.convs) || !slices.Equal(p.Members, tc.members) || !slices.Equal(p.CIDs, tc.cids) {
				t.Fatalf("plan = convs %v, members %v, cids %v; want %v, %v, %v", convs, p.Members, p.CIDs, tc.convs, tc.members, tc.cids)
			}
			insert, last := p.Assign(tc.st)
			var got []string
			var created []history.Message
			for _, r := range p.Results {
				got = append(got, outcome(r))
				if r.Created {
					created = append(created, r.Message)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("outcomes = %q, want %q", got, tc.want)
			}
			if !slices.EqualFunc(insert, created, func(a, b history.Message) bool { return a.ID == b.ID && a.Seq == b.Seq }) {
				t.Fatalf("insert = %+v, want the created messages %+v", insert, created)
			}
			if !slices.Equal(last, tc.last) {
				t.Fatalf("last = %+v, want %+v", last, tc.last)
			}
		})
	}
}

func TestPlanAppendConvRefs(t *testing.T) {
	p := history.PlanAppend([]history.NewMessage{nm("g:team", "bob", ""), nm("dm:alice:bob", "bob", ""), nm("g:team", "alice", "")})
	want := []history.ConvRef{
		{ID: "dm:alice:bob", Kind: history.KindDirect, A: "alice", B: "bob"},
		{ID: "g:team", Kind: history.KindGroup, A: "team"},
	}
	if !slices.Equal(p.Convs, want) {
		t.Fatalf("Convs = %+v, want %+v", p.Convs, want)
	}
}

// TestAssignDuplicateReturnsOriginal: a repeat within the batch returns the
// message as first stored, not its own body.
func TestAssignDuplicateReturnsOriginal(t *testing.T) {
	first, again := nm("dm:alice:bob", "alice", "c"), nm("dm:alice:bob", "alice", "c")
	again.ID, again.Body = "other", []byte(`2`)
	p := history.PlanAppend([]history.NewMessage{first, again})
	insert, _ := p.Assign(history.AppendState{Convs: map[string]history.ConvState{"dm:alice:bob": {}}})
	if len(insert) != 1 || p.Results[1].Message.ID != first.ID || string(p.Results[1].Message.Body) != `1` {
		t.Fatalf("insert %+v, repeat %+v", insert, p.Results[1])
	}
}

func TestStored(t *testing.T) {
	m := nm("dm:alice:bob", "alice", "c").Stored(7)
	want := history.Message{Conv: "dm:alice:bob", Seq: 7, ID: "dm:alice:bob/alice/c", CID: "c", From: "alice",
		TS: time.Date(2026, 11, 30, 5, 0, 0, 123456000, time.UTC), Type: history.TypeText, Body: []byte(`1`)}
	if m.TS != want.TS || m.TS.Location() != time.UTC || m.Seq != 7 || m.ID != want.ID || m.CID != "c" || m.From != "alice" || m.Type != want.Type || string(m.Body) != "1" {
		t.Fatalf("Stored = %+v, want %+v", m, want)
	}
}

// batcher is an AppendBatch that returns rs and err.
type batcher struct {
	rs  []history.AppendResult
	err error
}

func (b batcher) AppendBatch(context.Context, []history.NewMessage) ([]history.AppendResult, error) {
	return b.rs, b.err
}

func TestAppendOne(t *testing.T) {
	down := errors.New("down")
	notMember := history.Errorf(history.ENOTMEMBER, "no")
	msg := history.Message{Seq: 3}
	cases := []struct {
		name    string
		b       batcher
		seq     int64
		created bool
		err     error
	}{
		{"OK", batcher{rs: []history.AppendResult{{Message: msg, Created: true}}}, 3, true, nil},
		{"Duplicate", batcher{rs: []history.AppendResult{{Message: msg}}}, 3, false, nil},
		{"MessageErr", batcher{rs: []history.AppendResult{{Err: notMember}}}, 0, false, notMember},
		{"BatchErr", batcher{err: down}, 0, false, down},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, created, err := history.AppendOne(context.Background(), tc.b, history.NewMessage{})
			if m.Seq != tc.seq || created != tc.created || !errors.Is(err, tc.err) {
				t.Fatalf("AppendOne = %+v, %v, %v; want seq %d, %v, %v", m, created, err, tc.seq, tc.created, tc.err)
			}
		})
	}
}
