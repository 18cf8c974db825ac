package historytest

import (
	"context"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

func testDevice(t *testing.T, s history.Store) {
	ctx := context.Background()
	st, err := s.Device(ctx, "alice/phone", "alice")
	if err != nil || !st.New || len(st.Cursors) != 0 || len(st.Convs) != 0 {
		t.Fatalf("first Device = %+v, %v", st, err)
	}
	st, err = s.Device(ctx, "alice/phone", "alice")
	if err != nil || st.New {
		t.Fatalf("second Device = %+v, %v; want New false", st, err)
	}
	dm := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(dm, "bob", "", `1`))
	mustAppend(t, s, NewMsg(dm, "alice", "", `2`))
	createGroup(t, s, "g1", "carol", "dave")
	mustAppend(t, s, NewMsg("g:g1", "carol", "", `1`))
	if _, _, err := s.ChangeMember(ctx, change("g1", "carol", "alice", history.RoleMember, false)); err != nil {
		t.Fatal(err)
	}
	createGroup(t, s, "g2", "alice", "bob")
	if _, _, err := s.ChangeMember(ctx, change("g2", "alice", "bob", "", true)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, NewMsg("g:g2", "alice", "", `"after bob left"`))

	st, err = s.Device(ctx, "alice/laptop", "alice")
	if err != nil || !st.New {
		t.Fatalf("Device = %+v, %v", st, err)
	}
	want := map[string]history.ConvHead{
		dm:     {Conv: dm, First: 1, Last: 2},
		"g:g1": {Conv: "g:g1", First: 3, Last: 3},
		"g:g2": {Conv: "g:g2", First: 1, Last: 3},
	}
	if len(st.Convs) != len(want) {
		t.Fatalf("alice's conversations = %+v", st.Convs)
	}
	for _, h := range st.Convs {
		if want[h.Conv] != h {
			t.Fatalf("head %+v, want %+v", h, want[h.Conv])
		}
	}
	// bob left g2 at seq 2: his view of g2 ends there.
	st, err = s.Device(ctx, "bob", "bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.Convs {
		if h.Conv == "g:g2" && (h.First != 1 || h.Last != 2) {
			t.Fatalf("bob's g2 = %+v, want 1..2", h)
		}
	}
}

func testCursors(t *testing.T, s history.Store) {
	ctx := context.Background()
	if err := s.SaveCursors(ctx, nil); err != nil {
		t.Fatal(err)
	}
	err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/a", Conv: "dm:alice:bob", Seq: 5}, {Device: "alice/a", Conv: "g:x", Seq: 2}, {Device: "alice/b", Conv: "dm:alice:bob", Seq: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// Cursors only move forward.
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/a", Conv: "dm:alice:bob", Seq: 3}, {Device: "alice/a", Conv: "g:x", Seq: 7}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Device(ctx, "alice/a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if st.Cursors["dm:alice:bob"] != 5 || st.Cursors["g:x"] != 7 || len(st.Cursors) != 2 {
		t.Fatalf("cursors = %v", st.Cursors)
	}
	st, _ = s.Device(ctx, "alice/b", "alice")
	if st.Cursors["dm:alice:bob"] != 1 {
		t.Fatalf("alice/b cursors = %v", st.Cursors)
	}
}

func testClaim(t *testing.T, s history.Store) {
	ctx := context.Background()
	e1, err := s.Claim(ctx, "alice/phone")
	if err != nil || e1 < 1 {
		t.Fatalf("Claim = %d, %v", e1, err)
	}
	e2, err := s.Claim(ctx, "alice/phone")
	if err != nil || e2 <= e1 {
		t.Fatalf("second Claim = %d, %v; want > %d", e2, err, e1)
	}
	conv := "dm:alice:bob"
	// The superseded session's write is ignored; the current one's applies;
	// unfenced writes (epoch 0) always apply.
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/phone", Conv: conv, Seq: 9, Epoch: e1}}); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Device(ctx, "alice/phone", "alice")
	if st.Cursors[conv] != 0 {
		t.Fatalf("stale epoch moved the cursor to %d", st.Cursors[conv])
	}
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/phone", Conv: conv, Seq: 4, Epoch: e2}, {Device: "alice/tab", Conv: conv, Seq: 2}}); err != nil {
		t.Fatal(err)
	}
	st, _ = s.Device(ctx, "alice/phone", "alice")
	if st.Cursors[conv] != 4 {
		t.Fatalf("current epoch: cursor %d, want 4", st.Cursors[conv])
	}
	st, _ = s.Device(ctx, "alice/tab", "alice")
	if st.Cursors[conv] != 2 {
		t.Fatalf("unfenced: cursor %d, want 2", st.Cursors[conv])
	}
}

