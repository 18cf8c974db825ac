package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/broker/brokertest"
	"github.com/parley-im/parley/internal/testkit"
)

var screenshots = flag.Bool("screenshots", false, "write the screenshots of docs/web.md into docs/web/")

// wait bounds every step of a browser test.
const wait = 20 * time.Second

// TestBrowser drives the web client in headless Chromium against a real
// broker on the embedded store: users in separate browser contexts sign in
// with the development sign-in and chat. Run with -screenshots to refresh
// the screenshots of docs/web.md.
func TestBrowser(t *testing.T) {
	srv := startServer(t)
	browser := startBrowser(t)

	t.Run("SignInPage", func(t *testing.T) {
		p := newPage(t, browser, "visitor")
		p.do(chromedp.Navigate(srv), chromedp.WaitVisible(chromedp.ID("login-user")))
		p.screenshot("login")
		// The token form: what is not a token is refused in the error line;
		// a token signs in.
		fill := func(token string) {
			p.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById("login-token").value = %q`, token)))
			p.click("#token-form button")
		}
		fill("not a token")
		p.waitText("#login-error", "that is not a token")
		fill(testkit.Token(t, "visitor"))
		p.do(chromedp.WaitVisible(chromedp.ID("conv-list")))
		p.do(chromedp.Navigate(srv + "/nowhere"))
		p.waitJS(`document.body.textContent.includes("404")`)
	})

	alice := signIn(t, browser, srv, "alice")
	bob := signIn(t, browser, srv, "bob")

	t.Run("DirectChat", func(t *testing.T) {
		alice.t, bob.t = t, t
		alice.openChat("bob")
		alice.send("Hello bob")
		bob.waitText(`[data-conv="dm:alice:bob"] .badge.unread`, "1")
		bob.screenshot("list")
		bob.openConv(`[data-conv="dm:alice:bob"]`)
		bob.waitText("#messages", "Hello bob")
		alice.waitText("#receipt", "Seen")
		bob.send("Hi alice")
		alice.waitText("#messages", "Hi alice")
		bob.waitText("#receipt", "Seen")
		// Both have written: they are contacts, so typing shows (see
		// docs/protocol.md, Privacy).
		bob.do(chromedp.SendKeys(chromedp.ID("composer-input"), "Nice"))
		alice.waitText("#typing", "bob is typing")
		bob.do(chromedp.Evaluate[chromedp.Void](`document.getElementById("composer-input").value = ""`))
		// bob reacts to alice's message and replies to it.
		bob.click(`li[data-seq="1"] [aria-label="React with 👍"]`)
		alice.waitText(`li[data-seq="1"] .chip`, "👍 1")
		bob.click(`li[data-seq="1"] [aria-label="Reply"]`)
		bob.waitText("#composer-bar", "Replying to alice")
		bob.send("Nice to see you")
		alice.waitText("#messages blockquote", "alice: Hello bob")
		alice.waitJS(`document.querySelector("#typing").textContent === ""`)
		alice.screenshot("chat")
	})

	t.Run("ReloadKeepsSeen", func(t *testing.T) {
		alice.t, bob.t = t, t
		// bob read alice's message in DirectChat: the read event went to the
		// page then. The reloaded page has only the server's word for it
		// (GET .../receipts); nothing moves bob's marker meanwhile.
		alice.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("conv-list")))
		alice.waitJS(`document.body.dataset.online === "true"`)
		alice.openConv(`[data-conv="dm:alice:bob"]`)
		alice.waitText(`#messages li[data-seq="1"] #receipt`, "Seen")
	})

	t.Run("EditAndDelete", func(t *testing.T) {
		alice.t, bob.t = t, t
		alice.click(`li[data-seq="1"] [aria-label="Edit"]`)
		alice.waitText("#composer-bar", "Editing")
		alice.do(chromedp.Evaluate[chromedp.Void](`document.getElementById("composer-input").value = ""`))
		alice.send("Hello bob, edited")
		for _, p := range []*page{alice, bob} {
			p.waitText(`li[data-seq="1"] .body`, "Hello bob, edited")
			p.waitText(`li[data-seq="1"] .meta`, "edited")
		}
		alice.do(chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
		alice.click(`li[data-seq="1"] [aria-label="Delete"]`)
		for _, p := range []*page{alice, bob} {
			p.waitText(`li[data-seq="1"]`, "Message deleted")
			p.waitText("#messages blockquote", "alice: message deleted")
		}
	})

	t.Run("Image", func(t *testing.T) {
		alice.t, bob.t = t, t
		img := image.NewRGBA(image.Rect(0, 0, 160, 120))
		for x := range 160 {
			for y := range 120 {
				img.Set(x, y, color.RGBA{uint8(x), uint8(y * 2), 200, 255})
			}
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		file := testkit.WriteFile(t, "gradient.png", buf.Bytes())
		alice.do(chromedp.SetUploadFiles(chromedp.ID("attach-input"), []string{file}))
		alice.waitJS(`document.querySelector("#composer-bar img.preview-thumb")?.naturalWidth === 160`)
		alice.send("A picture")
		for _, p := range []*page{alice, bob} {
			p.waitText("#messages", "A picture")
			p.waitJS(`[...document.querySelectorAll("#messages img.thumb")].some(i => i.alt === "gradient.png" && i.naturalWidth === 160)`)
		}
		bob.screenshot("image")
	})

	t.Run("OfflineAndBack", func(t *testing.T) {
		alice.t, bob.t = t, t
		bob.setOffline(true)
		bob.waitJS(`!document.getElementById("banner").hidden`)
		bob.screenshot("offline")
		alice.send("Are you there?")
		alice.send("Still there?")
		alice.waitJS(`document.querySelectorAll("#messages .msg.pending").length === 0`)
		time.Sleep(300 * time.Millisecond)
		bob.waitJS(`!document.getElementById("messages").textContent.includes("Still there?")`)
		bob.setOffline(false)
		bob.waitJS(`document.getElementById("banner").hidden`)
		bob.waitText("#messages", "Are you there?")
		bob.waitText("#messages", "Still there?")
		alice.waitText("#receipt", "Seen")
		// Each message once, in seq order.
		bob.waitJS(`(() => {
			const seqs = [...document.querySelectorAll("#messages li[data-seq]")].map(li => +li.dataset.seq);
			return seqs.length > 0 && seqs.every((s, i) => i === 0 || s > seqs[i-1]) &&
				[...document.querySelectorAll("#messages .body")].filter(b => b.textContent === "Still there?").length === 1;
		})()`)
	})

	t.Run("GroupOfThree", func(t *testing.T) {
		alice.t, bob.t = t, t
		carol := signIn(t, browser, srv, "carol")
		alice.click("#new-group")
		alice.do(
			chromedp.SendKeys(chromedp.ID("group-name"), "Team"),
			chromedp.SendKeys(chromedp.ID("group-members"), "bob, carol"),
		)
		alice.click("#group-create")
		alice.waitText("#messages", "alice created the group")
		// Mentions autocomplete: @ca offers carol.
		alice.do(chromedp.SendKeys(chromedp.ID("composer-input"), "Welcome @ca"))
		alice.waitText("#mention-list", "@carol")
		alice.do(chromedp.SendKeys(chromedp.ID("composer-input"), "\t"))
		alice.waitJS(`document.getElementById("composer-input").value === "Welcome @carol "`)
		alice.send("and bob")
		carol.waitText(`[data-conv^="g:"] .badge.mention`, "@1")
		carol.openConv(`[data-conv^="g:"]`)
		carol.waitText("#messages .mention.me", "@carol")
		carol.send("Hi all")
		bob.openConv(`[data-conv^="g:"]`)
		bob.send("Hello team")
		for _, p := range []*page{alice, bob, carol} {
			p.waitText("#messages", "Welcome @carol and bob")
			p.waitText("#messages", "Hi all")
			p.waitText("#messages", "Hello team")
		}
		alice.waitText("#receipt", "Seen by bob, carol")
		alice.screenshot("group")
		// Member management: alice adds dave, everyone sees it.
		alice.click("#members-btn")
		alice.waitText("#members-dialog", "carol")
		alice.do(chromedp.SendKeys(chromedp.ID("add-member"), "dave"))
		alice.click("#add-member-btn")
		alice.waitText("#members-dialog", "dave")
		alice.screenshot("members")
		alice.click("#members-dialog .close")
		carol.waitText("#messages", "alice added dave")
	})

	t.Run("ScrollBackHistory", func(t *testing.T) {
		alice.t = t
		// erin sends 120 messages over the REST API; alice opens the
		// conversation at the latest and scrolls up to the first.
		token := devToken(t, srv, "erin")
		for i := 1; i <= 120; i++ {
			restPost(t, srv+"/v1/users/alice/messages", token, fmt.Sprintf(`{"cid":"h%d","body":"history %d"}`, i, i))
		}
		alice.openConv(`[data-conv="dm:alice:erin"]`)
		alice.waitText("#messages", "history 120")
		alice.waitJS(`document.querySelectorAll("#messages .body").length < 120`)
		for range 10 {
			alice.do(chromedp.Evaluate[chromedp.Void](`document.getElementById("messages").scrollTop = 0`))
			time.Sleep(200 * time.Millisecond)
		}
		alice.waitJS(`(() => {
			const bodies = [...document.querySelectorAll("#messages .body")].map(b => b.textContent);
			return bodies.length === 120 && bodies[0] === "history 1" && bodies[119] === "history 120";
		})()`)
		alice.waitText("#messages", "Beginning of the conversation")
	})

	t.Run("PhoneSize", func(t *testing.T) {
		bob.t = t
		// One pane at a time: bob's group conversation fills the screen.
		bob.do(chromedp.EmulateViewport(390, 760))
		bob.waitJS(`getComputedStyle(document.getElementById("list-pane")).display === "none"`)
		bob.click(".conv-head .back")
		bob.waitJS(`getComputedStyle(document.getElementById("conv-pane")).display === "none"`)
		bob.screenshot("phone-list")
		bob.openConv(`[data-conv="dm:alice:bob"]`)
		bob.waitJS(`getComputedStyle(document.getElementById("list-pane")).display === "none"`)
		bob.screenshot("phone")
	})

	t.Run("ReverseProxy", func(t *testing.T) {
		// One public address for the page, the REST API and MQTT over
		// WebSocket, as behind nginx or Caddy: with PARLEY_WEB_MQTT_URL the
		// client connects through the proxy, not to the listener's port.
		front := httptest.NewUnstartedServer(nil)
		s := brokertest.Start(t, broker.Options{
			Store: testkit.OpenSQLite(t), WSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			JWTSecret: []byte(testkit.Secret), Logger: testkit.Logger(), Rate: -1, Web: true, DevLogin: true,
			WebMQTTURL: "ws://" + front.Listener.Addr().String() + "/mqtt",
		})
		toHTTP := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: s.Addr("http")})
		toWS := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: s.Addr("ws")})
		var upgrades atomic.Int32
		front.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/mqtt" {
				upgrades.Add(1)
				toWS.ServeHTTP(w, r)
				return
			}
			toHTTP.ServeHTTP(w, r)
		})
		front.Start()
		t.Cleanup(front.Close)
		signIn(t, browser, front.URL, "frank")
		if n := upgrades.Load(); n == 0 {
			t.Fatalf("the client did not connect through %s/mqtt", front.URL)
		}
	})
}

