//! One behaviour suite for every engine: each check is an async fn over `&dyn Engine`, run for
//! [`MemoryEngine`] and [`RedisEngine`] by the wrappers `suite!` generates.
//!
//! Redis tests use `REDIS_URL` (default `redis://127.0.0.1:6379`) and a fresh key prefix per
//! test; a guard deletes that prefix's keys when the test ends, even on panic.

use std::collections::HashSet;

use uuid::Uuid;

use super::memory::MemoryEngine;
use super::redis::RedisEngine;
use super::{Engine, Millis, QueueDepth};

const LEASE: Millis = 30_000;

fn ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::new_v4()).collect()
}

fn depth(queued: u64, in_flight: u64) -> QueueDepth {
    QueueDepth { queued, in_flight }
}

fn sorted(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// The suite.

async fn kind_and_ping(e: &dyn Engine) {
    assert!(matches!(e.kind(), "memory" | "redis"));
    e.ping().await.unwrap();
}

async fn claim_respects_max_and_due_order(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let v = ids(5);
    // Enqueued out of order: due 300, 100, 500, 200, 400.
    let items: Vec<(Uuid, Millis)> = [2, 0, 4, 1, 3]
        .iter()
        .map(|&i| (v[i], 100 * (i as Millis + 1)))
        .collect();
    e.enqueue(g, &items).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(5, 0));

    assert_eq!(e.claim(g, 2, 1_000, LEASE).await.unwrap(), vec![v[0], v[1]]);
    assert_eq!(e.depth(g).await.unwrap(), depth(3, 2));
    assert_eq!(e.claim(g, 2, 1_000, LEASE).await.unwrap(), vec![v[2], v[3]]);
    assert_eq!(e.claim(g, 2, 1_000, LEASE).await.unwrap(), vec![v[4]]);
    assert!(e.claim(g, 2, 1_000, LEASE).await.unwrap().is_empty());
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 5));
    // max = 0 claims nothing.
    let g2 = Uuid::new_v4();
    e.enqueue(g2, &[(v[0], 0)]).await.unwrap();
    assert!(e.claim(g2, 0, 1_000, LEASE).await.unwrap().is_empty());
    assert_eq!(e.depth(g2).await.unwrap(), depth(1, 0));
}

async fn not_yet_due_waits(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let v = ids(2);
    e.enqueue(g, &[(v[0], 1_000), (v[1], 2_000)]).await.unwrap();
    assert!(e.claim(g, 10, 999, LEASE).await.unwrap().is_empty());
    assert_eq!(e.claim(g, 10, 1_000, LEASE).await.unwrap(), vec![v[0]]);
    assert!(e.claim(g, 10, 1_999, LEASE).await.unwrap().is_empty());
    assert_eq!(e.claim(g, 10, 2_000, LEASE).await.unwrap(), vec![v[1]]);
}

async fn enqueue_is_idempotent(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let v = ids(2);
    e.enqueue(g, &[(v[0], 100), (v[0], 100)]).await.unwrap();
    e.enqueue(g, &[(v[0], 100)]).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(1, 0));
    assert_eq!(e.claim(g, 10, 1_000, LEASE).await.unwrap(), vec![v[0]]);
    assert!(e.claim(g, 10, 1_000, LEASE).await.unwrap().is_empty());

    // Re-enqueueing takes the new due time.
    e.enqueue(g, &[(v[1], 100)]).await.unwrap();
    e.enqueue(g, &[(v[1], 5_000)]).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(1, 1));
    assert!(e.claim(g, 10, 1_000, LEASE).await.unwrap().is_empty());
    assert_eq!(e.claim(g, 10, 5_000, LEASE).await.unwrap(), vec![v[1]]);
}

async fn enqueue_leaves_in_flight_alone(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let v = ids(1);
    e.enqueue(g, &[(v[0], 0)]).await.unwrap();
    assert_eq!(e.claim(g, 10, 1_000, 500).await.unwrap(), vec![v[0]]);
    e.enqueue(g, &[(v[0], 0)]).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 1));
    assert!(e.claim(g, 10, 1_200, 500).await.unwrap().is_empty());
    // The claim still decides: it lapses at 1 500 and only then comes back.
    assert_eq!(e.claim(g, 10, 1_500, 500).await.unwrap(), vec![v[0]]);
}

