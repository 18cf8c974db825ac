// Parley's web client: sign-in, the conversation list and one conversation,
// over MQTT (live messages, receipts, typing, presence) and the REST API
// (history, sync, groups, settings, files). See docs/web.md.

import mqtt, { type MqttClient } from "mqtt";
import { Api, ApiError, type Receipts, devLogin } from "./api";
import { $, type Child, h, replace } from "./dom";
import { type Attachment, type Conv, type Group, type Msg, Thread, dmId, isChange, isEvent, text } from "./model";

interface Config {
  mqtt_port: number;
  mqtt_path: string;
  mqtt_url?: string; // PARLEY_WEB_MQTT_URL: wins over port and path when set
  topic_prefix: string;
  dev_login: boolean;
  files: boolean;
}

const QUICK_EMOJI = ["👍", "❤️", "😂", "🎉"];
const TYPING_EVERY = 3000; // ms between typing events sent
const TYPING_SHOWN = 6000; // ms a typing event is shown

let cfg: Config = { mqtt_port: 8083, mqtt_path: "/mqtt", topic_prefix: "im", dev_login: false, files: false };

const app = {
  user: "",
  api: null as Api | null,
  client: null as MqttClient | null,
  convs: new Map<string, Conv>(),
  threads: new Map<string, Thread>(),
  groups: new Map<string, Group>(),
  open: null as string | null,
  syncToken: null as string | null,
  syncing: null as Promise<void> | null,
  presence: new Map<string, boolean>(),
  presenceSubs: new Set<string>(),
  readBy: new Map<string, Map<string, number>>(), // conv -> user -> seq
  delivered: new Map<string, Map<string, number>>(),
  typing: new Map<string, Map<string, number>>(), // conv -> user -> shown until
  online: false,
  connectedOnce: false,
  reply: null as Msg | null,
  editing: null as Msg | null,
  files: [] as File[],
  lastTyping: 0,
  rendered: new Map<string, { sig: string; el: HTMLElement }>(),
};

const api = (): Api => app.api!;
const topic = (rest: string): string => `${cfg.topic_prefix}/${rest}`;

