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
//! | `<prefix>:ws:{<stream>}`           | stream     | a catch-up stream; field `p` = payload; `PX`       |
//! | `<prefix>:ws:{<stream>}:lost`      | string     | newest offset ever trimmed from it; `PX`           |
//! | `<prefix>:ws:{<key>}:on`           | sorted set | node ids with sessions for `key`; score = expiry   |
//! | `<prefix>:ws:push` (channel)       | pub/sub    | payloads published to every node                   |
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
//! A catch-up stream and its `lost` key share a hash tag, so `stream_append` is one script over
//! both; `stream_since` reads them in one `MULTI`. Offsets are made from the caller's `now`
//! (`<now>-0`, or `<last ms>-<last seq + 1>` when `now` is not past the last one), as in the memory
//! engine, so the ages judged by trimming and by `stream_since` are on the callers' clock.
//! Presence marks are scored with the caller's `now + ttl`; the key itself expires (`PEXPIRE`, only
//! ever pushed later) when its longest mark does. Pub/sub uses a dedicated connection per
//! subscription.
//!
//! The `synced` marker disappears with the data when Redis restarts without persistence or is
//! flushed, which is what `is_synced` reports.

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::Script;
use uuid::Uuid;

use super::memory::{missing_stream_lost, parse_since};
use super::{offset_key, Engine, EngineError, Millis, QueueDepth, Replay, Result, Subscription};

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