async fn lapsed_claims_come_back(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let v = ids(2);
    e.enqueue(g, &[(v[0], 0)]).await.unwrap();
    assert_eq!(e.claim(g, 10, 1_000, 500).await.unwrap(), vec![v[0]]);
    e.enqueue(g, &[(v[1], 1_200)]).await.unwrap();
    assert!(e.claim(g, 10, 1_199, 500).await.unwrap().is_empty());
    assert_eq!(e.depth(g).await.unwrap(), depth(1, 1));
    // At 1 500 the claim on v0 lapses (deadline <= now) and is due at 1 500: v1 (due 1 200)
    // comes first.
    assert_eq!(e.claim(g, 1, 1_500, 500).await.unwrap(), vec![v[1]]);
    assert_eq!(e.depth(g).await.unwrap(), depth(1, 1));
    assert_eq!(e.claim(g, 1, 1_500, 500).await.unwrap(), vec![v[0]]);
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 2));
    // Both lapse at 2 000.
    assert_eq!(
        sorted(e.claim(g, 10, 2_000, 500).await.unwrap()),
        sorted(v.clone())
    );
}

async fn ack_removes_for_good(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let v = ids(2);
    e.enqueue(g, &[(v[0], 0), (v[1], 0)]).await.unwrap();
    let claimed = e.claim(g, 10, 1_000, 500).await.unwrap();
    assert_eq!(claimed.len(), 2);
    e.ack(g, &[v[0]]).await.unwrap();
    e.ack(g, &[Uuid::new_v4()]).await.unwrap(); // unknown: ignored
    e.ack(g, &[]).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 1));
    // Long after every deadline only the unacked one comes back.
    assert_eq!(e.claim(g, 10, 100_000, 500).await.unwrap(), vec![v[1]]);
    e.ack(g, &[v[1]]).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 0));
    assert!(e.claim(g, 10, 1_000_000, 500).await.unwrap().is_empty());
}

async fn release_requeues_at_time(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let v = ids(1);
    e.enqueue(g, &[(v[0], 0)]).await.unwrap();
    assert_eq!(e.claim(g, 10, 1_000, LEASE).await.unwrap(), vec![v[0]]);
    e.release(g, &[(v[0], 5_000)]).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(1, 0));
    assert!(e.claim(g, 10, 4_999, LEASE).await.unwrap().is_empty());
    assert_eq!(e.claim(g, 10, 5_000, LEASE).await.unwrap(), vec![v[0]]);
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 1));
}

async fn remove_cancels_anywhere(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let v = ids(3);
    e.enqueue(g, &[(v[0], 0)]).await.unwrap();
    assert_eq!(e.claim(g, 10, 1_000, 500).await.unwrap(), vec![v[0]]);
    e.enqueue(g, &[(v[1], 2_000), (v[2], 2_000)]).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(2, 1));
    e.remove(g, &[v[0], v[1], Uuid::new_v4()]).await.unwrap();
    e.remove(g, &[]).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(1, 0));
    assert_eq!(e.claim(g, 10, 100_000, 500).await.unwrap(), vec![v[2]]);
}

async fn drop_group_forgets_everything(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let other = Uuid::new_v4();
    let v = ids(3);
    e.enqueue(g, &[(v[0], 0), (v[1], 0)]).await.unwrap();
    e.enqueue(other, &[(v[2], 0)]).await.unwrap();
    assert_eq!(e.claim(g, 1, 1_000, LEASE).await.unwrap().len(), 1);
    assert!(e.acquire_lease(g, "a", 60_000).await.unwrap());
    assert!(e.acquire_lease(other, "a", 60_000).await.unwrap());

    e.drop_group(g).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 0));
    assert!(e.claim(g, 10, 1_000_000, LEASE).await.unwrap().is_empty());
    assert!(e.acquire_lease(g, "b", 60_000).await.unwrap());
    // The other group is untouched.
    assert_eq!(e.depth(other).await.unwrap(), depth(1, 0));
    assert!(!e.acquire_lease(other, "b", 60_000).await.unwrap());
    // Dropping an unknown group is fine.
    e.drop_group(Uuid::new_v4()).await.unwrap();
}

