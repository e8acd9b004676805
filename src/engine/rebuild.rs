//! Rebuilding the engine from the store: every unfinished message goes back in its group's
//! queue, due at its time. Safe to run at any moment: enqueue is idempotent and leaves claims
//! in flight alone.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Engine, Millis};
use crate::store::{self, messages::Message, PgPool};

/// Rows read per page.
const PAGE: i64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Engine(#[from] super::EngineError),
}

/// Re-queues every unfinished message and marks the engine synced. Returns how many.
pub async fn rebuild(engine: &dyn Engine, pool: &PgPool) -> Result<usize, RebuildError> {
    let mut conn = store::conn(pool).await?;
    let orphans = Message::cancel_orphans(&mut conn).await?;
    if orphans > 0 {
        tracing::info!(orphans, "cancelled pending messages of deleted groups");
    }
    let mut after = None;
    let mut total = 0;
    loop {
        let page = Message::pending_page(&mut conn, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let mut by_group: HashMap<Uuid, Vec<(Uuid, Millis)>> = HashMap::new();
        for m in &page {
            by_group
                .entry(m.group_id)
                .or_default()
                .push((m.id, m.due_at.timestamp_millis()));
        }
        for (group, items) in by_group {
            engine.enqueue(group, &items).await?;
        }
        total += page.len();
    }
    engine.mark_synced().await?;
    tracing::info!(
        messages = total,
        engine = engine.kind(),
        "engine rebuilt from the store"
    );
    Ok(total)
}
