//! Resume (PROTOCOL.md §8): replays of the conversation log, for a socket
//! that joins with `afterSeq` and for `sync` after a reconnect. A replayed
//! event is exactly what was (or would have been) sent live, with its
//! number; what the reader may not see (a read receipt of someone in a block
//! with them) is replayed as `seq-skipped`, so the numbers stay without holes.

use std::collections::{HashMap, HashSet};

use chrono::Duration as TimeDelta;
use tracing::instrument;

use super::{Messaging, ServiceResult};
use crate::auth::User;
use crate::domain::{
    Change, ConversationId, LogEntry, LogPage, SyncCommand, UserId, format_time, now_millis,
};
use crate::protocol::{
    ConversationAck, ConversationCreated, ConversationReplay, MessageDeleted, ReadReceipt,
    ReplayedEvent, SeqMark, SyncAck, ev,
};

/// Most events a `join-conversation` replays: each is a packet of its own in
/// the socket's outgoing queue (128 packets), so a longer gap continues with
/// `sync`, whose answer is one packet.
pub(super) const JOIN_REPLAY_MAX: u32 = 64;
/// Most events one conversation contributes to a `sync` answer.
const SYNC_PER_CONVERSATION: u32 = 200;
/// Most events in one `sync` answer, all conversations together.
const SYNC_TOTAL: u32 = 1000;
/// How far back `conversationsAdded` looks when the client gives no `since`.
const ADDED_DEFAULT_WINDOW_DAYS: i64 = 30;
/// Most conversations in `conversationsAdded`.
const ADDED_MAX: u32 = 100;

impl Messaging {
    /// `join-conversation` with `afterSeq`, once the socket is in the room:
    /// every event after `after`, in order, to this socket (at most
    /// `JOIN_REPLAY_MAX`; the ack says whether more follow), or nothing and
    /// `recovered: false` when the gap is older than the log still held.
    pub(super) async fn replay_to_socket(
        &self,
        user: &User,
        socket_id: &str,
        conversation: ConversationId,
        after: u64,
    ) -> ServiceResult<ConversationAck> {
        let page = self
            .store()
            .log
            .log_after(conversation, after, JOIN_REPLAY_MAX)
            .await?
            .ok_or(super::ServiceError::NotFound("conversation"))?;
        let mut ack = ConversationAck::plain(conversation);
        ack.latest_seq = Some(page.latest_seq);
        if after < page.floor {
            ack.recovered = Some(false);
            ack.has_more = Some(false);
            return Ok(ack);
        }
        let hidden = self.in_block_with(&user.id).await;
        ack.recovered = Some(true);
        ack.has_more = Some(page.has_more);
        for entry in page.entries {
            let event = replayed(conversation, entry, &hidden);
            self.fanout()
                .emit_to_socket(socket_id, event.kind, &event.data);
        }
        Ok(ack)
    }