function cid(): string {
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return "w" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// device is this tab's device id: one per tab, kept across reloads.
function device(): string {
  let d = sessionStorage.getItem("parley.device");
  if (!d) {
    d = "web-" + cid().slice(1, 11);
    sessionStorage.setItem("parley.device", d);
  }
  return d;
}

// ---- sign-in ----

async function start(): Promise<void> {
  try {
    cfg = await (await fetch("config.json")).json();
  } catch {
    // defaults
  }
  const token = sessionStorage.getItem("parley.token");
  if (token) await signIn(token);
  else renderLogin();
}

function tokenUser(token: string): string | null {
  try {
    const p = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const sub = JSON.parse(atob(p)).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

function renderLogin(error = ""): void {
  const err = h("p", { id: "login-error", class: "error", role: "alert" }, error);
  const fail = (e: unknown) => (err.textContent = e instanceof Error ? e.message : String(e));
  // A sign-in form: on submit, action gets the trimmed value of the field
  // fieldId; a failure shows in the error line.
  const form = (id: string, fieldId: string, action: (value: string) => Promise<void>, ...children: Child[]) =>
    h(
      "form",
      {
        id,
        onsubmit: async (e: Event) => {
          e.preventDefault();
          const value = (document.getElementById(fieldId) as HTMLInputElement | HTMLTextAreaElement).value.trim();
          try {
            await action(value);
          } catch (e) {
            fail(e);
          }
        },
      },
      ...children,
    );
  const dev = cfg.dev_login
    ? form(
        "dev-form",
        "login-user",
        async (user) => signIn((await devLogin(user)).token),
        h("label", { for: "login-user" }, "User name"),
        h("input", { id: "login-user", name: "user", autocomplete: "username", required: true, maxlength: 64, pattern: "[A-Za-z0-9._@\\-]+" }),
        h("button", { id: "dev-login", type: "submit" }, "Sign in"),
        h("p", { class: "hint" }, "Development sign-in: any user name gets a token (PARLEY_DEV_LOGIN)."),
      )
    : null;
  const tok = form(
    "token-form",
    "login-token",
    signIn,
    h("label", { for: "login-token" }, dev ? "Or paste a token" : "Token"),
    h("textarea", { id: "login-token", rows: 3, required: true, spellcheck: "false" }),
    h("button", { type: "submit" }, "Sign in with token"),
    h("p", { class: "hint" }, "Get one with: parleyd token USER"),
  );
  replace($("#app"), h("main", { class: "login" }, h("h1", {}, "Parley"), dev, tok, err));
  document.getElementById(dev ? "login-user" : "login-token")?.focus();
}

async function signIn(token: string): Promise<void> {
  const user = tokenUser(token);
  if (!user) throw new Error("that is not a token (a JWT: three parts separated by dots)");
  app.user = user;
  app.api = new Api(token);
  try {
    await resync();
  } catch (e) {
    sessionStorage.removeItem("parley.token");
    app.api = null;
    if (e instanceof ApiError && e.status === 401) return renderLogin("The server refused the token: " + e.message);
    throw e;
  }
  sessionStorage.setItem("parley.token", token);
  renderShell();
  connect(token);
}

function signOut(reason = ""): void {
  sessionStorage.removeItem("parley.token");
  app.client?.end(true);
  location.hash = "";
  location.reload();
  if (reason) console.warn(reason);
}

// ---- MQTT ----

// mqttURL is where MQTT over WebSocket is: the server's mqtt_url (behind a
// reverse proxy), else the page's host on mqtt_port and mqtt_path, over wss:
// when the page came over https:.
function mqttURL(): string {
  if (cfg.mqtt_url) return cfg.mqtt_url;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  return `${proto}://${location.hostname}:${cfg.mqtt_port}${cfg.mqtt_path}`;
}

function connect(token: string): void {
  const c = mqtt.connect(mqttURL(), {
    clientId: `${app.user}/${device()}`,
    username: app.user,
    password: token,
    protocolVersion: 5,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 2000,
    connectTimeout: 10000,
    resubscribe: false,
  });
  app.client = c;
  c.on("connect", () => {
    setOnline(true);
    c.subscribe(topic("inbox/" + app.user), { qos: 1 });
    app.presenceSubs.clear();
    for (const conv of app.convs.values()) watchPresence(conv);
    if (app.connectedOnce) void catchUp();
    app.connectedOnce = true;
  });
  c.on("close", () => setOnline(false));
  c.on("offline", () => setOnline(false));
  c.on("error", (err) => {
    const code = (err as { code?: number }).code;
    if (code === 134 || code === 135) signOut("the server refused the token");
  });
  c.on("message", (t, payload) => {
    let data: unknown;
    try {
      data = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return;
    }
    if (t === topic("inbox/" + app.user)) onInbox(data as Record<string, unknown>);
    else if (t.startsWith(topic("presence/"))) onPresence(data as { user: string; online: boolean });
  });
}

// The browser says when the network goes away: drop the connection at once
// (rather than after a keepalive) and reconnect when it comes back.
window.addEventListener("offline", () => {
  if (!app.client) return;
  app.client.end(true);
  setOnline(false);
});
window.addEventListener("online", () => {
  if (app.client && !app.client.connected) app.client.reconnect();
});

function setOnline(on: boolean): void {
  app.online = on;
  document.body.dataset.online = String(on);
  const b = document.getElementById("banner");
  if (b) b.hidden = on;
}

function publish(t: string, payload: object, qos: 0 | 1, onError?: (e: Error) => void): void {
  app.client?.publish(t, JSON.stringify(payload), { qos }, (err) => {
    if (err && onError) onError(err);
  });
}

function watchPresence(conv: Conv): void {
  const peer = conv.peer;
  if (conv.kind !== "direct" || !peer || app.presenceSubs.has(peer) || !app.client?.connected) return;
  app.presenceSubs.add(peer);
  app.client.subscribe(topic("presence/" + peer), { qos: 1 }, (err, granted) => {
    if (err || !granted || granted.some((g) => g.qos >= 128)) {
      // Refused: a conversation just begun may not count yet (the server
      // remembers a no for 5 s); try again later, or at its next message.
      app.presenceSubs.delete(peer);
      if (conv.last_seq > 0) setTimeout(() => watchPresence(conv), 6000);
    }
  });
}

function onPresence(p: { user: string; online: boolean }): void {
  app.presence.set(p.user, p.online);
  renderList();
  renderHead();
}

function onInbox(ev: Record<string, unknown>): void {
  const conv = ev.conv as string;
  switch (ev.kind) {
    case "message":
      onMessage(ev as unknown as Msg);
      break;
    case "ephemeral":
      if (ev.type === "typing") setTyping(conv, ev.from as string);
      break;
    case "error":
      onError(ev as { cid?: string; code: string; message: string });
      break;
    case "gap":
      if (app.threads.get(conv)?.loaded) void fillAfter(conv, ev.after as number);
      break;
    case "read":
      onRead(ev as { conv: string; user: string; seq: number; unread?: number; mentions?: number });
      break;
    case "delivered":
      raise(app.delivered, conv, ev.user as string, ev.seq as number);
      if (conv === app.open) renderMessages();
      break;
    case "settings": {
      const c = app.convs.get(conv);
      if (c) {
        Object.assign(c, { muted_until: ev.muted_until ?? null, archived: !!ev.archived, pinned: !!ev.pinned });
        renderList();
        renderHead();
      }
      break;
    }
  }
}

function mapOf<V>(m: Map<string, Map<string, V>>, k: string): Map<string, V> {
  let v = m.get(k);
  if (!v) m.set(k, (v = new Map()));
  return v;
}

// raise records that user got to seq in conv, keeping the highest seq: the
// live events and the stored receipts may come in any order.
function raise(m: Map<string, Map<string, number>>, conv: string, user: string, seq: number): void {
  const v = mapOf(m, conv);
  v.set(user, Math.max(seq, v.get(user) ?? 0));
}

function thread(conv: string): Thread {
  let t = app.threads.get(conv);
  if (!t) app.threads.set(conv, (t = new Thread()));
  return t;
}

// convFor returns the conversation of m, adding a new one (a first direct
// message, a group one was added to) and asking the server for its details.
function convFor(id: string): Conv {
  let c = app.convs.get(id);
  if (!c) {
    const dm = id.startsWith("dm:");
    const peer = dm ? id.split(":").slice(1).find((u) => u !== app.user) : undefined;
    const group = dm ? undefined : id.slice(2);
    c = { id, kind: dm ? "direct" : "group", peer, group, name: peer ?? group ?? id, last_seq: 0, read_seq: 0, unread: 0, mentions: 0, muted_until: null, archived: false, pinned: false, last_message: null };
    app.convs.set(id, c);
    if (!dm) void resync();
  }
  return c;
}

function onMessage(m: Msg): void {
  const c = convFor(m.conv);
  const fresh = m.seq > c.last_seq;
  if (fresh) {
    c.last_seq = m.seq;
    c.last_message = m;
  }
  watchPresence(c);
  // A thread being loaded takes the message too: the page in flight may
  // have been read before it was stored.
  const th = app.threads.get(m.conv);
  if (th?.loaded || th?.loading) {
    const newest = th.newest;
    if (th.add(m) && isChange(m)) refreshTarget(m.conv, th.apply(m));
    if (th.loaded && newest > 0 && m.seq > newest + 1) void fillAfter(m.conv, newest);
  }
  if (fresh && m.from !== app.user && !isEvent(m) && m.seq > c.read_seq) {
    c.unread++;
    if (m.mentions?.includes(app.user)) c.mentions++;
  }
  if (m.from !== app.user) mapOf(app.typing, m.conv).delete(m.from);
  if (m.type.startsWith("member.") && c.group) void loadGroup(c.group);
  renderList();
  if (m.conv === app.open) {
    renderMessages();
    renderTyping();
    markRead();
  }
}

function onError(e: { cid?: string; code: string; message: string }): void {
  toast(e.message);
  if (!e.cid) return;
  for (const th of app.threads.values()) {
    const p = th.pending.get(e.cid);
    if (p) {
      p.failed = e.message;
      renderMessages();
    }
  }
}

function onRead(r: { conv: string; user: string; seq: number; unread?: number; mentions?: number }): void {
  const c = app.convs.get(r.conv);
  if (r.user === app.user) {
    if (c) {
      c.read_seq = Math.max(c.read_seq, r.seq);
      if (r.unread !== undefined) c.unread = r.unread;
      if (r.mentions !== undefined) c.mentions = r.mentions;
      renderList();
    }
    return;
  }
  raise(app.readBy, r.conv, r.user, r.seq);
  if (r.conv === app.open) renderMessages();
}

function setTyping(conv: string, user: string): void {
  mapOf(app.typing, conv).set(user, Date.now() + TYPING_SHOWN);
  if (conv === app.open) {
    renderTyping();
    setTimeout(renderTyping, TYPING_SHOWN + 100);
  }
}

// ---- REST: sync, history, gaps ----

// resync brings the conversation list up to date with GET /v1/sync (a
// snapshot the first time), and fills what loaded threads missed.
function resync(): Promise<void> {
  if (!app.syncing) {
    app.syncing = (async () => {
      try {
        for (;;) {
          const page = await api().sync(app.syncToken);
          for (const s of page.conversations) {
            const { messages: _, ...conv } = s;
            const had = app.convs.get(conv.id);
            app.convs.set(conv.id, conv);
            const th = app.threads.get(conv.id);
            if (th?.loaded && conv.last_seq > th.newest) void fillAfter(conv.id, th.newest);
            if (!had) watchPresence(conv);
          }
          app.syncToken = page.next;
          if (!page.more) break;
        }
      } finally {
        app.syncing = null;
      }
      renderList();
      renderHead();
    })();
  }
  return app.syncing;
}

async function catchUp(): Promise<void> {
  try {
    await resync();
    if (app.open) void loadReceipts(app.open);
    markRead();
  } catch (e) {
    toast("Could not catch up: " + (e as Error).message);
  }
}

// loadReceipts merges what the server kept of the other members' read and
// delivered receipts (GET .../receipts) into readBy and delivered: the live
// events reach only the devices online when they go out, so a reload or a
// reconnect would show "Sent" until the next one.
async function loadReceipts(conv: string): Promise<void> {
  let r: Receipts;
  try {
    r = await api().receipts(conv);
  } catch {
    return; // a direct conversation without messages yet, or offline: the live events still count
  }
  for (const x of r.receipts) {
    raise(app.readBy, conv, x.user, x.read_seq);
    if (x.delivered_seq) raise(app.delivered, conv, x.user, x.delivered_seq);
  }
  if (conv === app.open) renderMessages();
}

async function fillAfter(conv: string, after: number): Promise<void> {
  const th = thread(conv);
  for (;;) {
    const page = await api().history(conv, { after, limit: 100 });
    for (const m of page.messages) {
      if (th.add(m) && isChange(m)) refreshTarget(conv, th.apply(m));
      after = m.seq;
    }
    if (!page.next || page.messages.length === 0) break;
  }
  if (conv === app.open) {
    renderMessages();
    markRead();
  }
}

async function loadOlder(conv: string): Promise<void> {
  const th = thread(conv);
  if (th.loading || th.complete) return;
  th.loading = true;
  try {
    const before = th.loaded ? th.oldest : undefined;
    const page = await api().history(conv, { before, limit: 50 });
    for (const m of page.messages) th.add(m);
    th.complete = page.next === null;
  } catch (e) {
    // A direct conversation with no message yet is not one: nothing to load.
    if (!(e instanceof ApiError && e.code === "not_member")) toast("Could not load messages: " + (e as Error).message);
    th.complete = true;
  } finally {
    th.loaded = true;
    th.loading = false;
  }
  if (conv === app.open) renderMessages(true);
}

const refreshing = new Set<string>();
function refreshTarget(conv: string, seq: number | null): void {
  if (seq === null || refreshing.has(conv + "/" + seq)) return;
  refreshing.add(conv + "/" + seq);
  setTimeout(async () => {
    refreshing.delete(conv + "/" + seq);
    try {
      const m = await api().message(conv, seq);
      thread(conv).msgs.set(seq, m);
      if (conv === app.open) renderMessages();
    } catch {
      // it will be right at the next load
    }
  }, 150);
}

async function loadGroup(id: string): Promise<Group | undefined> {
  try {
    const g = await api().group(id);
    app.groups.set(id, g);
    if (app.open === "g:" + id) renderMessages();
    return g;
  } catch {
    app.groups.delete(id);
    return undefined;
  }
}

function markRead(): void {
  const c = app.open ? app.convs.get(app.open) : undefined;
  const th = app.open ? app.threads.get(app.open) : undefined;
  if (!c || !th || document.visibilityState !== "visible" || !app.online) return;
  const seq = Math.min(th.newest, c.last_seq);
  if (seq <= c.read_seq) return;
  c.read_seq = seq;
  c.unread = 0;
  c.mentions = 0;
  publish(topic("read"), { conv: c.id, seq }, 1);
  renderList();
}
document.addEventListener("visibilitychange", markRead);

// ---- rendering: shell and list ----

function renderShell(): void {
  replace(
    $("#app"),
    h(
      "div",
      { class: "shell" },
      h(
        "header",
        { class: "top" },
        h("h1", {}, "Parley"),
        h("span", { id: "me", "aria-label": "Signed in as " + app.user }, app.user),
        h("button", { id: "sign-out", type: "button", onclick: () => signOut() }, "Sign out"),
      ),
      h("div", { id: "banner", role: "status", hidden: true }, "Offline: reconnecting…"),
      h(
        "div",
        { class: "panes" },
        h(
          "nav",
          { id: "list-pane", "aria-label": "Conversations" },
          h(
            "div",
            { class: "list-actions" },
            h("button", { id: "new-chat", type: "button", onclick: newChatDialog }, "New chat"),
            h("button", { id: "new-group", type: "button", onclick: newGroupDialog }, "New group"),
          ),
          h("ul", { id: "conv-list" }),
        ),
        h("main", { id: "conv-pane" }),
      ),
      h("div", { id: "toast", role: "alert" }),
    ),
  );
  renderList();
  renderConv();
}

function sortedConvs(): Conv[] {
  const ts = (c: Conv) => c.last_message?.ts ?? "";
  return [...app.convs.values()].sort((a, b) => {
    if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
    if (a.archived !== b.archived) return a.archived ? 1 : -1;
    return ts(b).localeCompare(ts(a)) || a.id.localeCompare(b.id);
  });
}

function muted(c: Conv): boolean {
  return !!c.muted_until && Date.parse(c.muted_until) > Date.now();
}

function preview(m: Msg | null): string {
  if (!m) return "";
  const who = m.from === app.user ? "You" : m.from;
  switch (m.type) {
    case "message.edited":
      return `${who} edited a message`;
    case "message.deleted":
      return `${who} deleted a message`;
    case "reaction.added":
      return `${who} reacted ${m.emoji ?? ""}`;
    case "reaction.removed":
      return `${who} removed a reaction`;
  }
  if (isEvent(m)) return systemText(m);
  if (m.deleted) return `${who}: message deleted`;
  const t = text(m.body) || (m.attachments?.length ? "📎 " + m.attachments.map((a) => a.name).join(", ") : "");
  return `${who}: ${t}`;
}

function presenceDot(user: string | undefined): HTMLElement | null {
  if (!user || !app.presence.has(user)) return null;
  const on = app.presence.get(user)!;
  return h("span", { class: "dot " + (on ? "online" : "offline"), role: "img", "aria-label": on ? "online" : "offline", title: on ? "online" : "offline" });
}

function renderList(): void {
  const ul = document.getElementById("conv-list");
  if (!ul) return;
  const items = sortedConvs().map((c) =>
    h(
      "li",
      {},
      h(
        "button",
        { class: "conv-item", type: "button", "data-conv": c.id, "aria-current": c.id === app.open ? "true" : false, onclick: () => openConv(c.id) },
        h("span", { class: "conv-line" }, presenceDot(c.peer), h("span", { class: "conv-name" }, c.name), c.pinned ? h("span", { class: "flag", "aria-label": "pinned", title: "pinned" }, "📌") : null, muted(c) ? h("span", { class: "flag", "aria-label": "muted", title: "muted" }, "🔕") : null, c.archived ? h("span", { class: "flag small" }, "archived") : null),
        h("span", { class: "conv-line" }, h("span", { class: "preview" }, preview(c.last_message)), c.mentions > 0 ? h("span", { class: "badge mention", "aria-label": `${c.mentions} mentions` }, "@" + c.mentions) : null, c.unread > 0 ? h("span", { class: "badge unread", "aria-label": `${c.unread} unread` }, String(c.unread)) : null),
      ),
    ),
  );
  if (items.length === 0) items.push(h("li", { class: "empty" }, "No conversations yet: start a new chat."));
  replace(ul, items);
}

// ---- rendering: one conversation ----

function openConv(id: string): void {
  app.open = id;
  app.reply = null;
  app.editing = null;
  app.files = [];
  app.rendered.clear();
  document.body.classList.add("show-conv");
  renderList();
  renderConv();
  const c = app.convs.get(id);
  if (c?.group) void loadGroup(c.group);
  void loadReceipts(id);
  const th = thread(id);
  if (!th.loaded) void loadOlder(id).then(markRead);
  else if (c && c.last_seq > th.newest) void fillAfter(id, th.newest);
  else markRead();
  document.getElementById("composer-input")?.focus();
}

function closeConv(): void {
  document.body.classList.remove("show-conv");
  document.querySelector<HTMLElement>(`[data-conv="${CSS.escape(app.open ?? "")}"]`)?.focus();
}

function renderConv(): void {
  const pane = document.getElementById("conv-pane");
  if (!pane) return;
  const c = app.open ? app.convs.get(app.open) : undefined;
  if (!c) {
    replace(pane, h("p", { class: "placeholder" }, "Choose a conversation, or start a new chat."));
    return;
  }
  const log = h("ol", { id: "messages", role: "log", "aria-label": "Messages", tabindex: 0 });
  log.addEventListener("scroll", () => {
    if (log.scrollTop < 80) void loadOlder(c.id);
  });
  const input = h("textarea", { id: "composer-input", rows: 1, "aria-label": "Message", placeholder: "Message " + c.name, autocomplete: "off", "aria-autocomplete": "list", "aria-controls": "mention-list", "aria-expanded": "false" });
  input.addEventListener("keydown", composerKey);
  input.addEventListener("input", composerInput);
  const file = h("input", { id: "attach-input", type: "file", accept: "image/*", multiple: true, class: "visually-hidden", tabindex: -1, "aria-hidden": "true" });
  file.addEventListener("change", () => {
    app.files = [...(file.files ?? [])];
    file.value = "";
    renderComposerBar();
  });
  replace(
    pane,
    h("header", { id: "conv-head", class: "conv-head" }),
    log,
    h("div", { id: "typing", class: "typing", "aria-live": "polite" }),
    h(
      "form",
      { id: "composer", onsubmit: (e: Event) => (e.preventDefault(), void submit()) },
      h("div", { id: "composer-bar" }),
      h("ul", { id: "mention-list", role: "listbox", "aria-label": "Mention a member", hidden: true }),
      h(
        "div",
        { class: "composer-row" },
        cfg.files ? h("button", { id: "attach-btn", type: "button", "aria-label": "Attach images", title: "Attach images", onclick: () => file.click() }, "📎") : null,
        cfg.files ? file : null,
        input,
        h("button", { id: "send-btn", type: "submit" }, "Send"),
      ),
    ),
  );
  renderHead();
  renderMessages(true);
  renderTyping();
  renderComposerBar();
}

function renderHead(): void {
  const head = document.getElementById("conv-head");
  const c = app.open ? app.convs.get(app.open) : undefined;
  if (!head || !c) return;
  const on = c.peer !== undefined ? app.presence.get(c.peer) : undefined;
  replace(
    head,
    h("button", { class: "back", type: "button", "aria-label": "Back to conversations", onclick: closeConv }, "←"),
    h("div", { class: "title" }, h("h2", {}, c.name), h("span", { id: "conv-presence", class: "sub" }, on === undefined ? (c.kind === "group" ? "group" : "") : on ? "online" : "offline")),
    h("button", { id: "pin-btn", type: "button", "aria-pressed": String(c.pinned), onclick: () => saveSettings(c, { pinned: !c.pinned }) }, c.pinned ? "Unpin" : "Pin"),
    h("button", { id: "mute-btn", type: "button", "aria-pressed": String(muted(c)), onclick: () => saveSettings(c, { muted_until: muted(c) ? null : new Date(Date.now() + 365 * 864e5).toISOString() }) }, muted(c) ? "Unmute" : "Mute"),
    c.group ? h("button", { id: "members-btn", type: "button", onclick: () => membersDialog(c.group!) }, "Members") : null,
  );
}

async function saveSettings(c: Conv, change: Partial<Pick<Conv, "muted_until" | "archived" | "pinned">>): Promise<void> {
  const s = { muted_until: c.muted_until, archived: c.archived, pinned: c.pinned, ...change };
  try {
    await api().settings(c.id, s);
    Object.assign(c, s);
    renderList();
    renderHead();
  } catch (e) {
    toast("Could not change the settings: " + (e as Error).message);
  }
}

function systemText(m: Msg): string {
  const b = (m.body ?? {}) as { user?: string; role?: string; name?: string };
  switch (m.type) {
    case "group.created":
      return `${m.from} created the group “${b.name ?? ""}”`;
    case "member.added":
      return `${m.from} added ${b.user}${b.role === "admin" ? " as admin" : ""}`;
    case "member.role":
      return `${m.from} made ${b.user} ${b.role}`;
    case "member.removed":
      return `${m.from} removed ${b.user}`;
    case "member.left":
      return `${b.user ?? m.from} left`;
  }
  return m.type;
}

function myRole(conv: Conv): string | undefined {
  return conv.group ? app.groups.get(conv.group)?.members.find((x) => x.user === app.user)?.role : undefined;
}

// receipt says how far the others got with my last message.
function receipt(conv: Conv, th: Thread): { seq: number; text: string } | null {
  let mine: Msg | undefined;
  for (const m of th.msgs.values()) if (m.from === app.user && !isEvent(m) && (!mine || m.seq > mine.seq)) mine = m;
  if (!mine) return null;
  const readers = [...(app.readBy.get(conv.id) ?? new Map<string, number>())].filter(([u, s]) => u !== app.user && s >= mine!.seq).map(([u]) => u).sort();
  if (conv.kind === "direct") {
    if (readers.length) return { seq: mine.seq, text: "Seen" };
    if ((app.delivered.get(conv.id)?.get(conv.peer ?? "") ?? 0) >= mine.seq) return { seq: mine.seq, text: "Delivered" };
    return { seq: mine.seq, text: "Sent" };
  }
  return { seq: mine.seq, text: readers.length ? "Seen by " + readers.join(", ") : "Sent" };
}

function time(ts: string): string {
  const d = new Date(ts);
  return isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function renderMessages(scrollDown = false): void {
  const log = document.getElementById("messages");
  const c = app.open ? app.convs.get(app.open) : undefined;
  if (!log || !c) return;
  const th = thread(c.id);
  const atBottom = scrollDown || log.scrollHeight - log.scrollTop - log.clientHeight < 60;
  const oldHeight = log.scrollHeight;
  const oldTop = log.scrollTop;
  const firstBefore = log.firstElementChild;
  const r = receipt(c, th);
  const role = myRole(c);
  const nodes: HTMLElement[] = [];
  if (th.complete && th.loaded) nodes.push(cached("start", "start", () => h("li", { class: "system start" }, "Beginning of the conversation")));
  else if (th.loading) nodes.push(cached("loading", "loading", () => h("li", { class: "system" }, "Loading…")));
  for (const m of th.visible()) {
    const key = m.pending ? "c:" + m.cid : "s:" + m.seq;
    const rt = r && r.seq === m.seq ? r.text : "";
    const reply = m.reply_to !== undefined ? th.msgs.get(m.reply_to) : undefined;
    const sig = JSON.stringify([m.id, m.body, m.deleted, m.edited_at, m.reactions, m.failed, rt, role, reply?.body, reply?.deleted, app.reply?.seq === m.seq]);
    nodes.push(cached(key, sig, () => messageItem(c, m, rt, reply, role)));
  }
  let cur = log.firstChild;
  for (const n of nodes) {
    if (n === cur) {
      cur = cur.nextSibling;
      continue;
    }
    log.insertBefore(n, cur);
  }
  while (cur) {
    const next: ChildNode | null = cur.nextSibling;
    log.removeChild(cur);
    cur = next;
  }
  if (atBottom) log.scrollTop = log.scrollHeight;
  else if (firstBefore !== log.firstElementChild) log.scrollTop = oldTop + (log.scrollHeight - oldHeight);
  // Still room above: load more so that the log can scroll.
  if (th.loaded && !th.complete && log.scrollHeight <= log.clientHeight + 80) void loadOlder(c.id);
}

function cached(key: string, sig: string, make: () => HTMLElement): HTMLElement {
  const had = app.rendered.get(key);
  if (had && had.sig === sig) return had.el;
  const el = make();
  app.rendered.set(key, { sig, el });
  return el;
}

function withMentions(s: string): (string | HTMLElement)[] {
  const out: (string | HTMLElement)[] = [];
  let last = 0;
  for (const m of s.matchAll(/@([A-Za-z0-9._@-]+)/g)) {
    out.push(s.slice(last, m.index));
    out.push(h("span", { class: m[1] === app.user ? "mention me" : "mention" }, m[0]));
    last = (m.index ?? 0) + m[0].length;
  }
  out.push(s.slice(last));
  return out;
}

function messageItem(c: Conv, m: Msg, receiptText: string, reply: Msg | undefined, role: string | undefined): HTMLElement {
  if (isEvent(m)) return h("li", { class: "system", "data-seq": m.seq }, systemText(m));
  const mine = m.from === app.user;
  const canDelete = !m.pending && !m.deleted && (mine || role === "owner" || role === "admin");
  const act = (label: string, f: () => void, txt = label) => h("button", { type: "button", "aria-label": label, title: label, onclick: f }, txt);
  return h(
    "li",
    { class: "msg" + (mine ? " mine" : "") + (m.pending ? " pending" : ""), "data-seq": m.pending ? false : m.seq, id: m.pending ? false : "m-" + m.seq },
    !mine ? h("div", { class: "from" }, m.from) : null,
    m.reply_to !== undefined
      ? h("blockquote", { class: "quote" }, reply ? `${reply.from}: ${reply.deleted ? "message deleted" : text(reply.body)}` : `Reply to message ${m.reply_to}`)
      : null,
    m.deleted
      ? h("div", { class: "body deleted" }, "Message deleted")
      : text(m.body) !== "" ? h("div", { class: "body" }, withMentions(text(m.body))) : null,
    !m.deleted && m.attachments?.length ? h("div", { class: "atts" }, m.attachments.map(attachment)) : null,
    h(
      "div",
      { class: "meta" },
      h("time", { datetime: m.ts }, time(m.ts)),
      m.edited_at && !m.deleted ? h("span", { class: "edited" }, " · edited") : null,
      m.pending && !m.failed ? h("span", {}, " · sending…") : null,
      m.failed ? h("span", { class: "error" }, " · not sent: " + m.failed) : null,
      receiptText ? h("span", { class: "receipt", id: "receipt" }, " · " + receiptText) : null,
    ),
    !m.deleted && m.reactions && Object.keys(m.reactions).length
      ? h(
          "div",
          { class: "reactions" },
          Object.entries(m.reactions).map(([e, r]) =>
            h("button", { type: "button", class: "chip", "aria-pressed": String(r.me), "aria-label": `${e} ${r.count}${r.me ? ", yours: remove" : ": react"}`, onclick: () => react(c, m, e, !r.me) }, `${e} ${r.count}`),
          ),
        )
      : null,
    m.pending || m.deleted
      ? null
      : h(
          "div",
          { class: "actions" },
          act("Reply", () => startReply(m)),
          QUICK_EMOJI.map((e) => act("React with " + e, () => react(c, m, e, !m.reactions?.[e]?.me), e)),
          mine ? act("Edit", () => startEdit(m)) : null,
          canDelete ? act("Delete", () => del(c, m)) : null,
        ),
  );
}

const fileURLs = new Map<string, Promise<string>>();
function attachment(a: Attachment): HTMLElement {
  const image = a.content_type?.startsWith("image/") || a.thumbnail !== undefined;
  if (!image) {
    const link = h("a", { href: "#", class: "file" }, "📄 " + a.name);
    link.addEventListener("click", async (e) => {
      e.preventDefault();
      const url = await api().file(a.id);
      h("a", { href: url, download: a.name }).click();
    });
    return link;
  }
  // Reserve the image's box (at most 240 px) so that loading it moves nothing.
  const w = a.width && a.height ? Math.min(a.width, 240, Math.round((a.width * 240) / a.height)) : 0;
  const img = h("img", { alt: a.name, class: "thumb", width: w || false, height: w ? Math.round((a.height! * w) / a.width!) : false, "data-file": a.id });
  img.addEventListener("load", () => {
    const log = document.getElementById("messages");
    if (log && log.scrollHeight - log.scrollTop - log.clientHeight < 300) log.scrollTop = log.scrollHeight;
  });
  const id = a.thumbnail ?? a.id;
  if (!fileURLs.has(id)) fileURLs.set(id, api().file(id));
  fileURLs.get(id)!.then((u) => (img.src = u)).catch(() => (img.alt = a.name + " (not available)"));
  const full = h("a", { href: "#", class: "thumb-link", "aria-label": "Open image " + a.name }, img);
  full.addEventListener("click", async (e) => {
    e.preventDefault();
    window.open(await api().file(a.id), "_blank", "noopener");
  });
  return full;
}

function renderTyping(): void {
  const el = document.getElementById("typing");
  if (!el || !app.open) return;
  const now = Date.now();
  const who = [...(app.typing.get(app.open) ?? new Map<string, number>())].filter(([u, t]) => t > now && u !== app.user).map(([u]) => u);
  el.textContent = who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…` : `${who.join(", ")} are typing…`;
}

// ---- composing ----

function renderComposerBar(): void {
  const bar = document.getElementById("composer-bar");
  if (!bar) return;
  const cancel = h("button", { type: "button", class: "link", "aria-label": "Cancel", onclick: () => ((app.reply = app.editing = null), (app.files = []), renderComposerBar(), input().value = "") }, "✕");
  const parts: HTMLElement[] = [];
  if (app.editing) parts.push(h("div", { class: "bar" }, h("span", {}, "Editing your message"), cancel));
  else if (app.reply) parts.push(h("div", { class: "bar" }, h("span", {}, `Replying to ${app.reply.from}: ${text(app.reply.body).slice(0, 80)}`), cancel));
  if (app.files.length) {
    parts.push(
      h(
        "div",
        { class: "bar files" },
        app.files.map((f) => {
          const img = h("img", { alt: f.name, class: "preview-thumb", src: URL.createObjectURL(f) });
          return h("span", { class: "file-preview" }, img, f.name);
        }),
        h("button", { type: "button", class: "link", "aria-label": "Remove attachments", onclick: () => ((app.files = []), renderComposerBar()) }, "✕"),
      ),
    );
  }
  replace(bar, parts);
}

const input = () => document.getElementById("composer-input") as HTMLTextAreaElement;

function startReply(m: Msg): void {
  app.editing = null;
  app.reply = m;
  renderComposerBar();
  input().focus();
}

function startEdit(m: Msg): void {
  app.reply = null;
  app.editing = m;
  input().value = text(m.body);
  renderComposerBar();
  input().focus();
}

function sendTopic(c: Conv): string {
  return c.kind === "direct" ? topic("send/u/" + c.peer) : topic("send/g/" + c.group);
}

function react(c: Conv, m: Msg, emoji: string, add: boolean): void {
  publish(sendTopic(c), { op: add ? "react" : "unreact", cid: cid(), target: m.seq, emoji }, 1);
}

function del(c: Conv, m: Msg): void {
  if (!confirm("Delete this message for everyone?")) return;
  publish(sendTopic(c), { op: "delete", cid: cid(), target: m.seq }, 1);
}

async function submit(): Promise<void> {
  const c = app.open ? app.convs.get(app.open) : undefined;
  if (!c) return;
  const el = input();
  const body = el.value.trim();
  if (app.editing) {
    if (body) publish(sendTopic(c), { op: "edit", cid: cid(), target: app.editing.seq, body }, 1);
    app.editing = null;
    el.value = "";
    renderComposerBar();
    return;
  }
  if (!body && app.files.length === 0) return;
  const files = app.files;
  const payload: Record<string, unknown> = { cid: cid(), body };
  if (app.reply) payload.reply_to = app.reply.seq;
  const members = c.group ? app.groups.get(c.group)?.members.map((x) => x.user) ?? [] : [];
  const mentions = [...new Set([...body.matchAll(/@([A-Za-z0-9._@-]+)/g)].map((x) => x[1]))].filter((u) => u !== app.user && (c.kind === "group" ? members.includes(u) : u === c.peer));
  if (mentions.length) payload.mentions = mentions;
  el.value = "";
  app.lastTyping = 0; // the next keystroke announces typing again at once
  app.reply = null;
  app.files = [];
  renderComposerBar();
  closeMentions();
  const th = thread(c.id);
  const pending: Msg = { conv: c.id, seq: 0, cid: payload.cid as string, from: app.user, ts: new Date().toISOString(), type: "text", body, pending: true, reply_to: payload.reply_to as number | undefined, attachments: files.map((f) => ({ id: "", name: f.name })) };
  th.pending.set(pending.cid!, pending);
  renderMessages(true);
  try {
    if (files.length) {
      const ups = await Promise.all(files.map((f) => api().upload(f)));
      payload.attachments = ups.map((u, i) => ({ id: u.id, name: files[i].name }));
    }
  } catch (e) {
    pending.failed = e instanceof ApiError && e.status === 404 ? "this server does not store files" : (e as Error).message;
    renderMessages();
    return;
  }
  publish(sendTopic(c), payload, 1, (e) => {
    pending.failed = e.message;
    renderMessages();
  });
}

function composerKey(e: KeyboardEvent): void {
  const list = document.getElementById("mention-list")!;
  if (!list.hidden) {
    const opts = [...list.querySelectorAll<HTMLElement>("[role=option]")];
    let i = opts.findIndex((o) => o.getAttribute("aria-selected") === "true");
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      i = (i + (e.key === "ArrowDown" ? 1 : opts.length - 1)) % opts.length;
      opts.forEach((o, j) => o.setAttribute("aria-selected", String(i === j)));
      input().setAttribute("aria-activedescendant", opts[i].id);
      return;
    }
    if (e.key === "Enter" || e.key === "Tab") {
      e.preventDefault();
      chooseMention(opts[Math.max(i, 0)].dataset.user!);
      return;
    }
    if (e.key === "Escape") {
      e.preventDefault();
      closeMentions();
      return;
    }
  }
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    void submit();
  } else if (e.key === "Escape" && (app.reply || app.editing)) {
    app.reply = app.editing = null;
    input().value = "";
    renderComposerBar();
  } else if (e.key === "ArrowUp" && input().value === "") {
    // Up in an empty composer edits one's last message.
    const th = app.open ? app.threads.get(app.open) : undefined;
    const last = th?.visible().filter((m) => m.from === app.user && !m.pending && !m.deleted && !isEvent(m)).pop();
    if (last) {
      e.preventDefault();
      startEdit(last);
    }
  }
}

function composerInput(): void {
  const c = app.open ? app.convs.get(app.open) : undefined;
  const el = input();
  if (c && el.value.trim() && Date.now() - app.lastTyping > TYPING_EVERY && app.online && !app.editing) {
    app.lastTyping = Date.now();
    publish(sendTopic(c), { type: "typing", body: true, ephemeral: true }, 0);
  }
  const before = el.value.slice(0, el.selectionStart ?? el.value.length);
  const m = /(?:^|\s)@([A-Za-z0-9._@-]*)$/.exec(before);
  const members = c?.group ? app.groups.get(c.group)?.members.map((x) => x.user) ?? [] : [];
  const hits = m ? members.filter((u) => u !== app.user && u.toLowerCase().startsWith(m[1].toLowerCase())).slice(0, 6) : [];
  if (hits.length === 0) return closeMentions();
  const list = document.getElementById("mention-list")!;
  replace(
    list,
    hits.map((u, i) => {
      const li = h("li", { role: "option", id: "mention-" + i, "data-user": u, "aria-selected": String(i === 0) }, "@" + u);
      li.addEventListener("mousedown", (e) => (e.preventDefault(), chooseMention(u)));
      return li;
    }),
  );
  list.hidden = false;
  el.setAttribute("aria-expanded", "true");
  el.setAttribute("aria-activedescendant", "mention-0");
}

function closeMentions(): void {
  const list = document.getElementById("mention-list");
  if (list) list.hidden = true;
  input()?.setAttribute("aria-expanded", "false");
  input()?.removeAttribute("aria-activedescendant");
}

function chooseMention(user: string): void {
  const el = input();
  const pos = el.selectionStart ?? el.value.length;
  const before = el.value.slice(0, pos).replace(/@([A-Za-z0-9._@-]*)$/, "@" + user + " ");
  el.value = before + el.value.slice(pos);
  el.selectionStart = el.selectionEnd = before.length;
  closeMentions();
  el.focus();
}

// ---- dialogs ----

function dialog(title: string, id: string, body: (close: () => void) => Child[]): void {
  const d = h("dialog", { id, "aria-labelledby": id + "-title" });
  const close = () => {
    d.close();
    d.remove();
  };
  d.addEventListener("close", () => d.remove());
  replace(d, h("h2", { id: id + "-title" }, title), body(close), h("button", { type: "button", class: "link close", onclick: close }, "Close"));
  document.body.appendChild(d);
  d.showModal();
}

function newChatDialog(): void {
  dialog("New chat", "new-chat-dialog", (close) => [
    h(
      "form",
      {
        onsubmit: (e: Event) => {
          e.preventDefault();
          const peer = (document.getElementById("new-chat-user") as HTMLInputElement).value.trim();
          if (!peer || peer === app.user) return;
          const id = dmId(app.user, peer);
          convFor(id);
          close();
          openConv(id);
        },
      },
      h("label", { for: "new-chat-user" }, "User name"),
      h("input", { id: "new-chat-user", required: true, autocomplete: "off", pattern: "[A-Za-z0-9._@\\-]+", maxlength: 64 }),
      h("button", { type: "submit", id: "new-chat-open" }, "Open chat"),
    ),
  ]);
}

function newGroupDialog(): void {
  const err = h("p", { class: "error", role: "alert" });
  dialog("New group", "new-group-dialog", (close) => [
    h(
      "form",
      {
        onsubmit: async (e: Event) => {
          e.preventDefault();
          const name = (document.getElementById("group-name") as HTMLInputElement).value.trim();
          const members = (document.getElementById("group-members") as HTMLInputElement).value.split(/[\s,]+/).filter(Boolean);
          try {
            const g = await api().createGroup({ name, members });
            app.groups.set(g.id, g);
            const c = convFor(g.conv);
            c.name = g.name;
            close();
            openConv(g.conv);
          } catch (e) {
            err.textContent = (e as Error).message;
          }
        },
      },
      h("label", { for: "group-name" }, "Name"),
      h("input", { id: "group-name", required: true, maxlength: 200 }),
      h("label", { for: "group-members" }, "Members (user names, separated by commas)"),
      h("input", { id: "group-members", autocomplete: "off" }),
      h("button", { type: "submit", id: "group-create" }, "Create group"),
      err,
    ),
  ]);
}

async function membersDialog(groupId: string): Promise<void> {
  const g = await loadGroup(groupId);
  if (!g) return toast("You are not a member of this group any more.");
  const me = g.members.find((m) => m.user === app.user)?.role ?? "member";
  const err = h("p", { class: "error", role: "alert" });
  const run = (f: () => Promise<unknown>, close: () => void) => async () => {
    try {
      await f();
      close();
      void membersDialog(groupId);
    } catch (e) {
      err.textContent = (e as Error).message;
    }
  };
  dialog(`Members of ${g.name}`, "members-dialog", (close) => [
    h(
      "ul",
      { class: "members" },
      g.members.map((m) =>
        h(
          "li",
          { "data-user": m.user },
          h("span", {}, m.user + (m.user === app.user ? " (you)" : "")),
          h("span", { class: "role" }, m.role),
          me === "owner" && m.role !== "owner"
            ? h("button", { type: "button", onclick: run(() => api().setMember(groupId, m.user, m.role === "admin" ? "member" : "admin"), close) }, m.role === "admin" ? "Make member" : "Make admin")
            : null,
          m.user !== app.user && m.role !== "owner" && (me === "owner" || (me === "admin" && m.role === "member"))
            ? h("button", { type: "button", "aria-label": "Remove " + m.user, onclick: run(() => api().removeMember(groupId, m.user), close) }, "Remove")
            : null,
        ),
      ),
    ),
    me !== "member"
      ? h(
          "form",
          {
            class: "inline",
            onsubmit: (e: Event) => {
              e.preventDefault();
              const u = (document.getElementById("add-member") as HTMLInputElement).value.trim();
              void run(() => api().setMember(groupId, u, "member"), close)();
            },
          },
          h("label", { for: "add-member" }, "Add a member"),
          h("input", { id: "add-member", required: true, autocomplete: "off" }),
          h("button", { type: "submit", id: "add-member-btn" }, "Add"),
        )
      : null,
    me !== "owner" ? h("button", { type: "button", id: "leave-group", onclick: run(() => api().removeMember(groupId, app.user), close) }, "Leave group") : null,
    err,
  ]);
}

let toastTimer = 0;
function toast(msg: string): void {
  const t = document.getElementById("toast");
  if (!t) return;
  t.textContent = msg;
  t.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => t.classList.remove("show"), 6000);
}

void start().catch((e) => renderLogin(String(e)));