// startServer starts a broker with the web client and the development
// sign-in on the embedded store and returns the client's URL.
func startServer(t *testing.T) string {
	t.Helper()
	s := brokertest.Start(t, broker.Options{
		Store: testkit.OpenSQLite(t), WSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		JWTSecret: []byte(testkit.Secret), Logger: testkit.Logger(), Rate: -1, Web: true, DevLogin: true,
		BlobDir: t.TempDir(),
	})
	return "http://" + s.Addr("http")
}

// startBrowser starts headless Chromium. Without one the test is skipped,
// except in CI, where it fails (and scripts/testsummary fails make test on
// the skip unless PARLEY_ALLOW_SKIPS=1).
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is required in CI (.ci/run installs it: apt-get install chromium)")
		}
		t.Skip("chromium not found: apt-get install chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1100, 720), chromedp.Flag("disable-dev-shm-usage", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// page is one browser context (one user's window).
type page struct {
	t    *testing.T
	ctx  context.Context
	user string
}

func newPage(t *testing.T, browser context.Context, user string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // opens the tab: no timeout here
		t.Fatalf("%s: new tab: %v", user, err)
	}
	return &page{t: t, ctx: ctx, user: user}
}

// signIn opens the client as user with the development sign-in and waits
// for its MQTT connection.
func signIn(t *testing.T, browser context.Context, url, user string) *page {
	t.Helper()
	p := newPage(t, browser, user)
	p.do(chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("login-user")),
		chromedp.SendKeys(chromedp.ID("login-user"), user),
		chromedp.Click(chromedp.ID("dev-login")),
		chromedp.WaitVisible(chromedp.ID("conv-list")))
	p.waitJS(`document.body.dataset.online === "true"`)
	return p
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.fail(err)
	}
}

