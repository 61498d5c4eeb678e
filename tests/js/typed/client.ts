// A client typed with the generated contract (docs/client/parloir.d.ts).
// `tsc --noEmit -p typed` must accept it: the right payloads, acks and event
// handlers compile, and every `@ts-expect-error` below must really be an
// error, so the check fails if the types ever loosen to `any`.
import { io, type Socket } from "socket.io-client";
import type {
  ClientToServerEvents,
  Message,
  ServerToClientEvents,
} from "../../../docs/client/parloir.js";

const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(
  "http://127.0.0.1:3000/messaging",
  { auth: { token: "a JWT" }, autoConnect: false },
);

socket.on("new-message", (message: Message) => {
  const sentAt: string = message.createdAt;
  const attachmentTypes: string[] = message.attachments.map((a) => a.type);
  void sentAt;
  void attachmentTypes;
});
socket.on("unread-count-updated", (update) => {
  const total: number = update.totalUnread;
  void total;
});
socket.on("user-typing", (typing) => {
  const who: string = typing.userName;
  void who;
});

socket.emit("send-message", { conversationId: "c", content: "hi" }, (ack) => {
  if (ack.ok) {
    const id: string = ack.data.id;
    void id;
  } else {
    const code: "VALIDATION" | "NOT_FOUND" | "FORBIDDEN" | "RATE_LIMITED" | "UNAVAILABLE" | "UNKNOWN_OUTCOME" | "TOKEN_EXPIRED" | "UNAUTHORIZED" | "INTERNAL" =
      ack.error.code;
    void code;
  }
});
socket.emit("join-conversation", { conversationId: "c", limit: 20 }, (ack) => {
  if (ack.ok) {
    const conversation: string = ack.data.conversationId;
    void conversation;
  }
});
socket.emit("get-presence", { userIds: ["bob"] }, (ack) => {
  if (ack.ok) {
    const online: boolean | undefined = ack.data.online["bob"];
    void online;
  }
});

// @ts-expect-error a message names its conversation
socket.emit("send-message", { content: "hi" }, () => {});
// @ts-expect-error there is no such client event
socket.emit("send-messages", { conversationId: "c" }, () => {});
// @ts-expect-error presence takes a list of ids
socket.emit("get-presence", { userIds: "bob" }, () => {});
// @ts-expect-error a new message carries a Message, not a string
socket.on("new-message", (message: string) => void message);
socket.emit("mark-as-read", { messageId: "m" }, (ack) => {
  // @ts-expect-error data exists only on a successful ack
  void ack.data;
});