async fn depth_counts(e: &dyn Engine) {
    let g = Uuid::new_v4();
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 0));
    let v = ids(4);
    // Two due, two not yet due: all count as queued.
    e.enqueue(g, &[(v[0], 0), (v[1], 0), (v[2], 10_000), (v[3], 20_000)])
        .await
        .unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(4, 0));
    e.claim(g, 10, 1_000, LEASE).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(2, 2));
}

async fn leases(e: &dyn Engine) {
    let g = Uuid::new_v4();
    assert!(e.acquire_lease(g, "a", 60_000).await.unwrap());
    assert!(!e.acquire_lease(g, "b", 60_000).await.unwrap());
    assert!(e.acquire_lease(g, "a", 60_000).await.unwrap()); // renewal
    e.release_lease(g, "b").await.unwrap(); // not b's: ignored
    assert!(!e.acquire_lease(g, "b", 60_000).await.unwrap());
    e.release_lease(g, "a").await.unwrap();
    assert!(e.acquire_lease(g, "b", 60_000).await.unwrap());
    assert!(!e.acquire_lease(g, "a", 60_000).await.unwrap());
    // Leases are per group.
    assert!(e.acquire_lease(Uuid::new_v4(), "a", 60_000).await.unwrap());
    // Releasing a lease nobody holds is fine.
    e.release_lease(Uuid::new_v4(), "a").await.unwrap();
}

async fn lease_expires(e: &dyn Engine) {
    let g = Uuid::new_v4();
    assert!(e.acquire_lease(g, "a", 50).await.unwrap());
    assert!(!e.acquire_lease(g, "b", 50).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    assert!(e.acquire_lease(g, "b", 60_000).await.unwrap());
    assert!(!e.acquire_lease(g, "a", 60_000).await.unwrap());
    assert!(e.acquire_lease(g, "a", 0).await.is_err());
}

async fn synced_marker(e: &dyn Engine) {
    assert!(!e.is_synced().await.unwrap());
    e.mark_synced().await.unwrap();
    assert!(e.is_synced().await.unwrap());
    e.mark_synced().await.unwrap();
    assert!(e.is_synced().await.unwrap());
}

async fn large_batches(e: &dyn Engine) {
    // More than one chunk for every batched call.
    let g = Uuid::new_v4();
    let v = ids(2_345);
    let items: Vec<(Uuid, Millis)> = v
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as Millis))
        .collect();
    e.enqueue(g, &items).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(2_345, 0));
    let claimed = e.claim(g, 10_000, 1_000_000, LEASE).await.unwrap();
    assert_eq!(claimed, v, "claimed in due order");
    let later: Vec<(Uuid, Millis)> = v.iter().map(|&id| (id, 2_000_000)).collect();
    e.release(g, &later).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(2_345, 0));
    assert_eq!(
        e.claim(g, usize::MAX, 2_000_000, LEASE)
            .await
            .unwrap()
            .len(),
        2_345
    );
    e.ack(g, &v).await.unwrap();
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 0));
}

async fn concurrent_claims_never_overlap(e: &dyn Engine) {
    let g = Uuid::new_v4();
    let v = ids(1_000);
    let items: Vec<(Uuid, Millis)> = v.iter().map(|&id| (id, 0)).collect();
    e.enqueue(g, &items).await.unwrap();

    let worker = |_: usize| async move {
        let mut mine = Vec::new();
        loop {
            let got = e.claim(g, 7, 1_000, LEASE).await.unwrap();
            if got.is_empty() {
                break mine;
            }
            mine.extend(got);
            tokio::task::yield_now().await;
        }
    };
    let results = futures::future::join_all((0..4).map(worker)).await;

    let mut seen = HashSet::new();
    for (i, mine) in results.iter().enumerate() {
        assert!(
            !mine.is_empty(),
            "worker {i} got nothing: claims did not interleave"
        );
        for id in mine {
            assert!(seen.insert(*id), "{id} claimed twice");
        }
    }
    assert_eq!(seen, v.into_iter().collect::<HashSet<_>>());
    assert_eq!(e.depth(g).await.unwrap(), depth(0, 1_000));
}

// ---------------------------------------------------------------------------------------------
// Running it against both engines.

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Deletes every key under its prefix when dropped (also while unwinding from a failed test).
struct PrefixCleanup {
    url: String,
    prefix: String,
}

