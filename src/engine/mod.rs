//! The engine: Pigeon's fast, shared state behind the actors.
//!
//! It owns, per group, the queue of message ids (each with the time it is due, so immediate and
//! delayed messages live in one ordered set), the claims in flight (each with a deadline: a claim
//! not finished before it lapses goes back to the queue), and the lease that says which node runs
//! the group's pigeon. It is an index over the store, never the system of record: everything in
//! it can be rebuilt from PostgreSQL (see `crate::store::rebuild`), and `is_synced` tells when it
//! must be (a Redis restart without persistence, a `FLUSHDB`).
//!
//! Two implementations sit behind one trait: [`redis::RedisEngine`] for production and several
//! nodes, [`memory::MemoryEngine`] for one node with no services. One behaviour suite
//! (`tests.rs`) runs against both.

pub mod memory;
pub mod rebuild;
pub mod redis;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use uuid::Uuid;

/// Milliseconds since the Unix epoch; every time the engine sees is in this unit.
pub type Millis = i64;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("engine: {0}")]
    Other(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What a catch-up stream holds after an offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// `(offset, payload)` oldest first.
    pub entries: Vec<(String, String)>,
    /// True when entries after the asked offset may have been dropped by retention: the
    /// reader must be told it has a gap.
    pub lost: bool,
}

/// A stream of payloads published by any node.
pub type Subscription = futures::stream::BoxStream<'static, Vec<u8>>;

/// Compares two stream offsets (`<ms>-<seq>`); None when either is not an offset.
pub fn offset_key(offset: &str) -> Option<(u64, u64)> {
    let (ms, seq) = offset.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// How many ids a group has waiting (due or not) and claimed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    pub queued: u64,
    pub in_flight: u64,
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// `"redis"` or `"memory"`.
    fn kind(&self) -> &'static str;

    /// Puts messages in a group's queue, each due at its time. Idempotent: an id already queued
    /// keeps one entry (its due time becomes the given one); an id currently claimed is left
    /// alone (its claim decides what happens to it).
    async fn enqueue(&self, group: Uuid, items: &[(Uuid, Millis)]) -> Result<()>;

    /// Claims up to `max` due messages of a group. First every lapsed claim (deadline <= now)
    /// goes back to the queue, due now; then the earliest due ids (due <= now) are taken in due
    /// order (ties in any order), removed from the queue and held as claims until `now + lease`.
    async fn claim(&self, group: Uuid, max: usize, now: Millis, lease: Millis)
        -> Result<Vec<Uuid>>;

    /// Finishes claims: the ids leave the in-flight set for good. Unknown ids are ignored.
    async fn ack(&self, group: Uuid, ids: &[Uuid]) -> Result<()>;

    /// Gives claims back: each id leaves the in-flight set and is queued again, due at its time
    /// (a retry after backoff, or a claim released after an error).
    async fn release(&self, group: Uuid, items: &[(Uuid, Millis)]) -> Result<()>;

    /// Forgets ids wherever they are (queue or in flight): a cancelled message.
    async fn remove(&self, group: Uuid, ids: &[Uuid]) -> Result<()>;

    /// Forgets a whole group: queue, claims and lease.
    async fn drop_group(&self, group: Uuid) -> Result<()>;

    /// Sizes of a group's queue and in-flight set.
    async fn depth(&self, group: Uuid) -> Result<QueueDepth>;

    /// Takes or renews the lease on a group for `node`, for `ttl` ms. True when `node` holds it
    /// afterwards; false when another node holds a live lease.
    async fn acquire_lease(&self, group: Uuid, node: &str, ttl: Millis) -> Result<bool>;

    /// Lets go of the lease if `node` holds it.
    async fn release_lease(&self, group: Uuid, node: &str) -> Result<()>;

    /// False when the engine has lost the data last vouched for by `mark_synced` (e.g. Redis
    /// was restarted without persistence or flushed): the caller must rebuild from the store.
    async fn is_synced(&self) -> Result<bool>;

    /// Records that the engine now holds everything the store says it should.
    async fn mark_synced(&self) -> Result<()>;

    /// Round trip to the backing service (readiness).
    async fn ping(&self) -> Result<()>;

    // --- WebSocket pushes: catch-up streams, pub/sub between nodes, presence. ---

    /// Appends `payload` to the catch-up stream `stream` and returns its offset (`<ms>-<seq>`,
    /// increasing). Then trims the stream to its newest `keep` entries and drops entries older
    /// than `now - max_age`, remembering the newest offset ever trimmed (for `stream_since`).
    /// The stream (and that memory) expires `max_age` after its last append.
    async fn stream_append(
        &self,
        stream: &str,
        payload: &str,
        keep: usize,
        max_age: Millis,
        now: Millis,
    ) -> Result<String>;

    /// Up to `limit` entries of `stream` with offsets after `since`, oldest first. `lost` is
    /// true when an entry after `since` was trimmed (the newest trimmed offset is greater than
    /// `since`), or when the stream no longer exists and `since` is older than `now - max_age`.
    async fn stream_since(
        &self,
        stream: &str,
        since: &str,
        limit: usize,
        now: Millis,
        max_age: Millis,
    ) -> Result<Replay>;

    /// Sends `payload` to every node's subscription (this node's included).
    async fn publish(&self, payload: &[u8]) -> Result<()>;

    /// Everything published from now on, by any node, in publish order per publisher. The
    /// stream ends if the connection is lost; the caller subscribes again.
    async fn subscribe(&self) -> Result<Subscription>;

    /// Marks `node` as having sessions for each of `keys`, until `now + ttl`.
    async fn presence_touch(
        &self,
        keys: &[String],
        node: &str,
        now: Millis,
        ttl: Millis,
    ) -> Result<()>;

    /// Marks `node` as having no more sessions for `key`.
    async fn presence_drop(&self, key: &str, node: &str) -> Result<()>;

    /// Whether any node has a live mark for `key`.
    async fn presence_any(&self, key: &str, now: Millis) -> Result<bool>;
}
