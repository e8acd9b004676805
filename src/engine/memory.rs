//! The engine in process memory: one node, no services, nothing survives a restart.
//!
//! Each group keeps its queue ordered by `(due, id)` (a `BTreeSet`, with a map from id to its
//! current due time so re-enqueueing can move an entry), and its claims as a map from id to
//! deadline. Leases are a map from group to `(node, expires_at)` in wall-clock milliseconds.
//!
//! WebSocket pushes: each catch-up stream is a deque of `(offset, payload)` with the newest
//! offset ever trimmed and the time it expires (both judged by the callers' `now`); pub/sub is a
//! `tokio::sync::broadcast` channel; presence is a map from key to `node -> expires_at`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{offset_key, Engine, EngineError, Millis, QueueDepth, Replay, Result, Subscription};

/// Messages a subscriber may fall behind by before it misses some (they are skipped).
const PUBSUB_CAPACITY: usize = 65_536;

/// Appends (or presence touches) between two sweeps of expired streams (or presence marks).
const SWEEP_EVERY: u64 = 1_024;

/// A stream offset, `(ms, seq)`.
type Offset = (u64, u64);

fn format_offset((ms, seq): Offset) -> String {
    format!("{ms}-{seq}")
}

/// Milliseconds as an offset's `ms` part (times before the epoch count as 0).
fn offset_ms(t: Millis) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

#[derive(Debug, Default)]
struct StreamState {
    /// `(offset, payload)`, oldest first.
    entries: VecDeque<(Offset, String)>,
    /// The last offset handed out (it may have been trimmed since).
    last: Offset,
    /// The newest offset ever trimmed.
    lost: Option<Offset>,
    /// The stream is gone at this time (`now` of the last append + `max_age`).
    expires_at: Millis,
}

#[derive(Debug, Default)]
struct Streams {
    map: HashMap<String, StreamState>,
    appends: u64,
}

impl Streams {
    /// The live state of `stream`, forgetting it if it expired.
    fn live(&mut self, stream: &str, now: Millis) -> Option<&mut StreamState> {
        if self.map.get(stream).is_some_and(|s| s.expires_at <= now) {
            self.map.remove(stream);
        }
        self.map.get_mut(stream)
    }
}

#[derive(Debug, Default)]
struct Presence {
    /// key -> node -> expires_at.
    map: HashMap<String, HashMap<String, Millis>>,
    touches: u64,
}

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
#[derive(Debug)]
pub struct MemoryEngine {
    groups: Mutex<HashMap<Uuid, GroupState>>,
    leases: Mutex<HashMap<Uuid, (String, Millis)>>,
    synced: AtomicBool,
    streams: Mutex<Streams>,
    pubsub: broadcast::Sender<Vec<u8>>,
    presence: Mutex<Presence>,
}

impl Default for MemoryEngine {
    fn default() -> Self {
        let (pubsub, _) = broadcast::channel(PUBSUB_CAPACITY);
        Self {
            groups: Mutex::default(),
            leases: Mutex::default(),
            synced: AtomicBool::default(),
            streams: Mutex::default(),
            pubsub,
            presence: Mutex::default(),
        }
    }
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn streams(&self) -> MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn presence(&self) -> MutexGuard<'_, Presence> {
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
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
    async fn stream_append(
        &self,
        stream: &str,
        payload: &str,
        keep: usize,
        max_age: Millis,
        now: Millis,
    ) -> Result<String> {
        if max_age <= 0 {
            return Err(EngineError::Other(format!(
                "stream max age must be positive, got {max_age} ms"
            )));
        }
        let mut streams = self.streams();
        streams.appends = streams.appends.wrapping_add(1);
        if streams.appends.is_multiple_of(SWEEP_EVERY) {
            streams.map.retain(|_, s| s.expires_at > now);
        }
        if streams.live(stream, now).is_none() {
            streams
                .map
                .insert(stream.to_owned(), StreamState::default());
        }
        let Some(state) = streams.map.get_mut(stream) else {
            return Err(EngineError::Other(format!("stream {stream} vanished")));
        };

        let ms = offset_ms(now);
        let mut id = if ms > state.last.0 {
            (ms, 0)
        } else {
            (state.last.0, state.last.1.saturating_add(1))
        };
        if id == (0, 0) {
            id = (0, 1); // 0-0 is not a valid offset
        }
        state.entries.push_back((id, payload.to_owned()));
        state.last = id;

        let mut trimmed = None;
        while state.entries.len() > keep {
            trimmed = state.entries.pop_front().map(|(o, _)| o);
        }
        let cutoff = now.saturating_sub(max_age);
        if cutoff > 0 {
            let cutoff = offset_ms(cutoff);
            while state
                .entries
                .front()
                .is_some_and(|((ms, _), _)| *ms < cutoff)
            {
                let popped = state.entries.pop_front().map(|(o, _)| o);
                trimmed = trimmed.max(popped);
            }
        }
        state.lost = state.lost.max(trimmed);
        state.expires_at = now.saturating_add(max_age);
        Ok(format_offset(id))
    }

