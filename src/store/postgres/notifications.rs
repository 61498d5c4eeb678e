//! [`Notifications`] on Postgres. Claims are `UPDATE … WHERE id IN (SELECT
//! … FOR UPDATE SKIP LOCKED)`: concurrent workers on several nodes each take
//! different rows without waiting for one another, and a row whose lease
//! ran out is claimable again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::rows::{ContactRow, DueRow, OutboxRow, count};
use super::super::{Backlog, Notifications, StoreError};
use super::PostgresStore;
use crate::domain::{
    Contact, ContactClaims, DueNotification, Gathered, MessageId, NotificationId, OutboxEntry,
    Settlement, UserId,
};
use std::collections::HashMap;

#[async_trait]
impl Notifications for PostgresStore {
    async fn remember_contact(
        &self,
        user: &UserId,
        email: Option<&str>,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // A token without a claim keeps what an earlier token said; an
        // unchanged contact writes nothing.
        sqlx::query(
            "INSERT INTO user_contacts (user_id, email, name, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE \
                SET email = COALESCE(EXCLUDED.email, user_contacts.email), \
                    name = COALESCE(EXCLUDED.name, user_contacts.name), \
                    updated_at = EXCLUDED.updated_at \
             WHERE user_contacts.email IS DISTINCT FROM COALESCE(EXCLUDED.email, user_contacts.email) \
                OR user_contacts.name IS DISTINCT FROM COALESCE(EXCLUDED.name, user_contacts.name)",
        )
        .bind(user.as_str())
        .bind(email)
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("remember_contact", e))?;
        Ok(())
    }

    async fn remember_contacts(
        &self,
        contacts: &[ContactClaims],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // One row per user (ON CONFLICT may not touch a row twice): the last
        // claims named win.
        let mut last: HashMap<&str, &ContactClaims> = HashMap::new();
        for c in contacts {
            last.insert(c.user.as_str(), c);
        }
        if last.is_empty() {
            return Ok(());
        }
        let users: Vec<&str> = last.keys().copied().collect();
        let emails: Vec<Option<&str>> = users.iter().map(|u| last[u].email.as_deref()).collect();
        let names: Vec<Option<&str>> = users.iter().map(|u| last[u].name.as_deref()).collect();
        // As `remember_contact`, for every row at once.
        sqlx::query(
            "INSERT INTO user_contacts (user_id, email, name, updated_at) \
             SELECT u, e, n, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(u, e, n) \
             ON CONFLICT (user_id) DO UPDATE \
                SET email = COALESCE(EXCLUDED.email, user_contacts.email), \
                    name = COALESCE(EXCLUDED.name, user_contacts.name), \
                    updated_at = EXCLUDED.updated_at \
             WHERE user_contacts.email IS DISTINCT FROM COALESCE(EXCLUDED.email, user_contacts.email) \
                OR user_contacts.name IS DISTINCT FROM COALESCE(EXCLUDED.name, user_contacts.name)",
        )
        .bind(&users)
        .bind(&emails)
        .bind(&names)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("remember_contacts", e))?;
        Ok(())
    }

    async fn set_email_notifications(
        &self,
        user: &UserId,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_contacts (user_id, email_enabled, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE \
                SET email_enabled = EXCLUDED.email_enabled, updated_at = EXCLUDED.updated_at",
        )
        .bind(user.as_str())
        .bind(enabled)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("set_email_notifications", e))?;
        Ok(())
    }

    async fn contact(&self, user: &UserId) -> Result<Option<Contact>, StoreError> {
        let row: Option<ContactRow> = sqlx::query_as(
            "SELECT email, name, email_enabled FROM user_contacts WHERE user_id = $1",
        )
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("contact", e))?;
        Ok(row.map(Contact::from))
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows: Vec<OutboxRow<Uuid>> = sqlx::query_as(
            "UPDATE notification_outbox SET lease_until = $2 \
             WHERE message_id IN ( \
                SELECT message_id FROM notification_outbox \
                WHERE lease_until IS NULL OR lease_until <= $1 \
                ORDER BY message_id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING message_id, conversation_id, sender_id",
        )
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("claim_outbox", e))?;
        let mut entries = rows
            .into_iter()
            .map(OutboxEntry::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|e| e.message_id);
        Ok(entries)
    }

    async fn gather_notifications(
        &self,
        gathered: &[Gathered],
        done: &[MessageId],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const OP: &str = "gather_notifications";
        let err = |e| StoreError::from_sqlx(OP, e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        if !gathered.is_empty() {
            let ids: Vec<Uuid> = gathered.iter().map(|g| g.id.as_uuid()).collect();
            let channels: Vec<&str> = gathered.iter().map(|g| g.channel.as_str()).collect();
            let recipients: Vec<&str> = gathered.iter().map(|g| g.recipient_id.as_str()).collect();
            let conversations: Vec<Uuid> = gathered
                .iter()
                .map(|g| g.conversation_id.as_uuid())
                .collect();
            let latest: Vec<Uuid> = gathered
                .iter()
                .map(|g| g.latest_message_id.as_uuid())
                .collect();
            let counts: Vec<i32> = gathered
                .iter()
                .map(|g| i32::try_from(g.message_count).unwrap_or(i32::MAX))
                .collect();
            let due: Vec<DateTime<Utc>> = gathered.iter().map(|g| g.due_at).collect();
            // The caller gathers one row per recipient, conversation and
            // channel, so no two input rows meet the same pending row.
            sqlx::query(
                "INSERT INTO notifications (id, channel, recipient_id, conversation_id, \
                    latest_message_id, message_count, state, due_at, created_at, updated_at) \
                 SELECT id, channel, recipient_id, conversation_id, latest_message_id, \
                        message_count, 'pending', due_at, $8, $8 \
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], \
                             $6::int4[], $7::timestamptz[]) \
                    AS t(id, channel, recipient_id, conversation_id, latest_message_id, \
                         message_count, due_at) \
                 ORDER BY recipient_id, conversation_id, channel \
                 ON CONFLICT (recipient_id, conversation_id, channel) WHERE state = 'pending' \
                 DO UPDATE SET message_count = notifications.message_count + EXCLUDED.message_count, \
                               latest_message_id = EXCLUDED.latest_message_id, \
                               updated_at = EXCLUDED.updated_at \
                 WHERE notifications.latest_message_id < EXCLUDED.latest_message_id",
            )
            .bind(&ids)
            .bind(&channels)
            .bind(&recipients)
            .bind(&conversations)
            .bind(&latest)
            .bind(&counts)
            .bind(&due)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        if !done.is_empty() {
            let done: Vec<Uuid> = done.iter().map(MessageId::as_uuid).collect();
            sqlx::query("DELETE FROM notification_outbox WHERE message_id = ANY($1)")
                .bind(&done)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn claim_due_notifications(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueNotification>, StoreError> {
        let rows: Vec<DueRow<Uuid, DateTime<Utc>>> = sqlx::query_as(
            "UPDATE notifications \
             SET state = 'sending', attempts = attempts + 1, lease_until = $2, updated_at = $1 \
             WHERE id IN ( \
                SELECT id FROM notifications \
                WHERE state IN ('pending', 'sending') AND due_at <= $1 \
                  AND (lease_until IS NULL OR lease_until <= $1) \
                ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, channel, recipient_id, conversation_id, latest_message_id, \
                       message_count::int8 AS message_count, attempts::int8 AS attempts, created_at",
        )
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("claim_due_notifications", e))?;
        rows.into_iter().map(DueNotification::try_from).collect()
    }

    async fn settle_notification(
        &self,
        id: NotificationId,
        attempt: u32,
        settlement: &Settlement,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let settled = sqlx::query(
            "UPDATE notifications \
             SET state = $3, due_at = COALESCE($4, due_at), lease_until = NULL, \
                 last_error = $5, updated_at = $6 \
             WHERE id = $1 AND attempts = $2 AND state = 'sending'",
        )
        .bind(id.as_uuid())
        .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
        .bind(settlement.state())
        .bind(settlement.retry_at())
        .bind(settlement.error())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("settle_notification", e))?;
        Ok(settled.rows_affected() == 1)
    }

    async fn notification_backlog(&self) -> Result<Backlog, StoreError> {
        const OP: &str = "notification_backlog";
        let (queued, oldest_due): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), min(due_at) FROM notifications \
             WHERE state IN ('pending', 'sending')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        Ok(Backlog {
            queued: count(OP, queued)?,
            oldest_due,
        })
    }
}