func (p *page) fail(err error) {
	p.t.Helper()
	html, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body.innerText`))
	p.t.Fatalf("%s: %v\npage text:\n%s", p.user, err, html)
}

// waitJS waits until the expression is true.
func (p *page) waitJS(expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(wait))); err != nil {
		p.fail(fmt.Errorf("waiting for %s: %w", expr, err))
	}
}

// waitText waits until an element matching sel contains text.
func (p *page) waitText(sel, text string) {
	p.t.Helper()
	s, _ := json.Marshal(sel)
	x, _ := json.Marshal(text)
	p.waitJS(fmt.Sprintf(`[...document.querySelectorAll(%s)].some(e => e.textContent.includes(%s))`, s, x))
}

// click clicks the first element matching sel with the mouse. A live
// update may replace the element between finding and clicking it (the
// conversation list is drawn again on every message): then it tries again.
func (p *page) click(sel string) {
	p.t.Helper()
	var err error
	for range 5 {
		ctx, cancel := context.WithTimeout(p.ctx, wait)
		err = chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.fail(fmt.Errorf("click %s: %w", sel, err))
}

// openConv opens the conversation whose list item matches sel, and waits
// until it is the open one. The list is sorted by last message and drawn
// again on every message, so a live message can move another item under
// the pointer between finding the item and clicking it: then it clicks
// again.
func (p *page) openConv(sel string) {
	p.t.Helper()
	s, _ := json.Marshal(sel)
	open := fmt.Sprintf(`document.querySelector(%s)?.getAttribute("aria-current") === "true"`, s)
	for range 5 {
		p.click(sel)
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](open, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(2*time.Second)))
		cancel()
		if err == nil {
			return
		}
	}
	p.waitJS(open)
}

// openChat starts a direct conversation with peer.
func (p *page) openChat(peer string) {
	p.t.Helper()
	p.click("#new-chat")
	p.do(chromedp.SendKeys(chromedp.ID("new-chat-user"), peer))
	p.click("#new-chat-open")
	p.do(chromedp.WaitVisible(chromedp.ID("composer-input")))
}

// send types text into the composer and presses Enter.
func (p *page) send(text string) {
	p.t.Helper()
	p.do(chromedp.SendKeys(chromedp.ID("composer-input"), text+"\r"))
}

// setOffline turns the tab's network off or on, as the browser sees it.
func (p *page) setOffline(off bool) {
	p.t.Helper()
	p.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: off, DownloadThroughput: -1, UploadThroughput: -1})
		return err
	}))
}

// screenshot writes docs/web/NAME.png with -screenshots.
func (p *page) screenshot(name string) {
	p.t.Helper()
	if !*screenshots {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.fail(err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "web", name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// devToken signs user in with POST /dev/login and returns its token.
func devToken(t *testing.T, srv, user string) string {
	t.Helper()
	var r struct{ Token string }
	if err := json.Unmarshal(restPost(t, srv+"/dev/login", "", `{"user":"`+user+`"}`), &r); err != nil || r.Token == "" {
		t.Fatalf("dev login %s: %v", user, err)
	}
	return r.Token
}

// restPost posts body and returns the answer, failing on a status >= 300.
func restPost(t *testing.T, url, token, body string) []byte {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s = %d %s", url, resp.StatusCode, b)
	}
	return b
}
