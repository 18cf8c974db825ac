package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/broker/brokertest"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/testkit"
)

var testSecret = []byte(testkit.Secret)

// setup starts a broker on a SQLite store, which the test may stop and
// start again on the same ports, and points PARLEY_URL and PARLEY_HTTP at
// it.
func setup(t *testing.T) *brokertest.Server {
	t.Helper()
	e := brokertest.Start(t, broker.Options{Store: testkit.OpenSQLite(t), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		JWTSecret: testSecret, Logger: testkit.Logger(), Rate: -1, BlobDir: t.TempDir()})
	t.Setenv("PARLEY_URL", "tcp://"+e.Addr("mqtt"))
	t.Setenv("PARLEY_HTTP", "http://"+e.Addr("http"))
	t.Setenv("PARLEY_TOKEN", "")
	os.Unsetenv("PARLEY_DEVICE")
	os.Unsetenv("PARLEY_JWT_SECRET")
	return e
}

// result is what one run printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// runAs runs the program as user ("" for no token) with args and stdin.
func runAs(t *testing.T, ctx context.Context, stdin io.Reader, user string, args ...string) result {
	t.Helper()
	if user != "" {
		args = append(args, "--token", testkit.Token(t, user))
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errOut testkit.Buffer
	code := run(ctx, args, stdin, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// proc is a command running in the background.
type proc struct {
	in          *io.PipeWriter // its standard input, closed when the test ends
	out, errOut testkit.Buffer
	done        chan int // its exit code
}

// background runs the program as user with args until it ends or ctx does.
func background(t *testing.T, ctx context.Context, user string, args ...string) *proc {
	t.Helper()
	in, inW := io.Pipe()
	t.Cleanup(func() { inW.Close() })
	p := &proc{in: inW, done: make(chan int, 1)}
	args = append(args, "--token", testkit.Token(t, user))
	go func() { p.done <- run(ctx, args, in, &p.out, &p.errOut) }()
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ok fails unless r exited 0 and its stdout contains every want.
func ok(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Fatalf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
}

// waitFor polls buf until it contains want.
func waitFor(t *testing.T, buf *testkit.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 15s in:\n%s", want, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUsage(t *testing.T) {
	setup(t)
	cases := []struct {
		name   string
		args   []string
		user   string
		code   int
		stdout string
		stderr string
	}{
		{"NoArgs", nil, "", 2, "", "Usage: parley COMMAND"},
		{"Unknown", []string{"frob"}, "", 2, "", `unknown command "frob"`},
		{"Help", []string{"help"}, "", 0, "parley chat PEER|g:GROUP", ""},
		{"CommandHelp", []string{"send", "-h"}, "", 0, "-to string", ""},
		{"GroupHelp", []string{"group", "-h"}, "", 0, "parley group add", ""},
		{"NoTo", []string{"send", "hi"}, "alice", 2, "", "--to is required"},
		{"NoText", []string{"send", "--to", "bob"}, "alice", 2, "", "no message text"},
		{"NoToken", []string{"send", "--to", "bob", "hi"}, "", 2, "", "no token: set PARLEY_TOKEN"},
		{"NotAToken", []string{"send", "--to", "bob", "hi", "--token", "xyz"}, "", 2, "", "not a JWT"},
		{"BadFlag", []string{"listen", "--bogus"}, "alice", 2, "", "flag provided but not defined: -bogus"},
		{"HistoryNoConv", []string{"history"}, "alice", 2, "", "want one conversation"},
		{"HistoryBoth", []string{"history", "bob", "--after", "1", "--before", "3"}, "alice", 2, "", "not both"},
		{"GroupNoSub", []string{"group"}, "alice", 2, "", "want a subcommand"},
		{"GroupUnknownSub", []string{"group", "frob"}, "alice", 2, "", `unknown subcommand "frob"`},
		{"GroupAddArgs", []string{"group", "add", "team"}, "alice", 2, "", "want 2 arguments"},
		{"TokenNoUser", []string{"token"}, "", 2, "", "want exactly one USER"},
		{"ChatNoPeer", []string{"chat"}, "alice", 2, "", "want one user id"},
		{"BadJSONBody", []string{"send", "--to", "bob", "--body-json", "{"}, "alice", 2, "", "not valid JSON"},
		{"HistoryLimitNegative", []string{"history", "bob", "--limit", "-1"}, "alice", 2, "", "--limit must be between 1 and 200, got -1"},
		{"HistoryLimitZero", []string{"history", "bob", "--limit", "0"}, "alice", 2, "", "--limit must be between 1 and 200, got 0"},
		{"HistoryLimitHigh", []string{"history", "bob", "--limit", "201"}, "alice", 2, "", "--limit must be between 1 and 200, got 201"},
		{"HistoryAfterNegative", []string{"history", "bob", "--after", "-3"}, "alice", 2, "", "take a seq, 0 or more"},
		{"ConversationsLimitZero", []string{"conversations", "--limit", "0"}, "alice", 2, "", "--limit must be between 1 and 200, got 0"},
		{"ChatHistoryNegative", []string{"chat", "bob", "--history", "-1"}, "alice", 2, "", "--history must be between 0 and 200, got -1"},
		{"EditNoArgs", []string{"edit", "bob", "1"}, "alice", 2, "", "want a conversation, a SEQ and the new TEXT"},
		{"EditBadSeq", []string{"edit", "bob", "x", "hi"}, "alice", 2, "", `SEQ must be the seq of a message (1 or more), got "x"`},
		{"DeleteArgs", []string{"delete", "bob"}, "alice", 2, "", "want a conversation and a SEQ, got 1 arguments"},
		{"DeleteSeqZero", []string{"delete", "bob", "0"}, "alice", 2, "", "SEQ must be the seq of a message"},
		{"ReactNoEmoji", []string{"react", "bob", "1"}, "alice", 2, "", "want a conversation, a SEQ and an EMOJI"},
		{"ReactHelp", []string{"react", "-h"}, "", 0, "-remove", ""},
		{"HelpListsChanges", []string{"help"}, "", 0, "parley react CONV|PEER|g:GROUP SEQ EMOJI", ""},
		{"SendReplyToNegative", []string{"send", "--to", "bob", "--reply-to", "-1", "hi"}, "alice", 2, "", "--reply-to takes the seq"},
		{"ConnectTimeoutZero", []string{"send", "--to", "bob", "hi", "--connect-timeout", "0"}, "alice", 2, "", "--connect-timeout must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runAs(t, ctxT(t), nil, tc.user, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
		})
	}
}

func TestToken(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jwt-secret"), append(testSecret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runAs(t, ctx, nil, "", "token", "--data-dir", dir, "alice", "--ttl", "1h")
	ok(t, r)
	if user, err := (&auth.Tokens{Secret: testSecret}).Verify(strings.TrimSpace(r.stdout)); err != nil || user != "alice" {
		t.Fatalf("token %q: %v, %q", r.stdout, err, user)
	}

	t.Run("EnvSecretWins", func(t *testing.T) {
		t.Setenv("PARLEY_JWT_SECRET", "another-secret-another-secret-xx")
		r := runAs(t, ctx, nil, "", "token", "--data-dir", dir, "bob")
		ok(t, r)
		if _, err := (&auth.Tokens{Secret: []byte("another-secret-another-secret-xx")}).Verify(strings.TrimSpace(r.stdout)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("NoSecret", func(t *testing.T) {
		r := runAs(t, ctx, nil, "", "token", "--data-dir", t.TempDir(), "bob")
		if r.code != 1 || !strings.Contains(r.stderr, "no secret: set PARLEY_JWT_SECRET") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("BadUser", func(t *testing.T) {
		r := runAs(t, ctx, nil, "", "token", "--data-dir", dir, "bad!user")
		if r.code != 2 || !strings.Contains(r.stderr, "invalid user id") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("UsableToken", func(t *testing.T) {
		// The printed token works as PARLEY_TOKEN.
		t.Setenv("PARLEY_TOKEN", strings.TrimSpace(r.stdout))
		ok(t, runAs(t, ctx, nil, "", "send", "--to", "bob", "signed by parley token"), "sent dm:alice:bob #1")
	})
}

// TestSendAndListen: listen prints what send sends, human-readable and as
// JSON.
func TestSendAndListen(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	lctx, stop := context.WithCancel(ctx)
	human := background(t, lctx, "bob", "listen")
	machine := background(t, lctx, "bob", "listen", "--json", "--device", "json")
	waitFor(t, &human.errOut, "listening as bob/cli")

	r := runAs(t, ctx, nil, "alice", "send", "--to", "bob", "hello", "bob")
	ok(t, r, "sent dm:alice:bob #1 (id ")
	r = runAs(t, ctx, nil, "alice", "send", "--to", "bob", "--json", "--type", "point", "--body-json", `{"x":1}`)
	ok(t, r)
	var m struct {
		Kind, Conv, Type string
		Seq              int64
		Body             json.RawMessage
	}
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.Kind != "message" || m.Seq != 2 || string(m.Body) != `{"x":1}` || m.Type != "point" {
		t.Fatalf("send --json printed %s (%v)", r.stdout, err)
	}
	ok(t, runAs(t, ctx, strings.NewReader("from stdin\n"), "alice", "send", "--to", "dm:alice:bob", "-"), "#3")
	ok(t, runAs(t, ctx, nil, "bob", "send", "--to", "alice", "hi alice")) // typing reaches contacts only
	ok(t, runAs(t, ctx, nil, "alice", "send", "--to", "bob", "--ephemeral", "--type", "typing", "true"), "sent ephemeral typing to dm:alice:bob")

	waitFor(t, &human.out, "dm:alice:bob #3 alice: from stdin")
	waitFor(t, &human.out, "alice is typing")
	if h := human.out.String(); !strings.Contains(h, "dm:alice:bob #1 alice: hello bob") || !strings.Contains(h, `dm:alice:bob #2 alice [point] {"x":1}`) {
		t.Fatalf("listen printed:\n%s", h)
	}
	waitFor(t, &machine.out, `"body":"from stdin"`)
	for _, line := range strings.Split(strings.TrimSpace(machine.out.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev["kind"] == nil {
			t.Fatalf("listen --json printed %q", line)
		}
	}
	stop()
	for _, l := range []*proc{human, machine} {
		if code := <-l.done; code != 0 {
			t.Fatalf("listen exited %d: %s", code, l.errOut.String())
		}
	}
}

func TestHistoryAndConversations(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	for _, s := range []string{"one", "two", "three"} {
		ok(t, runAs(t, ctx, nil, "alice", "send", "--to", "bob", s))
	}
	r := runAs(t, ctx, nil, "bob", "history", "alice")
	ok(t, r, "#1 ", "alice: one", "alice: three")
	if strings.Index(r.stdout, "one") > strings.Index(r.stdout, "three") {
		t.Fatalf("history not oldest first:\n%s", r.stdout)
	}
	r = runAs(t, ctx, nil, "bob", "history", "dm:alice:bob", "--limit", "2")
	ok(t, r, "alice: two", "alice: three")
	if strings.Contains(r.stdout, "one") || !strings.Contains(r.stderr, "--before 2") {
		t.Fatalf("latest page:\n%s\n%s", r.stdout, r.stderr)
	}
	r = runAs(t, ctx, nil, "bob", "history", "alice", "--after", "1", "--json")
	ok(t, r)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.Contains(lines[0], `"seq":2`) {
		t.Fatalf("history --after 1 --json:\n%s", r.stdout)
	}
	ok(t, runAs(t, ctx, nil, "bob", "history", "alice", "--all", "--limit", "1"), "alice: one", "alice: two", "alice: three")

	r = runAs(t, ctx, nil, "bob", "conversations")
	ok(t, r, "CONVERSATION", "dm:alice:bob", "#3", "alice: three")
	r = runAs(t, ctx, nil, "bob", "conversations", "--json")
	ok(t, r, `"id":"dm:alice:bob"`, `"unread":3`)

	r = runAs(t, ctx, nil, "carol", "history", "dm:alice:bob")
	if r.code != 1 || !strings.Contains(r.stderr, "history of dm:alice:bob") {
		t.Fatalf("someone else's history: exit %d: %s", r.code, r.stderr)
	}
}

func TestGroupCommands(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	ok(t, runAs(t, ctx, nil, "alice", "group", "create", "--id", "team", "The Team", "bob"), `created g:team "The Team": alice (owner), bob`)
	ok(t, runAs(t, ctx, nil, "bob", "group", "show", "team"), `g:team "The Team"`)
	ok(t, runAs(t, ctx, nil, "alice", "group", "add", "g:team", "carol", "--role", "admin"), "#2 ", "alice added carol (admin)")
	ok(t, runAs(t, ctx, nil, "carol", "send", "--to", "g:team", "hi team"), "sent g:team #3")
	ok(t, runAs(t, ctx, nil, "alice", "group", "remove", "team", "carol"), "alice removed carol")
	ok(t, runAs(t, ctx, nil, "bob", "history", "g:team"), `#1 `, `alice created the group "The Team" with bob`, "#3 ", "carol: hi team")
	r := runAs(t, ctx, nil, "carol", "send", "--to", "g:team", "hello?")
	if r.code != 1 || !strings.Contains(r.stderr, "not_member") {
		t.Fatalf("send after removal: exit %d: %s", r.code, r.stderr)
	}
	r = runAs(t, ctx, nil, "bob", "group", "add", "team", "dave")
	if r.code != 1 || !strings.Contains(r.stderr, "forbidden") {
		t.Fatalf("add by a member: exit %d: %s", r.code, r.stderr)
	}
	r = runAs(t, ctx, nil, "alice", "group", "show", "--json", "team")
	ok(t, r, `"conv":"g:team"`, `"members":[`)
}

// TestChat: two interactive chats talk to each other; each ends when its
// input ends, once its last line came back from the server.
func TestChat(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	ok(t, runAs(t, ctx, nil, "alice", "send", "--to", "bob", "before the chat"))

	bob := background(t, ctx, "bob", "chat", "alice")
	waitFor(t, &bob.errOut, "chatting in dm:alice:bob as bob/cli")
	waitFor(t, &bob.out, "alice: before the chat")

	// The last line needs no newline.
	aliceIn := strings.NewReader("hi bob\nhow are you?")
	r := runAs(t, ctx, aliceIn, "alice", "chat", "bob")
	ok(t, r, "alice: before the chat", "alice: hi bob", "alice: how are you?")

	waitFor(t, &bob.out, "alice: how are you?")
	if _, err := io.WriteString(bob.in, "fine, thanks\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &bob.out, "bob: fine, thanks")
	bob.in.Close()
	select {
	case code := <-bob.done:
		if code != 0 {
			t.Fatalf("bob's chat exited %d: %s", code, bob.errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("bob's chat did not end with its input")
	}
	lines := strings.Split(strings.TrimSpace(bob.out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("bob's chat printed %d lines:\n%s", len(lines), bob.out.String())
	}

	r = runAs(t, ctx, strings.NewReader("anyone?\n"), "alice", "chat", "g:nope")
	if r.code != 0 || !strings.Contains(r.stderr, "no_such_group") {
		t.Fatalf("chat in a missing group: exit %d\n%s", r.code, r.stderr)
	}
}

func TestRuntimeErrors(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	r := runAs(t, ctx, nil, "alice", "send", "--to", "g:nope", "hi")
	if r.code != 1 || !strings.Contains(r.stderr, "no_such_group") {
		t.Fatalf("send to a missing group: exit %d: %s", r.code, r.stderr)
	}
	r = runAs(t, ctx, nil, "alice", "send", "--to", "bob", "hi", "--url", "tcp://127.0.0.1:1", "--timeout", "300ms")
	if r.code != 1 || !strings.Contains(r.stderr, "connect to tcp://127.0.0.1:1") {
		t.Fatalf("send without a server: exit %d: %s", r.code, r.stderr)
	}
	r = runAs(t, ctx, nil, "alice", "conversations", "--http", "http://127.0.0.1:1")
	if want := "parley conversations: cannot reach http://127.0.0.1:1: connection refused; is parleyd running?\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("conversations without a server: exit %d: %s", r.code, r.stderr)
	}
}

// TestSendNoServer: without a server, send fails at once with one line and
// no log lines; --wait keeps trying until --timeout, and sends once the
// server is back.
func TestSendNoServer(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t)
	t.Run("FailsAtOnce", func(t *testing.T) {
		start := time.Now()
		r := runAs(t, ctx, nil, "alice", "send", "--to", "bob", "hi", "--url", "tcp://127.0.0.1:1")
		took := time.Since(start)
		want := "parley send: cannot connect to tcp://127.0.0.1:1: connection refused; is parleyd running? (--wait keeps trying)\n"
		if r.code != 1 || r.stderr != want || took > 3*time.Second {
			t.Fatalf("exit %d after %v, stderr %q; want exit 1 at once with %q", r.code, took, r.stderr, want)
		}
	})
	t.Run("WaitGivesUp", func(t *testing.T) {
		r := runAs(t, ctx, nil, "alice", "send", "--to", "bob", "hi", "--url", "tcp://127.0.0.1:1", "--wait", "--timeout", "700ms")
		want := "parley send: cannot connect to tcp://127.0.0.1:1: still no connection after --timeout 700ms\n"
		if r.code != 1 || r.stderr != want {
			t.Fatalf("exit %d, stderr %q; want %q", r.code, r.stderr, want)
		}
	})
	t.Run("WaitSendsWhenBack", func(t *testing.T) {
		e.Stop()
		res := make(chan result, 1)
		go func() { res <- runAs(t, ctx, nil, "alice", "send", "--to", "bob", "while away", "--wait") }()
		time.Sleep(500 * time.Millisecond)
		e.Start()
		select {
		case r := <-res:
			ok(t, r, "sent dm:alice:bob #1")
			if r.stderr != "" {
				t.Fatalf("stderr: %s", r.stderr)
			}
		case <-ctx.Done():
			t.Fatal("send --wait did not end once the server was back")
		}
	})
}

// TestChatTyping: a chat tells the other side while a line is being typed,
// and shows it once per burst.
func TestChatTyping(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	// Typing reaches contacts only: both write first.
	ok(t, runAs(t, ctx, nil, "alice", "send", "--to", "bob", "hi"))
	ok(t, runAs(t, ctx, nil, "bob", "send", "--to", "alice", "hi"))
	bob := background(t, ctx, "bob", "chat", "alice")
	waitFor(t, &bob.errOut, "chatting in dm:alice:bob as bob/cli")

	alice := background(t, ctx, "alice", "chat", "bob")
	waitFor(t, &alice.errOut, "chatting in dm:alice:bob as alice/cli")
	for _, part := range []string{"hel", "lo b", "ob"} {
		if _, err := io.WriteString(alice.in, part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, &bob.errOut, "(alice is typing)")
	if _, err := io.WriteString(alice.in, "\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &bob.out, "alice: hello bob")
	alice.in.Close()
	if code := <-alice.done; code != 0 {
		t.Fatalf("alice's chat exited %d: %s", code, alice.errOut.String())
	}
	if n := strings.Count(bob.errOut.String(), "(alice is typing)"); n != 1 {
		t.Fatalf("bob saw alice typing %d times:\n%s", n, bob.errOut.String())
	}
	if strings.Contains(alice.errOut.String(), "is typing") {
		t.Fatalf("alice saw her own typing:\n%s", alice.errOut.String())
	}
}

// TestChatConnectionState: chat and listen say, in their own words and
// without log lines, when the connection is lost and when it is back; chat
// sends what was typed meanwhile.
func TestChatConnectionState(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t)
	chat := background(t, ctx, "bob", "chat", "alice")
	waitFor(t, &chat.errOut, "chatting in dm:alice:bob as bob/cli")
	listen := background(t, ctx, "alice", "listen", "--device", "l")
	waitFor(t, &listen.errOut, "listening as alice/l")

	e.Stop()
	waitFor(t, &chat.errOut, noticeLost)
	if _, err := io.WriteString(chat.in, "typed while away\n"); err != nil {
		t.Fatal(err)
	}
	e.Start()
	waitFor(t, &chat.errOut, noticeReconnected)
	waitFor(t, &chat.out, "bob: typed while away")
	waitFor(t, &listen.errOut, noticeReconnected)
	waitFor(t, &listen.out, "bob: typed while away")
	for _, s := range []string{chat.errOut.String(), listen.errOut.String()} {
		if strings.Contains(s, "level=") || strings.Contains(s, "WARN") || !strings.Contains(s, noticeLost) {
			t.Fatalf("standard error of chat or listen:\n%s", s)
		}
	}
}

// TestChatInput: what chat makes of the bytes it reads, from a pipe and
// from a terminal (where it echoes and edits).
func TestChatInput(t *testing.T) {
	cases := []struct {
		name   string
		term   bool
		feeds  []string
		lines  []string
		typing bool   // after the last feed
		eof    bool   // after the last feed
		echo   string // on a terminal
	}{
		{"PipeLines", false, []string{"a\nb\r\n"}, []string{"a", "b"}, false, false, ""},
		{"PipePartial", false, []string{"hel"}, nil, true, false, ""},
		{"PipeSplitLine", false, []string{"hel", "lo\nwor"}, []string{"hello"}, true, false, ""},
		{"TermEcho", true, []string{"hi", "\n"}, []string{"hi"}, false, false, "hi\n"},
		{"TermBackspace", true, []string{"hix\x7f", "!\n"}, []string{"hi!"}, false, false, "hix\b \b!\n"},
		{"TermBackspaceRune", true, []string{"é\x7f\x7fa\n"}, []string{"a"}, false, false, "é\b \ba\n"},
		{"TermBackspaceOnly", true, []string{"a", "\x7f"}, nil, false, false, "a\b \b"},
		{"TermKillLine", true, []string{"oops\x15ok\n"}, []string{"ok"}, false, false, "oops\r\x1b[Kok\n"},
		{"TermArrowKeys", true, []string{"a\x1b[D\x1b[Ab\n"}, []string{"ab"}, false, false, "ab\n"},
		{"TermCtrlDEmpty", true, []string{"\x04"}, nil, false, true, ""},
		{"TermCtrlDNotEmpty", true, []string{"a\x04"}, nil, true, false, "a"},
		{"TermTyping", true, []string{"x\ny"}, []string{"x"}, true, false, "x\ny"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var echo bytes.Buffer
			in := &chatInput{term: tc.term, echo: &echo}
			var lines []string
			var typing, eof bool
			for _, f := range tc.feeds {
				var got []string
				got, typing, eof = in.feed([]byte(f))
				lines = append(lines, got...)
			}
			if strings.Join(lines, "|") != strings.Join(tc.lines, "|") || typing != tc.typing || eof != tc.eof || echo.String() != tc.echo {
				t.Fatalf("lines %q typing %v eof %v echo %q; want %q %v %v %q", lines, typing, eof, echo.String(), tc.lines, tc.typing, tc.eof, tc.echo)
			}
		})
	}
	t.Run("PrintKeepsTheLineBeingTyped", func(t *testing.T) {
		var term bytes.Buffer
		in := &chatInput{term: true, echo: &term}
		in.feed([]byte("draft"))
		in.println(&term, "08:00:00 bob: hi")
		if want := "draft\r\x1b[K08:00:00 bob: hi\ndraft"; term.String() != want {
			t.Fatalf("terminal shows %q, want %q", term.String(), want)
		}
	})
}

func TestConnNotices(t *testing.T) {
	var n connNotices
	for i, tc := range []struct {
		up   bool
		want string
	}{
		{true, ""},
		{false, noticeLost},
		{false, ""},
		{true, noticeReconnected},
		{true, ""},
	} {
		if got := n.seen(tc.up); got != tc.want {
			t.Fatalf("step %d: seen(%v) = %q, want %q", i, tc.up, got, tc.want)
		}
	}
	// An event shows that the connection is back, never that it is lost.
	n.seen(false)
	if got := n.eventArrived(false); got != "" {
		t.Fatalf("event while disconnected: %q, want none", got)
	}
	if got := n.eventArrived(true); got != noticeReconnected {
		t.Fatalf("event while connected: %q, want %q", got, noticeReconnected)
	}
}

// TestChanges: edit, delete and react change messages; history, listen and
// send --reply-to show replies, edits, deletes and reactions.
func TestChanges(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var listenOut, listenErr testkit.Buffer
	go run(lctx, []string{"listen", "--token", testkit.Token(t, "bob")}, strings.NewReader(""), &listenOut, &listenErr)
	waitFor(t, &listenErr, "listening as bob/cli")

	ok(t, runAs(t, ctx, nil, "alice", "send", "--to", "bob", "helo"), "sent dm:alice:bob #1")
	ok(t, runAs(t, ctx, nil, "bob", "send", "--to", "alice", "--reply-to", "1", "--mention", "alice", "hi @alice"), "sent dm:alice:bob #2")
	ok(t, runAs(t, ctx, nil, "alice", "edit", "bob", "1", "hello", "bob"), "alice edited #1: hello bob (dm:alice:bob #3)")
	ok(t, runAs(t, ctx, nil, "bob", "react", "dm:alice:bob", "1", "👍"), "bob reacted 👍 to #1 (dm:alice:bob #4)")
	ok(t, runAs(t, ctx, nil, "bob", "react", "alice", "#1", "👍"), "dm:alice:bob #1: nothing to change (you had already reacted with it)")
	ok(t, runAs(t, ctx, nil, "alice", "react", "bob", "1", "🎉"), "#5")
	ok(t, runAs(t, ctx, nil, "alice", "react", "--remove", "bob", "1", "🎉"), "alice took back 🎉 from #1 (dm:alice:bob #6)")
	r := runAs(t, ctx, nil, "alice", "react", "bob", "1", "🎉", "--json")
	ok(t, r, `"type":"reaction.added"`, `"target":1`, `"emoji":"🎉"`, `"seq":7`)

	r = runAs(t, ctx, nil, "bob", "history", "alice")
	ok(t, r, "#1 ", "alice: hello bob (edited)  [🎉 1 👍 1]", "#2 ", "bob ↪ 1: hi @alice (mentions alice)", "#3 ", "alice edited #1: hello bob", "bob reacted 👍 to #1")
	waitFor(t, &listenOut, "dm:alice:bob #7 alice reacted 🎉 to #1")
	waitFor(t, &listenOut, "dm:alice:bob #2 bob ↪ 1: hi @alice")

	r = runAs(t, ctx, nil, "bob", "edit", "alice", "1", "mine")
	if r.code != 1 || !strings.Contains(r.stderr, "not_allowed") {
		t.Fatalf("edit of another's message: exit %d: %s", r.code, r.stderr)
	}
	r = runAs(t, ctx, nil, "bob", "delete", "alice", "1")
	if r.code != 1 || !strings.Contains(r.stderr, "parley delete: delete dm:alice:bob #1: parley: not_allowed") {
		t.Fatalf("delete of another's message: exit %d: %s", r.code, r.stderr)
	}
	r = runAs(t, ctx, nil, "alice", "edit", "bob", "42", "x")
	if r.code != 1 || !strings.Contains(r.stderr, "no_such_message") {
		t.Fatalf("edit of a missing message: exit %d: %s", r.code, r.stderr)
	}
	ok(t, runAs(t, ctx, nil, "alice", "delete", "bob", "1"), "alice deleted #1 (dm:alice:bob #8)")
	ok(t, runAs(t, ctx, nil, "alice", "delete", "bob", "1"), "nothing to change (already deleted)")
	r = runAs(t, ctx, nil, "bob", "history", "alice", "--json")
	ok(t, r, `"deleted":true`)
	r = runAs(t, ctx, nil, "bob", "history", "alice")
	ok(t, r, "alice: (deleted)", "alice edited #1\n", "alice deleted #1")
	if strings.Contains(r.stdout, "hello bob") {
		t.Fatalf("the deleted text is still shown:\n%s", r.stdout)
	}
	ok(t, runAs(t, ctx, nil, "bob", "conversations", "--json"), `"mentions":0`, `"pinned":false`)
}

// TestChatCommands: /reply, /react, /edit, /delete in chat, and their
// errors; the other side sees replies, reactions with their totals, edits
// and deletes.
func TestChatCommands(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	ok(t, runAs(t, ctx, nil, "alice", "send", "--to", "bob", "lunch?"))

	aliceIn, aliceInW := io.Pipe()
	defer aliceInW.Close()
	var aliceOut, aliceErr testkit.Buffer
	go run(ctx, []string{"chat", "bob", "--token", testkit.Token(t, "alice")}, aliceIn, &aliceOut, &aliceErr)
	waitFor(t, &aliceErr, "chatting in dm:alice:bob as alice/cli")
	waitFor(t, &aliceOut, "#1 ")

	in := strings.NewReader("/reply 1 sure\n/react 1 👍\n/react 1 👍\n/edit 1 not mine\n/bogus\n/delete 2\n//slash\n")
	r := runAs(t, ctx, in, "bob", "chat", "alice")
	ok(t, r, "#1 ", "alice: lunch?", "#2 ", "bob ↪ 1: sure", "#3 ", "bob reacted 👍 to #1 → [👍 1]", "#4 ", "bob deleted #2", "#5 ", "bob: /slash")
	for _, want := range []string{"(/react #1: nothing to change)", "error: /edit #1: parley: not_allowed", "error: unknown command /bogus", "/reply SEQ TEXT"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("bob's chat stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	waitFor(t, &aliceOut, "#2 ")
	waitFor(t, &aliceOut, "bob ↪ 1: sure")
	waitFor(t, &aliceOut, "bob reacted 👍 to #1 → [👍 1]")
	waitFor(t, &aliceOut, "bob deleted #2")
	if _, err := io.WriteString(aliceInW, "/edit 1 lunch at noon?\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &aliceOut, "alice edited #1: lunch at noon?")
}

func TestParseChatCommand(t *testing.T) {
	cases := []struct {
		line string
		want chatCommand
		err  string
	}{
		{"hello", chatCommand{op: "send", text: "hello"}, ""},
		{"//etc/passwd", chatCommand{op: "send", text: "/etc/passwd"}, ""},
		{"/reply 3 yes  indeed", chatCommand{op: "reply", seq: 3, text: "yes  indeed"}, ""},
		{"/edit #4 fixed", chatCommand{op: "edit", seq: 4, text: "fixed"}, ""},
		{"/delete 5", chatCommand{op: "delete", seq: 5}, ""},
		{"/react 6 👍", chatCommand{op: "react", seq: 6, emoji: "👍"}, ""},
		{"/unreact 6 👍", chatCommand{op: "unreact", seq: 6, emoji: "👍"}, ""},
		{"/help", chatCommand{op: "help"}, ""},
		{"/reply x hi", chatCommand{}, "want the seq of a message"},
		{"/reply 3", chatCommand{}, "/reply: want SEQ TEXT"},
		{"/delete 5 now", chatCommand{}, "/delete takes only a SEQ"},
		{"/react 6", chatCommand{}, "/react: want SEQ EMOJI"},
		{"/frob", chatCommand{}, "unknown command /frob"},
	}
	for _, tc := range cases {
		got, err := parseChatCommand(tc.line)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want %q", tc.line, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
}
