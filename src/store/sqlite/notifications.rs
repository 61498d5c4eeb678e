//! [`Notifications`] on SQLite. One node owns the file and writers are
//! serialized, so a claim is one `UPDATE … RETURNING` statement: nobody
//! else can take the same rows in between.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::super::rows::{ContactRow, DueRow, OutboxRow, count};
use super::super::{Backlog, Notifications, StoreError};
use super::{BEGIN_WRITE, SqliteStore, text};
use crate::domain::{
    Contact, ContactClaims, DueNotification, Gathered, MessageId, NotificationId, OutboxEntry,
    Settlement, UserId,
};

#[async_trait]
impl Notifications for SqliteStore {
    async fn remember_contact(
        &self,
        user: &UserId,
        email: Option<&str>,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // See the Postgres store: a missing claim keeps the known value,
        // and an unchanged contact writes nothing.
        sqlx::query(
            "INSERT INTO user_contacts (user_id, email, name, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (user_id) DO UPDATE \
                SET email = COALESCE(excluded.email, user_contacts.email), \
                    name = COALESCE(excluded.name, user_contacts.name), \
                    updated_at = excluded.updated_at \
             WHERE user_contacts.email IS NOT COALESCE(excluded.email, user_contacts.email) \
                OR user_contacts.name IS NOT COALESCE(excluded.name, user_contacts.name)",
        )
        .bind(user.as_str())
        .bind(email)
        .bind(name)
        .bind(now.timestamp_millis())
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
        const OP: &str = "remember_contacts";
        if contacts.is_empty() {
            return Ok(());
        }
        let err = |e| StoreError::from_sqlx(OP, e);
        // One transaction: one WAL commit for the whole batch.
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(err)?;
        for c in contacts {
            sqlx::query(
                "INSERT INTO user_contacts (user_id, email, name, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (user_id) DO UPDATE \
                    SET email = COALESCE(excluded.email, user_contacts.email), \
                        name = COALESCE(excluded.name, user_contacts.name), \
                        updated_at = excluded.updated_at \
                 WHERE user_contacts.email IS NOT COALESCE(excluded.email, user_contacts.email) \
                    OR user_contacts.name IS NOT COALESCE(excluded.name, user_contacts.name)",
            )
            .bind(c.user.as_str())
            .bind(c.email.as_deref())
            .bind(c.name.as_deref())
            .bind(now.timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(())
    }

    async fn set_email_notifications(
        &self,
        user: &UserId,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_contacts (user_id, email_enabled, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (user_id) DO UPDATE \
                SET email_enabled = excluded.email_enabled, updated_at = excluded.updated_at",
        )
        .bind(user.as_str())
        .bind(enabled)
        .bind(now.timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("set_email_notifications", e))?;
        Ok(())
    }

    async fn contact(&self, user: &UserId) -> Result<Option<Contact>, StoreError> {
        let row: Option<ContactRow> = sqlx::query_as(
            "SELECT email, name, email_enabled FROM user_contacts WHERE user_id = ?1",
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
        let rows: Vec<OutboxRow<String>> = sqlx::query_as(
            "UPDATE notification_outbox SET lease_until = ?2 \
             WHERE message_id IN ( \
                SELECT message_id FROM notification_outbox \
                WHERE lease_until IS NULL OR lease_until <= ?1 \
                ORDER BY message_id LIMIT ?3) \
             RETURNING message_id, conversation_id, sender_id",
        )
        .bind(now.timestamp_millis())
        .bind(lease_until.timestamp_millis())
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
        let now = now.timestamp_millis();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(err)?;
        for g in gathered {
            sqlx::query(
                "INSERT INTO notifications (id, channel, recipient_id, conversation_id, \
                    latest_message_id, message_count, state, due_at, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?8) \
                 ON CONFLICT (recipient_id, conversation_id, channel) WHERE state = 'pending' \
                 DO UPDATE SET message_count = message_count + excluded.message_count, \
                               latest_message_id = excluded.latest_message_id, \
                               updated_at = excluded.updated_at \
                 WHERE latest_message_id < excluded.latest_message_id",
            )
            .bind(text(g.id.as_uuid()))
            .bind(g.channel.as_str())
            .bind(g.recipient_id.as_str())
            .bind(text(g.conversation_id.as_uuid()))
            .bind(text(g.latest_message_id.as_uuid()))
            .bind(i64::from(g.message_count))
            .bind(g.due_at.timestamp_millis())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        for id in done {
            sqlx::query("DELETE FROM notification_outbox WHERE message_id = ?1")
                .bind(text(id.as_uuid()))
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
        let rows: Vec<DueRow<String, i64>> = sqlx::query_as(
            "UPDATE notifications \
             SET state = 'sending', attempts = attempts + 1, lease_until = ?2, updated_at = ?1 \
             WHERE id IN ( \
                SELECT id FROM notifications \
                WHERE state IN ('pending', 'sending') AND due_at <= ?1 \
                  AND (lease_until IS NULL OR lease_until <= ?1) \
                ORDER BY due_at LIMIT ?3) \
             RETURNING id, channel, recipient_id, conversation_id, latest_message_id, \
                       message_count, attempts, created_at",
        )
        .bind(now.timestamp_millis())
        .bind(lease_until.timestamp_millis())
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
             SET state = ?3, due_at = COALESCE(?4, due_at), lease_until = NULL, \
                 last_error = ?5, updated_at = ?6 \
             WHERE id = ?1 AND attempts = ?2 AND state = 'sending'",
        )
        .bind(text(id.as_uuid()))
        .bind(i64::from(attempt))
        .bind(settlement.state())
        .bind(settlement.retry_at().map(|at| at.timestamp_millis()))
        .bind(settlement.error())
        .bind(now.timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("settle_notification", e))?;
        Ok(settled.rows_affected() == 1)
    }

    async fn notification_backlog(&self) -> Result<Backlog, StoreError> {
        const OP: &str = "notification_backlog";
        let (queued, oldest_due): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), min(due_at) FROM notifications \
             WHERE state IN ('pending', 'sending')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        Ok(Backlog {
            queued: count(OP, queued)?,
            oldest_due: oldest_due.and_then(DateTime::from_timestamp_millis),
        })
    }
}
