//! Deliveries: one message to one target in one run, with attempts and the provider's answer.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::deliveries;
use super::Result;
use crate::domain::DeliveryStatus;

/// Rows per statement: 13 bound columns each, under PostgreSQL's 65 535 binds.
const RECORD_CHUNK: usize = 4_000;

/// The namespace of delivery ids (UUID v5 of message, run and target index).
const DELIVERY_NS: Uuid = Uuid::from_u128(0x7069_6765_6f6e_4000_8000_6465_6c69_7672);

/// The stable id of a delivery: the same for every attempt, on every node, after any crash.
pub fn delivery_id(message: Uuid, run: i32, target_index: usize) -> Uuid {
    let mut name = [0u8; 24];
    name[..16].copy_from_slice(message.as_bytes());
    name[16..20].copy_from_slice(&run.to_be_bytes());
    name[20..24].copy_from_slice(&(target_index as u32).to_be_bytes());
    Uuid::new_v5(&DELIVERY_NS, &name)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = deliveries)]
pub struct Delivery {
    pub id: Uuid,
    pub message_id: Uuid,
    pub run: i32,
    pub target_index: i32,
    pub target: String,
    pub status: String,
    pub attempts: i32,
    pub response_code: Option<i32>,
    pub response: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The outcome of one attempt, as recorded.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: Uuid,
    pub message_id: Uuid,
    pub run: i32,
    pub target_index: i32,
    pub target: String,
    pub status: DeliveryStatus,
    pub response_code: Option<i32>,
    pub response: Option<String>,
    pub error: Option<String>,
}

impl Delivery {
    /// Records a batch of attempts in one statement: new deliveries are inserted, known ones
    /// count one more attempt and take the new outcome.
    pub async fn record(conn: &mut AsyncPgConnection, attempts: &[Attempt]) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let rows: Vec<Delivery> = attempts
            .iter()
            .map(|a| Delivery {
                id: a.id,
                message_id: a.message_id,
                run: a.run,
                target_index: a.target_index,
                target: a.target.clone(),
                status: a.status.as_str().to_string(),
                attempts: 1,
                response_code: a.response_code,
                response: a.response.clone(),
                last_error: a.error.clone(),
                created_at: now,
                updated_at: now,
                delivered_at: (a.status == DeliveryStatus::Delivered).then_some(now),
            })
            .collect();
        // PostgreSQL takes at most 65 535 bound values per statement: a large wake is
        // recorded in several statements (the caller's transaction keeps them atomic).
        for chunk in rows.chunks(RECORD_CHUNK) {
            Delivery::upsert(conn, chunk).await?;
        }
        Ok(())
    }

    async fn upsert(conn: &mut AsyncPgConnection, rows: &[Delivery]) -> Result<()> {
        diesel::insert_into(deliveries::table)
            .values(rows)
            .on_conflict(deliveries::id)
            .do_update()
            .set((
                deliveries::attempts.eq(deliveries::attempts + 1),
                deliveries::status.eq(excluded(deliveries::status)),
                deliveries::response_code.eq(excluded(deliveries::response_code)),
                deliveries::response.eq(excluded(deliveries::response)),
                deliveries::last_error.eq(excluded(deliveries::last_error)),
                deliveries::delivered_at.eq(excluded(deliveries::delivered_at)),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The deliveries of the given messages in the given runs (what a wake needs to skip the
    /// targets a run already settled), without the history of earlier runs.
    pub async fn for_runs(
        conn: &mut AsyncPgConnection,
        messages: &[Uuid],
        runs: &[i32],
    ) -> Result<Vec<Delivery>> {
        Ok(deliveries::table
            .filter(deliveries::message_id.eq_any(messages))
            .filter(deliveries::run.eq_any(runs))
            .select(Delivery::as_select())
            .load(conn)
            .await?)
    }

    /// Every delivery of the given messages (any run), oldest first.
    pub async fn for_messages(
        conn: &mut AsyncPgConnection,
        messages: &[Uuid],
    ) -> Result<Vec<Delivery>> {
        Ok(deliveries::table
            .filter(deliveries::message_id.eq_any(messages))
            .order((
                deliveries::message_id,
                deliveries::run,
                deliveries::target_index,
            ))
            .select(Delivery::as_select())
            .load(conn)
            .await?)
    }
}
