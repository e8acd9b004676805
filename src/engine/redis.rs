//! The engine on Redis: shared by every node of a deployment.
//!
//! # Keys
//!
//! Every key starts with the deployment's prefix, so several deployments (or test runs) can share
//! one Redis. A group's keys carry its id as a hash tag (`{<group-uuid>}`), so Redis Cluster keeps
//! all of them on one slot and the scripts below may touch them together.
//!
//! | key                                | type       | content                                            |
//! |------------------------------------|------------|----------------------------------------------------|
//! | `<prefix>:g:{<group-uuid>}:q`      | sorted set | queued message ids; score = due time (ms)          |
//! | `<prefix>:g:{<group-uuid>}:f`      | sorted set | claimed (in-flight) ids; score = deadline (ms)     |
//! | `<prefix>:g:{<group-uuid>}:lease`  | string     | id of the node running the group; expires (`PX`)   |
//! | `<prefix>:synced`                  | string     | marker written by `mark_synced`                    |
//!
//! Message ids are stored as hyphenated lowercase UUID strings, so ties in due time are taken in
//! id order, as in the memory engine.
//!
//! # Atomicity
//!
//! Every operation that reads and then writes (enqueue, claim, release, the lease) is a Lua
//! script, run with `EVALSHA` (scripts are loaded at connect and reloaded by the client on
//! `NOSCRIPT`, e.g. after a Redis restart). `ack`/`remove` are `ZREM`s on both sets in one
//! `MULTI`. Large inputs are split into chunks of [`CHUNK`] ids, each chunk atomic on its own.
//!
//! The `synced` marker disappears with the data when Redis restarts without persistence or is
//! flushed, which is what `is_synced` reports.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;
use uuid::Uuid;

use super::{Engine, EngineError, Millis, QueueDepth, Result};

/// Most ids sent to Redis in one call.
const CHUNK: usize = 1000;

/// KEYS: queue, in-flight. ARGV: id1, due1, id2, due2, ...
/// Queues (or re-times) each id unless it is currently claimed. Returns how many were queued.
const ENQUEUE: &str = r#"
local n = 0
for i = 1, #ARGV, 2 do
  if not redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    n = n + 1
  end
end
return n
"#;

/// KEYS: queue, in-flight. ARGV: now, max, deadline.
/// Puts lapsed claims back in the queue due now, then moves up to `max` due ids (earliest first)
/// from the queue to the in-flight set with the deadline. Returns the claimed ids.
const CLAIM: &str = r#"
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(lapsed) do
  redis.call('ZADD', KEYS[1], ARGV[1], id)
end
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], ARGV[3], id)
end
return ids
"#;

/// KEYS: queue, in-flight. ARGV: id1, due1, id2, due2, ...
/// Takes each id out of the in-flight set and queues it due at its time.
const RELEASE: &str = r#"
for i = 1, #ARGV, 2 do
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
end
return 1
"#;