// testBatched: Claims and Devices do for many devices in one call what
// Claim and Device do for one.
func testBatched(t *testing.T, s history.Store) {
	ctx := context.Background()
	first, err := s.Claim(ctx, "alice/phone")
	if err != nil {
		t.Fatal(err)
	}
	epochs, err := s.Claims(ctx, []string{"alice/phone", "bob/phone", "alice/phone", "carol"})
	if err != nil || len(epochs) != 4 {
		t.Fatalf("Claims = %v, %v", epochs, err)
	}
	if epochs[0] <= first || epochs[2] <= epochs[0] || epochs[1] < 1 || epochs[3] < 1 {
		t.Fatalf("Claims epochs %v after %d: want alice's increasing, new devices from 1", epochs, first)
	}
	if next, err := s.Claim(ctx, "alice/phone"); err != nil || next <= epochs[2] {
		t.Fatalf("Claim after Claims = %d, %v; want > %d", next, err, epochs[2])
	}
	if epochs, err := s.Claims(ctx, nil); err != nil || len(epochs) != 0 {
		t.Fatalf("Claims(nil) = %v, %v", epochs, err)
	}

	dm := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(dm, "bob", "", `1`))
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/phone", Conv: dm, Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	refs := []history.DeviceRef{{Device: "alice/phone", User: "alice"}, {Device: "dave/new", User: "dave"}, {Device: "bob/phone", User: "bob"}, {Device: "dave/new", User: "dave"}}
	sts, err := s.Devices(ctx, refs)
	if err != nil || len(sts) != len(refs) {
		t.Fatalf("Devices = %+v, %v", sts, err)
	}
	if !sts[0].New || sts[0].Cursors[dm] != 1 || len(sts[0].Convs) != 1 || sts[0].Convs[0].Last != 1 {
		t.Fatalf("alice/phone: %+v", sts[0])
	}
	if !sts[1].New || sts[3].New || len(sts[1].Convs) != 0 {
		t.Fatalf("dave/new twice: %+v then %+v; want new, then known", sts[1], sts[3])
	}
	if len(sts[2].Convs) != 1 || len(sts[2].Cursors) != 0 {
		t.Fatalf("bob/phone: %+v", sts[2])
	}
	if st, err := s.Device(ctx, "alice/phone", "alice"); err != nil || st.New || st.Cursors[dm] != 1 {
		t.Fatalf("Device after Devices = %+v, %v", st, err)
	}
}

func testPruneDevices(t *testing.T, s history.Store) {
	ctx := context.Background()
	conv := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(conv, "bob", "", `1`))
	prune := func(before time.Time, connected []string, want int) {
		t.Helper()
		n, err := s.PruneDevices(ctx, before, connected)
		if err != nil || n != want {
			t.Fatalf("PruneDevices(%v, %v) = %d, %v; want %d", before, connected, n, err, want)
		}
	}
	// seen makes device known as a connecting client would: a session
	// epoch, the device record and a cursor.
	seen := func(device, user string) int64 {
		t.Helper()
		epoch, err := s.Claim(ctx, device)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Device(ctx, device, user); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCursors(ctx, []history.Cursor{{Device: device, Conv: conv, Seq: 1, Epoch: epoch}}); err != nil {
			t.Fatal(err)
		}
		return epoch
	}
	// known reports whether device is still known, with its cursor.
	known := func(device, user string) bool {
		t.Helper()
		st, err := s.Device(ctx, device, user)
		if err != nil {
			t.Fatal(err)
		}
		if !st.New && st.Cursors[conv] != 1 {
			t.Fatalf("%s is known without its cursor: %v", device, st.Cursors)
		}
		return !st.New
	}

	prune(time.Now().Add(time.Hour), nil, 0) // nothing to prune yet
	oldEpoch := seen("alice/old", "alice")
	seen("alice/phone", "alice")
	seen("bob", "bob")
	if _, err := s.Claim(ctx, "carol/claimed"); err != nil { // a session, no device record
		t.Fatal(err)
	}
	if _, err := s.Device(ctx, "dave/recorded", "dave"); err != nil { // a device record, no session
		t.Fatal(err)
	}

	// Nothing was seen before an hour ago.
	prune(time.Now().Add(-time.Hour), nil, 0)

	// A cut-off in the future finds every device stale but the connected
	// ones, which are marked seen now.
	touched := time.Now()
	prune(time.Now().Add(time.Hour), []string{"alice/phone", "bob", "nobody/else"}, 3)
	if !known("alice/phone", "alice") || !known("bob", "bob") {
		t.Fatal("a connected device was pruned")
	}
	// A pruned device comes back as a new device, without cursors (the
	// fenced cursor write of its old session is ignored), with a fresh
	// session epoch.
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/old", Conv: conv, Seq: 1, Epoch: oldEpoch}}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Device(ctx, "alice/old", "alice"); err != nil || !st.New || len(st.Cursors) != 0 {
		t.Fatalf("Device(pruned device) = %+v, %v; want a new device without cursors", st, err)
	}
	if epoch, err := s.Claim(ctx, "alice/old"); err != nil || epoch < 1 {
		t.Fatalf("Claim(pruned device) = %d, %v", epoch, err)
	}

	// The connected devices were marked seen by the prune above: a cut-off
	// just before it keeps them.
	prune(touched.Add(-time.Millisecond), nil, 0)
	if !known("alice/phone", "alice") || !known("bob", "bob") {
		t.Fatal("a device seen after the cut-off was pruned")
	}
	// Claim marks a device seen: bob's device record is older than the
	// cut-off, his session is not.
	cut := time.Now()
	if _, err := s.Claim(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	prune(cut, []string{"alice/phone", "alice/old"}, 0)
	// Without the connected list, a future cut-off prunes every device.
	prune(time.Now().Add(time.Hour), nil, 3)
}
