// Compiled (tsc --noEmit --strict) against the types openapi-typescript
// generates from docs/openapi.yaml into parley.ts: what an app written
// against the generated types uses must keep compiling.
import type { components, operations, paths } from "./parley";

type Message = components["schemas"]["Message"];
type Group = components["schemas"]["Group"];
type MessagesPage =
  paths["/v1/conversations/{conv}/messages"]["get"]["responses"]["200"]["content"]["application/json"];
type GroupCreated = operations["createGroup"]["responses"]["201"]["content"]["application/json"];
type ErrorBody = components["schemas"]["Error"];

const message: Message = {
  conv: "dm:alice:bob",
  seq: 1,
  id: "06h1o6klqfg24iu45g1kv3c7q4",
  from: "alice",
  ts: "2026-11-27T08:23:54.120Z",
  type: "text",
  body: "hi bob",
};
const page: MessagesPage = { messages: [message], next: null };
const group: GroupCreated = { id: "team", conv: "g:team", members: [{ user: "alice", role: "owner" }] };
const sameGroup: Group = group;
const refused: ErrorBody = { error: { code: "not_member", message: "not a member of g:team" } };
const send: operations["sendToConversation"]["requestBody"]["content"]["application/json"] = {
  body: "hello team",
  ephemeral: false,
};

export const checked = [page, sameGroup, refused, send];
