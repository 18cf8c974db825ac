// Parley's wire types (docs/protocol.md, docs/api.md) and the client's
// per-conversation message store.

export interface Attachment {
  id: string;
  name: string;
  size?: number;
  content_type?: string;
  width?: number;
  height?: number;
  thumbnail?: string;
}

export interface Msg {
  conv: string;
  seq: number;
  id?: string;
  cid?: string;
  from: string;
  ts: string;
  type: string;
  body: unknown;
  reply_to?: number;
  mentions?: string[];
  target?: number;
  emoji?: string;
  edited_at?: string | null;
  deleted?: boolean;
  reactions?: Record<string, { count: number; me: boolean }>;
  attachments?: Attachment[];
  // Client-side only: a send not yet echoed, or refused.
  pending?: boolean;
  failed?: string;
}

export interface Conv {
  id: string;
  kind: "direct" | "group";
  peer?: string;
  group?: string;
  name: string;
  last_seq: number;
  read_seq: number;
  unread: number;
  mentions: number;
  muted_until: string | null;
  archived: boolean;
  pinned: boolean;
  last_message: Msg | null;
}

export interface Member { user: string; role: "owner" | "admin" | "member" }
export interface Group { id: string; conv: string; name: string; created_by: string; members: Member[] }

// isChange says whether m is a change event (edit, delete, reaction).
export function isChange(m: Msg): boolean {
  return m.type.startsWith("message.") || m.type.startsWith("reaction.");
}

// isEvent says whether m is not a message people wrote: a change or a
// membership event. Events do not count as unread.
export function isEvent(m: Msg): boolean {
  return isChange(m) || m.type.startsWith("group.") || m.type.startsWith("member.") || m.type.startsWith("system.");
}

// text returns the text of a body: a string, or {"text": ...}.
export function text(body: unknown): string {
  if (typeof body === "string") return body;
  if (body && typeof body === "object" && typeof (body as { text?: unknown }).text === "string") {
    return (body as { text: string }).text;
  }
  return body === null || body === undefined ? "" : JSON.stringify(body);
}

export function dmId(a: string, b: string): string {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

// Thread holds the loaded messages of one conversation by seq, and the
// sends still waiting for their echo by cid.
export class Thread {
  msgs = new Map<number, Msg>();
  pending = new Map<string, Msg>();
  loaded = false; // the latest page was read from the REST API
  complete = false; // nothing older to load
  loading = false;

  get newest(): number {
    let n = 0;
    for (const s of this.msgs.keys()) if (s > n) n = s;
    return n;
  }
  get oldest(): number {
    let n = Infinity;
    for (const s of this.msgs.keys()) if (s < n) n = s;
    return n === Infinity ? 0 : n;
  }

  // add stores m unless its seq is known; it says whether m was new.
  add(m: Msg): boolean {
    if (m.cid) this.pending.delete(m.cid);
    const had = this.msgs.get(m.seq);
    if (had && had.id === m.id) return false;
    this.msgs.set(m.seq, m);
    return true;
  }

  // apply applies a live change event to its target; it returns the
  // target's seq when its reactions need to be read again.
  apply(ev: Msg): number | null {
    const t = ev.target !== undefined ? this.msgs.get(ev.target) : undefined;
    if (!t) return null;
    switch (ev.type) {
      case "message.edited":
        t.body = ev.body;
        t.edited_at = ev.ts;
        return null;
      case "message.deleted":
        t.deleted = true;
        t.body = null;
        t.attachments = [];
        t.reactions = {};
        return null;
      default:
        return t.seq; // reactions: counts and "me" come from the server
    }
  }

  // visible returns the messages to show, in seq order, then pending sends.
  visible(): Msg[] {
    const list = [...this.msgs.values()].filter((m) => !isChange(m)).sort((a, b) => a.seq - b.seq);
    return list.concat([...this.pending.values()]);
  }
}
