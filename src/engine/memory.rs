//! The engine in process memory: one node, no services, nothing survives a restart.
//!
//! Each group keeps its queue ordered by `(due, id)` (a `BTreeSet`, with a map from id to its
//! current due time so re-enqueueing can move an entry), and its claims as a map from id to
//! deadline. Leases are a map from group to `(node, expires_at)` in wall-clock milliseconds.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use super::{Engine, EngineError, Millis, QueueDepth, Result};

#[derive(Debug, Default)]
struct GroupState {
    /// Waiting ids ordered by due time, then id.
    queue: BTreeSet<(Millis, Uuid)>,
    /// Current due time of each queued id (the key to find it in `queue`).
    due: HashMap<Uuid, Millis>,
    /// Claimed ids and their deadlines.
    in_flight: HashMap<Uuid, Millis>,
}

impl GroupState {
    fn is_empty(&self) -> bool {
        self.due.is_empty() && self.in_flight.is_empty()
    }

    /// Queues `id` due at `due`, replacing any earlier entry.
    fn queue(&mut self, id: Uuid, due: Millis) {
        if let Some(old) = self.due.insert(id, due) {
            self.queue.remove(&(old, id));
        }
        self.queue.insert((due, id));
    }

    fn unqueue(&mut self, id: &Uuid) {
        if let Some(old) = self.due.remove(id) {
            self.queue.remove(&(old, *id));
        }
    }
}

/// [`Engine`] for a single node, held in memory.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    groups: Mutex<HashMap<Uuid, GroupState>>,
    leases: Mutex<HashMap<Uuid, (String, Millis)>>,
    synced: AtomicBool,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn groups(&self) -> MutexGuard<'_, HashMap<Uuid, GroupState>> {
        // No code path panics while holding the lock, but never let poisoning take the engine down.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<Uuid, (String, Millis)>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a group's state, dropping the group when it ends up empty.
    fn with_group<T>(&self, group: Uuid, f: impl FnOnce(&mut GroupState) -> T) -> T {
        let mut groups = self.groups();
        let state = groups.entry(group).or_default();
        let out = f(state);
        if state.is_empty() {
            groups.remove(&group);
        }
        out
    }
}

fn wall_clock_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl Engine for MemoryEngine {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, group: Uuid, items: &[(Uuid, Millis)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.with_group(group, |g| {
            for &(id, due) in items {
                if !g.in_flight.contains_key(&id) {
                    g.queue(id, due);
                }
            }
        });
        Ok(())
    }

    async fn claim(
        &self,
        group: Uuid,
        max: usize,
        now: Millis,
        lease: Millis,
    ) -> Result<Vec<Uuid>> {
        let claimed = self.with_group(group, |g| {
            let lapsed: Vec<Uuid> = g
                .in_flight
                .iter()
                .filter(|(_, &deadline)| deadline <= now)
                .map(|(&id, _)| id)
                .collect();
            for id in lapsed {
                g.in_flight.remove(&id);
                g.queue(id, now);
            }
            let taken: Vec<(Millis, Uuid)> = g
                .queue
                .iter()
                .take_while(|(due, _)| *due <= now)
                .take(max)
                .copied()
                .collect();
            let deadline = now.saturating_add(lease);
            taken
                .into_iter()
                .map(|(due, id)| {
                    g.queue.remove(&(due, id));
                    g.due.remove(&id);
                    g.in_flight.insert(id, deadline);
                    id
                })
                .collect::<Vec<_>>()
        });
        Ok(claimed)
    }

    async fn ack(&self, group: Uuid, ids: &[Uuid]) -> Result<()> {
        self.remove(group, ids).await
    }

    async fn release(&self, group: Uuid, items: &[(Uuid, Millis)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.with_group(group, |g| {
            for &(id, due) in items {
                g.in_flight.remove(&id);
                g.queue(id, due);
            }
        });
        Ok(())
    }

    async fn remove(&self, group: Uuid, ids: &[Uuid]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.with_group(group, |g| {
            for id in ids {
                g.in_flight.remove(id);
                g.unqueue(id);
            }
        });
        Ok(())
    }

    async fn drop_group(&self, group: Uuid) -> Result<()> {
        self.groups().remove(&group);
        self.leases().remove(&group);
        Ok(())
    }

    async fn depth(&self, group: Uuid) -> Result<QueueDepth> {
        let groups = self.groups();
        Ok(groups
            .get(&group)
            .map(|g| QueueDepth {
                queued: g.due.len() as u64,
                in_flight: g.in_flight.len() as u64,
            })
            .unwrap_or_default())
    }

    async fn acquire_lease(&self, group: Uuid, node: &str, ttl: Millis) -> Result<bool> {
        if ttl <= 0 {
            return Err(EngineError::Other(format!(
                "lease ttl must be positive, got {ttl} ms"
            )));
        }
        let now = wall_clock_ms();
        let mut leases = self.leases();
        if let Some((holder, expires_at)) = leases.get(&group) {
            if *expires_at > now && holder != node {
                return Ok(false);
            }
        }
        leases.insert(group, (node.to_owned(), now.saturating_add(ttl)));
        Ok(true)
    }

    async fn release_lease(&self, group: Uuid, node: &str) -> Result<()> {
        let mut leases = self.leases();
        if leases.get(&group).is_some_and(|(holder, _)| holder == node) {
            leases.remove(&group);
        }
        Ok(())
    }

    async fn is_synced(&self) -> Result<bool> {
        Ok(self.synced.load(Ordering::SeqCst))
    }

    async fn mark_synced(&self) -> Result<()> {
        self.synced.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
