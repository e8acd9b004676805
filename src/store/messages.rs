//! Messages: queued sends to a group, and the idempotency keys of the requests that made them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::schema::{groups, idempotency_keys, messages};
use super::{Result, StoreError};
use crate::domain::MessageState;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
pub struct Message {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub group_id: Uuid,
    pub state: String,
    pub subject: String,
    pub body: Option<String>,
    pub use_template: bool,
    pub variables: Value,
    pub send_list: Option<Value>,
    pub data: Option<Value>,
    pub repeat: Option<Value>,
    pub run: i32,
    pub attempts: i32,
    pub due_at: DateTime<Utc>,
    pub run_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A message's next turn after a run or a failed attempt.
#[derive(Debug, Clone)]
pub struct Reschedule {
    pub id: Uuid,
    pub due_at: DateTime<Utc>,
    pub run_at: DateTime<Utc>,
    pub run: i32,
    pub attempts: i32,
}

/// What the engine needs to queue a pending message again.
#[derive(Debug, Clone, Queryable)]
pub struct PendingRef {
    pub id: Uuid,
    pub group_id: Uuid,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct IdempotencyKey {
    pub tenant_id: Uuid,
    pub key: String,
    pub request_hash: String,
    pub response: Value,
    pub created_at: DateTime<Utc>,
}

fn pending() -> [&'static str; 3] {
    MessageState::PENDING
}

impl Message {
    /// Inserts messages in one statement (at most `commit::MAX_STATEMENT_ROWS` of them).
    pub async fn insert_all(conn: &mut AsyncPgConnection, rows: &[Message]) -> Result<()> {
        diesel::insert_into(messages::table)
            .values(rows)
            .execute(conn)
            .await?;
        Ok(())
    }