    async fn stream_since(
        &self,
        stream: &str,
        since: &str,
        limit: usize,
        now: Millis,
        max_age: Millis,
    ) -> Result<Replay> {
        let since = parse_since(since)?;
        let mut streams = self.streams();
        let Some(state) = streams.live(stream, now) else {
            return Ok(Replay {
                entries: Vec::new(),
                lost: missing_stream_lost(since, now, max_age),
            });
        };
        let entries = state
            .entries
            .iter()
            .filter(|(o, _)| *o > since)
            .take(limit)
            .map(|(o, p)| (format_offset(*o), p.clone()))
            .collect();
        Ok(Replay {
            entries,
            lost: state.lost.is_some_and(|l| l > since),
        })
    }

    async fn publish(&self, payload: &[u8]) -> Result<()> {
        // An error only means nobody is subscribed: nothing to deliver.
        let _ = self.pubsub.send(payload.to_vec());
        Ok(())
    }

    async fn subscribe(&self) -> Result<Subscription> {
        let rx = self.pubsub.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(payload) => return Some((payload, rx)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "subscriber fell behind: skipped payloads");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn presence_touch(
        &self,
        keys: &[String],
        node: &str,
        now: Millis,
        ttl: Millis,
    ) -> Result<()> {
        if ttl <= 0 {
            return Err(EngineError::Other(format!(
                "presence ttl must be positive, got {ttl} ms"
            )));
        }
        if keys.is_empty() {
            return Ok(());
        }
        let mut presence = self.presence();
        presence.touches = presence.touches.wrapping_add(1);
        if presence.touches.is_multiple_of(SWEEP_EVERY) {
            presence.map.retain(|_, nodes| {
                nodes.retain(|_, expires_at| *expires_at > now);
                !nodes.is_empty()
            });
        }
        let expires_at = now.saturating_add(ttl);
        for key in keys {
            let nodes = presence.map.entry(key.clone()).or_default();
            nodes.retain(|_, e| *e > now);
            nodes.insert(node.to_owned(), expires_at);
        }
        Ok(())
    }

    async fn presence_drop(&self, key: &str, node: &str) -> Result<()> {
        let mut presence = self.presence();
        if let Some(nodes) = presence.map.get_mut(key) {
            nodes.remove(node);
            if nodes.is_empty() {
                presence.map.remove(key);
            }
        }
        Ok(())
    }

    async fn presence_any(&self, key: &str, now: Millis) -> Result<bool> {
        let presence = self.presence();
        Ok(presence
            .map
            .get(key)
            .is_some_and(|nodes| nodes.values().any(|&e| e > now)))
    }
}

/// Parses the offset a reader asks from.
pub(super) fn parse_since(since: &str) -> Result<Offset> {
    offset_key(since).ok_or_else(|| EngineError::Other(format!("not a stream offset: {since:?}")))
}

/// Whether a reader at `since` may have missed entries of a stream that no longer exists.
pub(super) fn missing_stream_lost(since: Offset, now: Millis, max_age: Millis) -> bool {
    i128::from(since.0) < i128::from(now) - i128::from(max_age)
}