/// KEYS: stream, lost. ARGV: payload, keep, max age ms, now ms.
/// Appends the payload at offset `<now>-0` (or `<last ms>-<last seq + 1>` when `now` is not past the
/// stream's last offset), trims the stream to its newest `keep` entries and drops the entries older
/// than `now - max age`, stores the newest trimmed offset in `lost` if it is newer than the one
/// there, and makes both keys expire `max age` from now. Returns the new offset.
const STREAM_APPEND: &str = r#"
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function newer(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am > bm or (am == bm and as > bs)
end
local function offset(ms, seq)
  return string.format('%.0f-%.0f', ms, seq)
end

local keep = tonumber(ARGV[2])
local max_age = tonumber(ARGV[3])
local now = tonumber(ARGV[4])

local ms, seq = math.max(now, 0), 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local last_ms, last_seq = parse(info[i + 1])
      if ms <= last_ms then
        ms, seq = last_ms, last_seq + 1
      end
    end
  end
end
if ms == 0 and seq == 0 then
  seq = 1
end
local id = offset(ms, seq)
redis.call('XADD', KEYS[1], id, 'p', ARGV[1])

local trimmed = false
local len = redis.call('XLEN', KEYS[1])
if len > keep then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', string.format('%.0f', len - keep))
  trimmed = gone[#gone][1]
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
end
local cutoff = now - max_age
if cutoff > 0 then
  local min_id = offset(cutoff, 0)
  local old = redis.call('XREVRANGE', KEYS[1], '(' .. min_id, '-', 'COUNT', 1)
  if #old > 0 then
    if not trimmed or newer(old[1][1], trimmed) then
      trimmed = old[1][1]
    end
    redis.call('XTRIM', KEYS[1], 'MINID', min_id)
  end
end
if trimmed then
  local stored = redis.call('GET', KEYS[2])
  if not stored or newer(trimmed, stored) then
    redis.call('SET', KEYS[2], trimmed)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return id
"#;

/// [`Engine`] on Redis (standalone; key layout ready for Cluster).
#[derive(Clone)]
pub struct RedisEngine {
    /// Opens the dedicated connections of pub/sub subscriptions.
    client: redis::Client,
    con: ConnectionManager,
    prefix: String,
    enqueue: Script,
    claim: Script,
    release: Script,
    acquire_lease: Script,
    release_lease: Script,
    stream_append: Script,
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
        let mut con = ConnectionManager::new(client.clone()).await?;
        let engine = Self {
            client,
            stream_append: Script::new(STREAM_APPEND),
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
            &engine.stream_append,
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

    /// The catch-up stream `stream` and the key holding its newest trimmed offset.
    fn stream_keys(&self, stream: &str) -> (String, String) {
        let key = format!("{}:ws:{{{}}}", self.prefix, stream);
        let lost = format!("{key}:lost");
        (key, lost)
    }

    fn presence_key(&self, key: &str) -> String {
        format!("{}:ws:{{{}}}:on", self.prefix, key)
    }

    fn push_channel(&self) -> String {
        format!("{}:ws:push", self.prefix)
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
        let (key, lost) = self.stream_keys(stream);
        let id: String = self
            .stream_append
            .key(&key)
            .key(&lost)
            .arg(payload)
            .arg(i64::try_from(keep).unwrap_or(i64::MAX))
            .arg(max_age)
            .arg(now)
            .invoke_async(&mut self.con())
            .await?;
        Ok(id)
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
        let (key, lost_key) = self.stream_keys(stream);
        // The first offset after `since` (none after the largest one), read inclusively.
        let start = match since {
            (ms, seq) if seq < u64::MAX => Some((ms, seq + 1)),
            (ms, _) if ms < u64::MAX => Some((ms + 1, 0)),
            _ => None,
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("EXISTS")
            .arg(&key)
            .cmd("GET")
            .arg(&lost_key);
        let read = match start {
            Some((ms, seq)) if limit > 0 => {
                pipe.cmd("XRANGE")
                    .arg(&key)
                    .arg(format!("{ms}-{seq}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(i64::try_from(limit).unwrap_or(i64::MAX));
                true
            }
            _ => false,
        };
        let mut con = self.con();
        let (exists, stored, range): (bool, Option<String>, StreamRangeReply) = if read {
            pipe.query_async(&mut con).await?
        } else {
            let (exists, stored): (bool, Option<String>) = pipe.query_async(&mut con).await?;
            (exists, stored, StreamRangeReply::default())
        };

        let trimmed_after = stored.is_some_and(|s| match offset_key(&s) {
            Some(newest_trimmed) => newest_trimmed > since,
            None => {
                tracing::warn!(key = lost_key, value = s, "not an offset: assuming a gap");
                true
            }
        });
        let lost = trimmed_after || (!exists && missing_stream_lost(since, now, max_age));
        let mut entries = Vec::with_capacity(range.ids.len());
        for entry in range.ids {
            match entry.get::<String>("p") {
                Some(payload) => entries.push((entry.id, payload)),
                None => tracing::warn!(
                    key,
                    id = entry.id,
                    "skipping a stream entry without payload"
                ),
            }
        }
        Ok(Replay { entries, lost })
    }

    async fn publish(&self, payload: &[u8]) -> Result<()> {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(self.push_channel())
            .arg(payload)
            .query_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn subscribe(&self) -> Result<Subscription> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.push_channel()).await?;
        Ok(pubsub
            .into_on_message()
            .map(|msg| msg.get_payload_bytes().to_vec())
            .boxed())
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
        let mut con = self.con();
        let expires_at = now.saturating_add(ttl);
        for chunk in keys.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for key in chunk {
                let key = self.presence_key(key);
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now)
                    .ignore()
                    .cmd("ZADD")
                    .arg(&key)
                    .arg(expires_at)
                    .arg(node)
                    .ignore()
                    // A new key gets the ttl; an existing one only ever lives longer, so a short
                    // touch never cuts another node's longer mark.
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ttl)
                    .arg("NX")
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ttl)
                    .arg("GT")
                    .ignore();
            }
            let _: () = pipe.query_async(&mut con).await?;
        }
        Ok(())
    }

    async fn presence_drop(&self, key: &str, node: &str) -> Result<()> {
        let _: i64 = redis::cmd("ZREM")
            .arg(self.presence_key(key))
            .arg(node)
            .query_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn presence_any(&self, key: &str, now: Millis) -> Result<bool> {
        let live: u64 = redis::cmd("ZCOUNT")
            .arg(self.presence_key(key))
            .arg(format!("({now}"))
            .arg("+inf")
            .query_async(&mut self.con())
            .await?;
        Ok(live > 0)
    }
}