impl Drop for PrefixCleanup {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}*", self.prefix);
        // Drop may run inside the test's runtime: clean up from a thread with its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async move {
                let client = redis::Client::open(url.as_str()).expect("redis url");
                let mut con = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("cleanup connection");
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1_000)
                        .query_async(&mut con)
                        .await
                        .expect("scan");
                    if !keys.is_empty() {
                        let _: i64 = redis::cmd("DEL")
                            .arg(&keys)
                            .query_async(&mut con)
                            .await
                            .expect("del");
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            });
        });
        if cleanup.join().is_err() {
            eprintln!("could not clean up redis keys under {}", self.prefix);
        }
    }
}

async fn redis_engine() -> (RedisEngine, PrefixCleanup) {
    let url = redis_url();
    let prefix = format!("pigeon-test-{}", Uuid::new_v4());
    let guard = PrefixCleanup {
        url: url.clone(),
        prefix: prefix.clone(),
    };
    let engine = RedisEngine::connect(&url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("connect to {url} (set REDIS_URL): {e}"));
    (engine, guard)
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory_engine {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::MemoryEngine::new()).await;
                }
            )*
        }
        mod redis_engine {
            $(
                #[tokio::test]
                async fn $name() {
                    let (engine, _cleanup) = super::redis_engine().await;
                    super::$name(&engine).await;
                }
            )*
        }
    };
}

suite!(
    kind_and_ping,
    claim_respects_max_and_due_order,
    not_yet_due_waits,
    enqueue_is_idempotent,
    enqueue_leaves_in_flight_alone,
    lapsed_claims_come_back,
    ack_removes_for_good,
    release_requeues_at_time,
    remove_cancels_anywhere,
    drop_group_forgets_everything,
    depth_counts,
    leases,
    lease_expires,
    synced_marker,
    large_batches,
    concurrent_claims_never_overlap,
);

// ---------------------------------------------------------------------------------------------
// Redis only.

#[tokio::test]
async fn redis_losing_the_marker_means_not_synced() {
    let (engine, cleanup) = redis_engine().await;
    engine.mark_synced().await.unwrap();
    assert!(engine.is_synced().await.unwrap());
    // What a FLUSHDB or a restart without persistence does, limited to this test's prefix.
    let client = redis::Client::open(cleanup.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let deleted: i64 = redis::cmd("DEL")
        .arg(format!("{}:synced", cleanup.prefix))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(!engine.is_synced().await.unwrap());
}

#[tokio::test]
async fn redis_keys_are_prefixed_and_hash_tagged() {
    let (engine, cleanup) = redis_engine().await;
    let g = Uuid::new_v4();
    let v = ids(2);
    engine.enqueue(g, &[(v[0], 0), (v[1], 0)]).await.unwrap();
    engine.claim(g, 1, 1_000, LEASE).await.unwrap();
    engine.acquire_lease(g, "a", 60_000).await.unwrap();
    let client = redis::Client::open(cleanup.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let base = format!("{}:g:{{{g}}}", cleanup.prefix);
    for (suffix, kind) in [("q", "zset"), ("f", "zset"), ("lease", "string")] {
        let t: String = redis::cmd("TYPE")
            .arg(format!("{base}:{suffix}"))
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(t, kind, "{base}:{suffix}");
    }
    let slots: Vec<i64> = futures::future::join_all(["q", "f", "lease"].map(|s| {
        let mut con = con.clone();
        let key = format!("{base}:{s}");
        async move {
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async::<i64>(&mut con)
                .await
                .unwrap_or(-1)
        }
    }))
    .await;
    // CLUSTER KEYSLOT is refused by a standalone server without cluster mode: then skip.
    if slots.iter().all(|&s| s >= 0) {
        assert!(slots.windows(2).all(|w| w[0] == w[1]), "{slots:?}");
    }
    engine.drop_group(g).await.unwrap();
}

#[tokio::test]
async fn redis_skips_garbage_members() {
    let (engine, cleanup) = redis_engine().await;
    let g = Uuid::new_v4();
    let v = ids(1);
    engine.enqueue(g, &[(v[0], 10)]).await.unwrap();
    let client = redis::Client::open(cleanup.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("ZADD")
        .arg(format!("{}:g:{{{g}}}:q", cleanup.prefix))
        .arg(0)
        .arg("not-a-uuid")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(engine.claim(g, 10, 1_000, LEASE).await.unwrap(), vec![v[0]]);
    assert_eq!(engine.depth(g).await.unwrap(), depth(0, 1));
}