/// KEYS: lease. ARGV: node, ttl ms.
/// Takes the lease if free, renews it if `node` holds it. Returns 1 when `node` holds it, else 0.
const ACQUIRE_LEASE: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: lease. ARGV: node.
/// Deletes the lease only if `node` holds it. Returns the number of keys deleted.
const RELEASE_LEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// [`Engine`] on Redis (standalone; key layout ready for Cluster).
#[derive(Clone)]
pub struct RedisEngine {
    con: ConnectionManager,
    prefix: String,
    enqueue: Script,
    claim: Script,
    release: Script,
    acquire_lease: Script,
    release_lease: Script,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The keys of one group.
struct GroupKeys {
    queue: String,
    in_flight: String,
    lease: String,
}

impl RedisEngine {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379/3`, the path picking the database) with
    /// keys under `prefix`, and loads the scripts.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let mut con = ConnectionManager::new(client).await?;
        let engine = Self {
            enqueue: Script::new(ENQUEUE),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            acquire_lease: Script::new(ACQUIRE_LEASE),
            release_lease: Script::new(RELEASE_LEASE),
            prefix: prefix.to_owned(),
            con: con.clone(),
        };
        for script in [
            &engine.enqueue,
            &engine.claim,
            &engine.release,
            &engine.acquire_lease,
            &engine.release_lease,
        ] {
            script.prepare_invoke().load_async(&mut con).await?;
        }
        tracing::debug!(prefix, "redis engine connected");
        Ok(engine)
    }

    fn keys(&self, group: Uuid) -> GroupKeys {
        let base = format!("{}:g:{{{}}}", self.prefix, group);
        GroupKeys {
            queue: format!("{base}:q"),
            in_flight: format!("{base}:f"),
            lease: format!("{base}:lease"),
        }
    }

    fn synced_key(&self) -> String {
        format!("{}:synced", self.prefix)
    }

    fn con(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// Runs `script` (enqueue or release) over `(id, due)` pairs, a chunk at a time.
    async fn run_pairs(
        &self,
        script: &Script,
        group: Uuid,
        items: &[(Uuid, Millis)],
    ) -> Result<()> {
        let keys = self.keys(group);
        let mut con = self.con();
        for chunk in items.chunks(CHUNK) {
            let mut invocation = script.key(&keys.queue);
            invocation.key(&keys.in_flight);
            for (id, due) in chunk {
                invocation.arg(id.to_string()).arg(*due);
            }
            invocation.invoke_async::<i64>(&mut con).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Engine for RedisEngine {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, group: Uuid, items: &[(Uuid, Millis)]) -> Result<()> {
        self.run_pairs(&self.enqueue, group, items).await
    }

    async fn claim(
        &self,
        group: Uuid,
        max: usize,
        now: Millis,
        lease: Millis,
    ) -> Result<Vec<Uuid>> {
        let keys = self.keys(group);
        let mut con = self.con();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let raw: Vec<String> = self
            .claim
            .key(&keys.queue)
            .key(&keys.in_flight)
            .arg(now)
            .arg(max)
            .arg(now.saturating_add(lease))
            .invoke_async(&mut con)
            .await?;
        let mut ids = Vec::with_capacity(raw.len());
        let mut garbage = Vec::new();
        for member in raw {
            match Uuid::parse_str(&member) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    tracing::warn!(%group, member, error = %e, "dropping a non-uuid member of the in-flight set");
                    garbage.push(member);
                }
            }
        }
        if !garbage.is_empty() {
            // Not ours to deliver and it would come back at every lapse: take it out for good.
            let _: i64 = redis::cmd("ZREM")
                .arg(&keys.in_flight)
                .arg(&garbage)
                .query_async(&mut con)
                .await?;
        }
        Ok(ids)
    }

    async fn ack(&self, group: Uuid, ids: &[Uuid]) -> Result<()> {
        // A claim that lapsed may be back in the queue: an acked message leaves both sets.
        self.remove(group, ids).await
    }

    async fn release(&self, group: Uuid, items: &[(Uuid, Millis)]) -> Result<()> {
        self.run_pairs(&self.release, group, items).await
    }

    async fn remove(&self, group: Uuid, ids: &[Uuid]) -> Result<()> {
        let keys = self.keys(group);
        let mut con = self.con();
        for chunk in ids.chunks(CHUNK) {
            let members: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
            let _: () = redis::pipe()
                .atomic()
                .cmd("ZREM")
                .arg(&keys.queue)
                .arg(&members)
                .ignore()
                .cmd("ZREM")
                .arg(&keys.in_flight)
                .arg(&members)
                .ignore()
                .query_async(&mut con)
                .await?;
        }
        Ok(())
    }

    async fn drop_group(&self, group: Uuid) -> Result<()> {
        let keys = self.keys(group);
        let _: i64 = redis::cmd("DEL")
            .arg(&keys.queue)
            .arg(&keys.in_flight)
            .arg(&keys.lease)
            .query_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn depth(&self, group: Uuid) -> Result<QueueDepth> {
        let keys = self.keys(group);
        let (queued, in_flight): (u64, u64) = redis::pipe()
            .cmd("ZCARD")
            .arg(&keys.queue)
            .cmd("ZCARD")
            .arg(&keys.in_flight)
            .query_async(&mut self.con())
            .await?;
        Ok(QueueDepth { queued, in_flight })
    }

    async fn acquire_lease(&self, group: Uuid, node: &str, ttl: Millis) -> Result<bool> {
        if ttl <= 0 {
            return Err(EngineError::Other(format!(
                "lease ttl must be positive, got {ttl} ms"
            )));
        }
        let keys = self.keys(group);
        let held: i64 = self
            .acquire_lease
            .key(&keys.lease)
            .arg(node)
            .arg(ttl)
            .invoke_async(&mut self.con())
            .await?;
        Ok(held == 1)
    }

    async fn release_lease(&self, group: Uuid, node: &str) -> Result<()> {
        let keys = self.keys(group);
        let _: i64 = self
            .release_lease
            .key(&keys.lease)
            .arg(node)
            .invoke_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn is_synced(&self) -> Result<bool> {
        let exists: bool = redis::cmd("EXISTS")
            .arg(self.synced_key())
            .query_async(&mut self.con())
            .await?;
        Ok(exists)
    }

    async fn mark_synced(&self) -> Result<()> {
        let _: () = redis::cmd("SET")
            .arg(self.synced_key())
            .arg(chrono::Utc::now().timestamp_millis())
            .query_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.con()).await?;
        Ok(())
    }
}
