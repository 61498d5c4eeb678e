// An app written against @parloir/client (clients/js/src). `tsc --noEmit -p
// typed` type-checks the package itself and this use of it; every
// `@ts-expect-error` must really be an error, so the check fails if the
// package's events or calls ever loosen to `any`.
import { io } from "socket.io-client";
import {
  createClient,
  ParloirError,
  type ClientState,
  type Message,
  type ParloirSocket,
} from "../../../clients/js/src/index.js";

const socket: ParloirSocket = io("http://127.0.0.1:3000/messaging", {
  auth: { token: "a JWT" },
  autoConnect: false,
});
const saved: ClientState = { conversations: { c: 4 }, since: "2026-12-01T10:00:00.000Z" };
const client = createClient(socket, { gapMs: 1000, restore: saved });

client.on("new-message", (message: Message, meta) => {
  const seq: number = message.seq;
  const replayed: boolean = meta.replayed;
  void seq;
  void replayed;
});
client.on("message-deleted", (deleted) => void deleted.messageId);
client.on("message-read", (read) => void read.readAt);
client.on("conversation-created", (conversation) => void conversation.participantIds);
client.on("conversation-history", (history) => void history.messages.length);
client.on("user-typing", (typing) => void typing.userName);
client.on("reload", ({ conversationId }) => void conversationId);
client.on("unread", (report) => void report.totalUnread);
client.on("resumed", ({ syncedAt }) => void syncedAt);

async function use(): Promise<void> {
  const joined = await client.join("c", { limit: 30 });
  const resumed: boolean = joined.resumed;
  void resumed;
  try {
    const stored: Message = await client.send("c", "hi", { attachments: [{ url: "https://x.test/a.jpg", type: "image/jpeg" }] });
    void stored.id;
  } catch (error) {
    if (error instanceof ParloirError) void error.clientMessageId;
  }
  const read = await client.request("mark-as-read", { messageId: "m" });
  const at: string | null = read.readAt;
  void at;
  const state: ClientState = client.state();
  void state;

  // @ts-expect-error a message names no conversation as a number
  await client.send(7, "hi");
  // @ts-expect-error mark-as-read takes a message id
  await client.request("mark-as-read", { conversationId: "c" });
  // @ts-expect-error the ack of get-presence has no messages
  void (await client.request("get-presence", { userIds: ["bob"] })).messages;
}
void use;

// @ts-expect-error seq-skipped is the client's business, never the app's
client.on("seq-skipped", () => {});
// @ts-expect-error a deletion carries no content
client.on("message-deleted", (deleted) => void deleted.content);
// @ts-expect-error there is no such event
client.on("new-messages", () => {});
