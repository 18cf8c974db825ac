// The REST API (docs/api.md), authenticated with the token.

import type { Attachment, Conv, Group, Msg } from "./model";

export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}

async function call<T>(method: string, path: string, token: string | null, body?: BodyInit | object, type = "application/json"): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  let payload: BodyInit | undefined;
  if (body instanceof Blob) {
    payload = body;
    headers["Content-Type"] = type;
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, { method, headers, body: payload });
  const text = await res.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: a proxy's error page, say
  }
  if (!res.ok) {
    const e = (data as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(res.status, e?.code ?? "http_" + res.status, e?.message ?? res.statusText);
  }
  return data as T;
}

export interface Page { messages: Msg[]; next: string | null }
export interface SyncPage { conversations: (Conv & { messages?: Msg[] })[]; next: string; more: boolean }
// Receipts: the other members' read markers and, in direct conversations,
// delivered seqs (GET /v1/conversations/{conv}/receipts); hidden in large
// groups.
export interface Receipts { conv: string; receipts: { user: string; read_seq: number; delivered_seq?: number }[]; hidden?: boolean }
export interface Upload { id: string; size: number; content_type: string; width?: number; height?: number; thumbnail?: string }

export function devLogin(user: string): Promise<{ user: string; token: string }> {
  return call("POST", "/dev/login", null, { user });
}

const enc = encodeURIComponent;

export class Api {
  constructor(public token: string) {}

  sync(since: string | null): Promise<SyncPage> {
    return call("GET", "/v1/sync?limit=100" + (since ? "&since=" + enc(since) : ""), this.token);
  }
  history(conv: string, q: { before?: number; after?: number; limit?: number }): Promise<Page> {
    const p = new URLSearchParams();
    if (q.before !== undefined) p.set("before", String(q.before));
    if (q.after !== undefined) p.set("after", String(q.after));
    p.set("limit", String(q.limit ?? 50));
    return call("GET", `/v1/conversations/${enc(conv)}/messages?${p}`, this.token);
  }
  message(conv: string, seq: number): Promise<Msg> {
    return call("GET", `/v1/conversations/${enc(conv)}/messages/${seq}`, this.token);
  }
  receipts(conv: string): Promise<Receipts> {
    return call("GET", `/v1/conversations/${enc(conv)}/receipts`, this.token);
  }
  settings(conv: string, s: { muted_until: string | null; archived: boolean; pinned: boolean }): Promise<unknown> {
    return call("PUT", `/v1/conversations/${enc(conv)}/settings`, this.token, s);
  }
  createGroup(req: { id?: string; name: string; members: string[] }): Promise<Group> {
    return call("POST", "/v1/groups", this.token, req);
  }
  group(id: string): Promise<Group> {
    return call("GET", `/v1/groups/${enc(id)}`, this.token);
  }
  setMember(group: string, user: string, role: string): Promise<unknown> {
    return call("PUT", `/v1/groups/${enc(group)}/members/${enc(user)}`, this.token, { role });
  }
  removeMember(group: string, user: string): Promise<unknown> {
    return call("DELETE", `/v1/groups/${enc(group)}/members/${enc(user)}`, this.token);
  }
  upload(file: File): Promise<Upload> {
    return call("POST", "/v1/uploads", this.token, file, file.type || "application/octet-stream");
  }
  // file fetches a file with the token and returns a blob: URL for it.
  async file(id: string): Promise<string> {
    const res = await fetch(`/v1/files/${enc(id)}`, { headers: { Authorization: "Bearer " + this.token } });
    if (!res.ok) throw new ApiError(res.status, "http_" + res.status, res.statusText);
    return URL.createObjectURL(await res.blob());
  }
}

export type { Attachment };
