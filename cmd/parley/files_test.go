package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSendFileAndDownload: send --file uploads and attaches a file, which
// the recipient downloads; a stranger cannot.
func TestSendFileAndDownload(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte("the notes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runAs(t, ctx, nil, "alice", "send", "--to", "bob", "--file", path, "see notes")
	ok(t, r, "sent dm:alice:bob #1")
	r = runAs(t, ctx, nil, "bob", "history", "alice", "--json")
	ok(t, r)
	var m struct {
		Attachments []struct{ ID, Name string } `json:"attachments"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || len(m.Attachments) != 1 || m.Attachments[0].Name != "notes.txt" {
		t.Fatalf("history --json printed %s (%v)", r.stdout, err)
	}
	id := m.Attachments[0].ID
	r = runAs(t, ctx, nil, "bob", "download", id)
	ok(t, r)
	if r.stdout != "the notes\n" {
		t.Fatalf("download printed %q", r.stdout)
	}
	out := filepath.Join(t.TempDir(), "copy.txt")
	ok(t, runAs(t, ctx, nil, "bob", "download", id, "-o", out))
	if b, _ := os.ReadFile(out); string(b) != "the notes\n" {
		t.Fatalf("download -o wrote %q", b)
	}
	r = runAs(t, ctx, nil, "carol", "download", id)
	if r.code != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Fatalf("stranger's download: %+v", r)
	}
}