    pub async fn find(conn: &mut AsyncPgConnection, tenant: Uuid, id: Uuid) -> Result<Message> {
        messages::table
            .filter(messages::tenant_id.eq(tenant))
            .filter(messages::id.eq(id))
            .select(Message::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or(StoreError::NotFound("message"))
    }

    /// Marks claimed messages `active` and returns them; ids no longer pending (cancelled,
    /// finished) or not due yet are left out.
    pub async fn activate(
        conn: &mut AsyncPgConnection,
        group: Uuid,
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<Vec<Message>> {
        Ok(diesel::update(
            messages::table
                .filter(messages::id.eq_any(ids))
                .filter(messages::group_id.eq(group))
                .filter(messages::state.eq_any(pending()))
                .filter(messages::due_at.le(now)),
        )
        .set(messages::state.eq(MessageState::Active.as_str()))
        .returning(Message::as_returning())
        .get_results(conn)
        .await?)
    }

    /// The due times of those of `ids` still pending.
    pub async fn pending_due(
        conn: &mut AsyncPgConnection,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
        Ok(messages::table
            .filter(messages::id.eq_any(ids))
            .filter(messages::state.eq_any(pending()))
            .select((messages::id, messages::due_at))
            .load(conn)
            .await?)
    }

    /// Ends active messages in a final state.
    pub async fn finish(
        conn: &mut AsyncPgConnection,
        ids: &[Uuid],
        state: MessageState,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        diesel::update(
            messages::table
                .filter(messages::id.eq_any(ids))
                .filter(messages::state.eq(MessageState::Active.as_str())),
        )
        .set((
            messages::state.eq(state.as_str()),
            messages::finished_at.eq(Some(Utc::now())),
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Puts active messages back as `scheduled` for a retry or their next run. One UPDATE per
    /// message (each has its own times), pipelined on the connection.
    pub async fn reschedule(conn: &mut AsyncPgConnection, items: &[Reschedule]) -> Result<()> {
        // Shared references let the queries go out together (diesel-async pipelining).
        let shared: &AsyncPgConnection = conn;
        let updates = items.iter().map(|r| async move {
            let mut conn = shared;
            diesel::update(
                messages::table
                    .filter(messages::id.eq(r.id))
                    .filter(messages::state.eq(MessageState::Active.as_str())),
            )
            .set((
                messages::state.eq(MessageState::Scheduled.as_str()),
                messages::due_at.eq(r.due_at),
                messages::run_at.eq(r.run_at),
                messages::run.eq(r.run),
                messages::attempts.eq(r.attempts),
            ))
            .execute(&mut conn)
            .await
        });
        futures::future::try_join_all(updates).await?;
        Ok(())
    }

    /// Cancels one unfinished message; returns its group, or NotFound when there is no such
    /// message, and None when it had already finished.
    pub async fn cancel(
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<Uuid>> {
        let group = diesel::update(
            messages::table
                .filter(messages::tenant_id.eq(tenant))
                .filter(messages::id.eq(id))
                .filter(messages::state.eq_any(pending())),
        )
        .set((
            messages::state.eq(MessageState::Cancelled.as_str()),
            messages::finished_at.eq(Some(Utc::now())),
        ))
        .returning(messages::group_id)
        .get_result(conn)
        .await
        .optional()?;
        if group.is_none() {
            Message::find(conn, tenant, id).await?;
        }
        Ok(group)
    }

    /// Cancels every unfinished message of a group (the group is being deleted).
    pub async fn cancel_group(conn: &mut AsyncPgConnection, group: Uuid) -> Result<usize> {
        Ok(diesel::update(
            messages::table
                .filter(messages::group_id.eq(group))
                .filter(messages::state.eq_any(pending())),
        )
        .set((
            messages::state.eq(MessageState::Cancelled.as_str()),
            messages::finished_at.eq(Some(Utc::now())),
        ))
        .execute(conn)
        .await?)
    }

    /// Cancels the unfinished messages of `group` if the group is deleted (a send that raced
    /// the delete).
    pub async fn cancel_if_group_deleted(
        conn: &mut AsyncPgConnection,
        group: Uuid,
    ) -> Result<usize> {
        let deleted = groups::table
            .filter(groups::id.eq(group))
            .filter(groups::deleted_at.is_not_null());
        Ok(diesel::update(
            messages::table
                .filter(messages::group_id.eq(group))
                .filter(messages::state.eq_any(pending()))
                .filter(diesel::dsl::exists(deleted)),
        )
        .set((
            messages::state.eq(MessageState::Cancelled.as_str()),
            messages::finished_at.eq(Some(Utc::now())),
        ))
        .execute(conn)
        .await?)
    }

    /// Cancels every unfinished message of every deleted group (before a rebuild).
    pub async fn cancel_orphans(conn: &mut AsyncPgConnection) -> Result<usize> {
        let deleted = groups::table
            .filter(groups::deleted_at.is_not_null())
            .select(groups::id);
        Ok(diesel::update(
            messages::table
                .filter(messages::state.eq_any(pending()))
                .filter(messages::group_id.eq_any(deleted)),
        )
        .set((
            messages::state.eq(MessageState::Cancelled.as_str()),
            messages::finished_at.eq(Some(Utc::now())),
        ))
        .execute(conn)
        .await?)
    }

    /// One page of unfinished messages in id order, after `after`: the engine is rebuilt from
    /// these.
    pub async fn pending_page(
        conn: &mut AsyncPgConnection,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<PendingRef>> {
        let mut q = messages::table
            .filter(messages::state.eq_any(pending()))
            .order(messages::id)
            .limit(limit)
            .select((messages::id, messages::group_id, messages::due_at))
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(messages::id.gt(after));
        }
        Ok(q.load(conn).await?)
    }
}

impl IdempotencyKey {
    pub async fn find(
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
        key: &str,
    ) -> Result<Option<IdempotencyKey>> {
        Ok(idempotency_keys::table
            .filter(idempotency_keys::tenant_id.eq(tenant))
            .filter(idempotency_keys::key.eq(key))
            .select(IdempotencyKey::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    pub async fn insert(conn: &mut AsyncPgConnection, row: &IdempotencyKey) -> Result<()> {
        diesel::insert_into(idempotency_keys::table)
            .values(row)
            .execute(conn)
            .await?;
        Ok(())
    }
}