    /// `sync`: for each named conversation, what happened after the number
    /// the client gives (or `recovered: false`), the conversations the user
    /// was added to meanwhile, and the unread totals, recounted.
    #[instrument(skip_all, fields(user.id = %user.id, conversations = command.conversations.len()))]
    pub async fn sync(&self, user: &User, command: SyncCommand) -> ServiceResult<SyncAck> {
        let synced_at = now_millis();
        let hidden = self.in_block_with(&user.id).await;
        let named: HashSet<ConversationId> =
            command.conversations.iter().map(|(id, _)| *id).collect();
        // Which named conversations are the caller's, then where each log
        // stands, in one query: a client resuming many conversations mostly
        // finds nothing new in most, and those cost no read of the log.
        let mut theirs = Vec::with_capacity(command.conversations.len());
        for (conversation, _) in &command.conversations {
            if self
                .store()
                .participants
                .is_participant(*conversation, &user.id)
                .await?
            {
                theirs.push(*conversation);
            }
        }
        let latest = self.store().log.latest_seqs(&theirs).await?;
        let mut budget = SYNC_TOTAL;
        let mut conversations = HashMap::new();
        for (conversation, after) in command.conversations {
            let replay = match latest.get(&conversation) {
                // Not the caller's, or no such conversation: the same answer.
                None => ConversationReplay::NotRecovered { recovered: false },
                // Nothing after `after` (the floor is never above the latest).
                Some(&latest_seq) if after >= latest_seq => ConversationReplay::Replayed {
                    events: Vec::new(),
                    has_more: false,
                    latest_seq,
                },
                // The call's budget is spent: nothing replayed, more to come.
                Some(_) if budget == 0 => ConversationReplay::Replayed {
                    events: Vec::new(),
                    has_more: true,
                    latest_seq: after,
                },
                Some(_) => {
                    let limit = budget.min(SYNC_PER_CONVERSATION);
                    match self
                        .store()
                        .log
                        .log_after(conversation, after, limit)
                        .await?
                    {
                        Some(page) if after >= page.floor => {
                            budget = budget.saturating_sub(
                                u32::try_from(page.entries.len()).unwrap_or(u32::MAX),
                            );
                            replay_of(conversation, page, &hidden)
                        }
                        _ => ConversationReplay::NotRecovered { recovered: false },
                    }
                }
            };
            conversations.insert(conversation, replay);
        }
        let since = command
            .since
            .unwrap_or_else(|| synced_at - TimeDelta::days(ADDED_DEFAULT_WINDOW_DAYS));
        // Read past the named ones, so that up to ADDED_MAX others are listed.
        let read = ADDED_MAX + u32::try_from(named.len()).unwrap_or(u32::MAX) + 1;
        let mut conversations_added: Vec<_> = self
            .store()
            .log
            .conversations_since(&user.id, since, read)
            .await?
            .into_iter()
            .filter(|c| !named.contains(&c.id))
            .collect();
        let conversations_added_has_more = conversations_added.len() > ADDED_MAX as usize;
        conversations_added.truncate(ADDED_MAX as usize);
        let unread = self.unread(user).await?;
        Ok(SyncAck {
            conversations,
            conversations_added,
            conversations_added_has_more,
            unread,
            synced_at: format_time(&synced_at),
        })
    }
}

fn replay_of(
    conversation: ConversationId,
    page: LogPage,
    hidden: &HashSet<UserId>,
) -> ConversationReplay {
    ConversationReplay::Replayed {
        events: page
            .entries
            .into_iter()
            .map(|entry| replayed(conversation, entry, hidden))
            .collect(),
        has_more: page.has_more,
        latest_seq: page.latest_seq,
    }
}

/// One log entry as the event it was sent as live, for a reader who may not
/// see what `hidden` users do.
fn replayed(
    conversation: ConversationId,
    entry: LogEntry,
    hidden: &HashSet<UserId>,
) -> ReplayedEvent {
    let seq = entry.seq;
    let skipped = || ReplayedEvent {
        seq,
        kind: ev::SEQ_SKIPPED,
        data: json(&SeqMark {
            conversation_id: conversation,
            seq,
        }),
    };
    match entry.change {
        Change::Created(conversation) => ReplayedEvent {
            seq,
            kind: ev::CONVERSATION_CREATED,
            data: json(&ConversationCreated { conversation, seq }),
        },
        Change::Message(message) => ReplayedEvent {
            seq,
            kind: ev::NEW_MESSAGE,
            data: json(&message),
        },
        Change::Read { user, .. } if hidden.contains(&user) => skipped(),
        Change::Read { user, message, at } => ReplayedEvent {
            seq,
            kind: ev::MESSAGE_READ,
            data: json(&ReadReceipt {
                conversation_id: conversation,
                message_id: Some(message),
                user_id: Some(user),
                read_at: Some(format_time(&at)),
                seq: Some(seq),
            }),
        },
        Change::Deleted { message } => ReplayedEvent {
            seq,
            kind: ev::MESSAGE_DELETED,
            data: json(&MessageDeleted {
                conversation_id: conversation,
                message_id: message,
                seq,
            }),
        },
        Change::Skipped => skipped(),
    }
}

/// Every payload here is a plain struct of strings and numbers.
fn json<T: serde::Serialize>(payload: &T) -> serde_json::Value {
    serde_json::to_value(payload).unwrap_or(serde_json::Value::Null)
}
