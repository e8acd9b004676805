//! One behaviour suite for every engine: each check is an async fn over `&dyn Engine`, run for
//! [`MemoryEngine`] and [`RedisEngine`] by the wrappers `suite!` generates.
//!
//! Redis tests use `REDIS_URL` (default `redis://127.0.0.1:6379`) and a fresh key prefix per
//! test; a guard deletes that prefix's keys when the test ends, even on panic.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use uuid::Uuid;

use super::memory::MemoryEngine;
use super::redis::RedisEngine;
use super::{offset_key, Engine, Millis, QueueDepth, Replay, Subscription};

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

// --- WebSocket pushes. Times are fixed (`T0` on), never slept on. ---

/// A fixed "now" for the stream and presence checks.
const T0: Millis = 1_700_000_000_000;
/// Retention by age used by the stream checks (the Redis keys live this long, in real time).
const MAX_AGE: Millis = 60_000;
/// Retention by count large enough never to trim.
const KEEP_ALL: usize = 1_000;

fn key(o: &str) -> (u64, u64) {
    offset_key(o).unwrap_or_else(|| panic!("not an offset: {o}"))
}

fn payloads(r: &Replay) -> Vec<&str> {
    r.entries.iter().map(|(_, p)| p.as_str()).collect()
}

fn offsets(r: &Replay) -> Vec<&str> {
    r.entries.iter().map(|(o, _)| o.as_str()).collect()
}

/// Appends `p0`, `p1`, ... at the given times, returning their offsets.
async fn append_at(e: &dyn Engine, stream: &str, times: &[Millis], keep: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (i, &now) in times.iter().enumerate() {
        out.push(
            e.stream_append(stream, &format!("p{i}"), keep, MAX_AGE, now)
                .await
                .unwrap(),
        );
    }
    out
}

async fn stream_offsets_increase(e: &dyn Engine) {
    // Same ms, an earlier ms, later ms: always strictly increasing.
    let times = [T0, T0, T0, T0 - 5_000, T0 + 1, T0 + 1_000];
    let o = append_at(e, "s", &times, KEEP_ALL).await;
    assert_eq!(o[0], format!("{T0}-0"));
    assert_eq!(o[1], format!("{T0}-1"));
    assert_eq!(
        o[3],
        format!("{T0}-3"),
        "a clock going back keeps the last ms"
    );
    assert_eq!(o[4], format!("{}-0", T0 + 1));
    assert_eq!(o[5], format!("{}-0", T0 + 1_000));
    assert!(o.windows(2).all(|w| key(&w[0]) < key(&w[1])), "{o:?}");
    // Streams are independent.
    let other = e
        .stream_append("s2", "x", KEEP_ALL, MAX_AGE, T0)
        .await
        .unwrap();
    assert_eq!(other, format!("{T0}-0"));
}

async fn stream_since_returns_entries_after(e: &dyn Engine) {
    let o = append_at(e, "s", &[T0, T0, T0 + 1, T0 + 2, T0 + 3], KEEP_ALL).await;
    let r = e
        .stream_since("s", &o[0], 100, T0 + 3, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), ["p1", "p2", "p3", "p4"]);
    assert_eq!(
        offsets(&r),
        o[1..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(!r.lost);
    // Limit: the oldest first.
    let r = e
        .stream_since("s", &o[1], 2, T0 + 3, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), ["p2", "p3"]);
    assert!(!r.lost);
    assert!(e
        .stream_since("s", &o[1], 0, T0 + 3, MAX_AGE)
        .await
        .unwrap()
        .entries
        .is_empty());
    // Nothing after the newest.
    let r = e
        .stream_since("s", &o[4], 100, T0 + 3, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(r, Replay::default());
    // An offset between two entries.
    let r = e
        .stream_since("s", &format!("{T0}-7"), 100, T0 + 3, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), ["p2", "p3", "p4"]);
    // Nothing trimmed: even an ancient offset has lost nothing and gets everything.
    for since in ["0-0", "1-0", &format!("{}-0", T0 - 10 * MAX_AGE)] {
        let r = e
            .stream_since("s", since, 100, T0 + 3, MAX_AGE)
            .await
            .unwrap();
        assert_eq!(
            payloads(&r),
            ["p0", "p1", "p2", "p3", "p4"],
            "since {since}"
        );
        assert!(!r.lost, "since {since}");
    }
    // The largest offset there is: nothing after it.
    let max = format!("{}-{}", u64::MAX, u64::MAX);
    let r = e
        .stream_since("s", &max, 100, T0 + 3, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(r, Replay::default());
}

async fn stream_trims_by_count(e: &dyn Engine) {
    let times: Vec<Millis> = (0..6).map(|i| T0 + i).collect();
    let o = append_at(e, "s", &times, 3).await;
    let kept = ["p3", "p4", "p5"];
    // Before the newest trimmed offset (o[2]): something after it is gone.
    for since in ["0-0", o[0].as_str(), o[1].as_str()] {
        let r = e
            .stream_since("s", since, 100, T0 + 6, MAX_AGE)
            .await
            .unwrap();
        assert_eq!(payloads(&r), kept, "since {since}");
        assert!(r.lost, "since {since}");
    }
    // At or after it: nothing lost.
    let r = e
        .stream_since("s", &o[2], 100, T0 + 6, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), kept);
    assert!(!r.lost);
    let r = e
        .stream_since("s", &o[4], 100, T0 + 6, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), ["p5"]);
    assert!(!r.lost);
    // The newest trimmed offset only moves forward.
    let o6 = e
        .stream_append("s", "p6", 3, MAX_AGE, T0 + 7)
        .await
        .unwrap();
    let r = e
        .stream_since("s", &o[2], 100, T0 + 7, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), ["p4", "p5", "p6"]);
    assert!(r.lost, "o[3] was trimmed after o[2]");
    let r = e
        .stream_since("s", &o[3], 100, T0 + 7, MAX_AGE)
        .await
        .unwrap();
    assert!(!r.lost);
    assert_eq!(r.entries.last().map(|(o, _)| o.as_str()), Some(o6.as_str()));
    // keep = 0 keeps nothing, and the appended offset itself is lost to a reader before it.
    let z = e.stream_append("z", "only", 0, MAX_AGE, T0).await.unwrap();
    let r = e.stream_since("z", "0-0", 100, T0, MAX_AGE).await.unwrap();
    assert!(r.entries.is_empty() && r.lost);
    let r = e.stream_since("z", &z, 100, T0, MAX_AGE).await.unwrap();
    assert_eq!(r, Replay::default());
}

async fn stream_trims_by_age(e: &dyn Engine) {
    // p0 and p1 are older than the last append's now - MAX_AGE (= T0 + 1 000); p2 is exactly
    // that old and stays.
    let times = [T0, T0 + 500, T0 + 1_000, T0 + 1_500, T0 + MAX_AGE + 1_000];
    let o = append_at(e, "s", &times, KEEP_ALL).await;
    let now = T0 + MAX_AGE + 1_000;
    let kept = ["p2", "p3", "p4"];
    for since in ["0-0", o[0].as_str()] {
        let r = e.stream_since("s", since, 100, now, MAX_AGE).await.unwrap();
        assert_eq!(payloads(&r), kept, "since {since}");
        assert!(r.lost, "since {since}");
    }
    for since in [o[1].as_str(), &format!("{}-0", T0 + 700)] {
        let r = e.stream_since("s", since, 100, now, MAX_AGE).await.unwrap();
        assert_eq!(payloads(&r), kept, "since {since}");
        assert!(!r.lost, "since {since}");
    }
    let r = e.stream_since("s", &o[4], 100, now, MAX_AGE).await.unwrap();
    assert_eq!(r, Replay::default());
    // Count and age together: the newest offset trimmed by either counts.
    let o2 = append_at(e, "t", &[T0, T0 + 1, T0 + 2, T0 + 100], 3).await; // count trims t0
    let now = T0 + 2 + MAX_AGE + 1;
    // The count trims o2[1], the age o2[2].
    e.stream_append("t", "late", 3, MAX_AGE, now).await.unwrap();
    let r = e
        .stream_since("t", &o2[1], 100, now, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), ["p3", "late"]);
    assert!(r.lost);
    let r = e
        .stream_since("t", &o2[2], 100, now, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), ["p3", "late"]);
    assert!(!r.lost);
}

async fn stream_missing(e: &dyn Engine) {
    // No such stream: an offset older than now - max_age may have missed entries...
    let old = format!("{}-5", T0 - MAX_AGE - 1);
    let r = e
        .stream_since("nope", &old, 100, T0, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(
        r,
        Replay {
            entries: vec![],
            lost: true
        }
    );
    let r = e
        .stream_since("nope", "0-0", 100, T0, MAX_AGE)
        .await
        .unwrap();
    assert!(r.lost);
    // ... a recent one cannot have.
    for since in [
        format!("{}-0", T0 - MAX_AGE),
        format!("{}-0", T0 - 10),
        format!("{T0}-0"),
    ] {
        let r = e
            .stream_since("nope", &since, 100, T0, MAX_AGE)
            .await
            .unwrap();
        assert_eq!(r, Replay::default(), "since {since}");
    }
}

async fn stream_rejects_bad_input(e: &dyn Engine) {
    e.stream_append("s", "x", KEEP_ALL, MAX_AGE, T0)
        .await
        .unwrap();
    for since in [
        "", "abc", "12", "12-", "-3", "1-2-3", "a-1", "1-b", "-1-0", "1.5-0",
    ] {
        assert!(
            e.stream_since("s", since, 10, T0, MAX_AGE).await.is_err(),
            "since {since:?} accepted"
        );
        assert!(e
            .stream_since("nope", since, 10, T0, MAX_AGE)
            .await
            .is_err());
    }
    assert!(e.stream_append("s", "x", KEEP_ALL, 0, T0).await.is_err());
}

/// The next payload of `sub`, failing the test after 5 s rather than hanging.
async fn next_payload(sub: &mut Subscription) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("no payload within 5 s")
        .expect("subscription ended")
}

async fn publish_reaches_subscribers(e: &dyn Engine) {
    // Publishing with nobody listening is fine.
    e.publish(b"nobody").await.unwrap();
    let mut a = e.subscribe().await.unwrap();
    let sent: [&[u8]; 3] = [b"one", b"two", b"\x00\xffthree"];
    for p in sent {
        e.publish(p).await.unwrap();
    }
    for p in sent {
        assert_eq!(next_payload(&mut a).await, p);
    }
    let mut b = e.subscribe().await.unwrap();
    e.publish(b"both").await.unwrap();
    assert_eq!(next_payload(&mut a).await, b"both");
    assert_eq!(next_payload(&mut b).await, b"both");
    drop(a);
    e.publish(b"b only").await.unwrap();
    assert_eq!(next_payload(&mut b).await, b"b only");
}

async fn presence(e: &dyn Engine) {
    let ttl = 30_000;
    let keys = vec!["u1".to_owned(), "u2".to_owned()];
    assert!(!e.presence_any("u1", T0).await.unwrap());
    e.presence_touch(&keys, "n1", T0, ttl).await.unwrap();
    e.presence_touch(&[], "n1", T0, ttl).await.unwrap();
    assert!(e.presence_any("u1", T0).await.unwrap());
    assert!(e.presence_any("u2", T0 + ttl - 1).await.unwrap());
    assert!(!e.presence_any("u3", T0).await.unwrap());
    // Past the ttl the mark is dead.
    assert!(!e.presence_any("u2", T0 + ttl).await.unwrap());
    assert!(!e.presence_any("u2", T0 + 10 * ttl).await.unwrap());
    // Dropped.
    e.presence_drop("u1", "n1").await.unwrap();
    assert!(!e.presence_any("u1", T0).await.unwrap());
    assert!(e.presence_any("u2", T0).await.unwrap());
    e.presence_drop("u1", "n1").await.unwrap(); // again: fine
    e.presence_drop("never", "n1").await.unwrap();
    // Two nodes: one dropping leaves the other's mark.
    let k = vec!["k".to_owned()];
    e.presence_touch(&k, "a", T0, ttl).await.unwrap();
    e.presence_touch(&k, "b", T0, ttl).await.unwrap();
    e.presence_drop("k", "a").await.unwrap();
    assert!(e.presence_any("k", T0).await.unwrap());
    e.presence_drop("k", "b").await.unwrap();
    assert!(!e.presence_any("k", T0).await.unwrap());
    // A touch renews a mark; a later touch by another node does not shorten it.
    e.presence_touch(&k, "a", T0, ttl).await.unwrap();
    e.presence_touch(&k, "a", T0 + ttl - 1, ttl).await.unwrap();
    assert!(e.presence_any("k", T0 + 2 * ttl - 2).await.unwrap());
    e.presence_touch(&k, "b", T0 + ttl - 1, 1).await.unwrap();
    assert!(e.presence_any("k", T0 + 2 * ttl - 2).await.unwrap());
    assert!(e.presence_touch(&k, "a", T0, 0).await.is_err());
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
    stream_offsets_increase,
    stream_since_returns_entries_after,
    stream_trims_by_count,
    stream_trims_by_age,
    stream_missing,
    stream_rejects_bad_input,
    publish_reaches_subscribers,
    presence,
);

// ---------------------------------------------------------------------------------------------
// Memory only.

#[tokio::test]
async fn memory_stream_expires_after_max_age_without_appends() {
    let e = MemoryEngine::new();
    let o = append_at(&e, "s", &[T0, T0 + 10], 2).await;
    e.stream_append("s", "p2", 2, MAX_AGE, T0 + 20)
        .await
        .unwrap(); // trims o[0]
                   // Alive until T0 + 20 + MAX_AGE.
    let r = e
        .stream_since("s", &o[1], 100, T0 + 19 + MAX_AGE, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), ["p2"]);
    // Then gone with its memory of trims: only the age of `since` tells.
    let r = e
        .stream_since("s", "0-0", 100, T0 + 20 + MAX_AGE, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(
        r,
        Replay {
            entries: vec![],
            lost: true
        }
    );
    let recent = format!("{}-0", T0 + 20 + 1);
    let r = e
        .stream_since("s", &recent, 100, T0 + 20 + MAX_AGE, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(r, Replay::default());
    // A new append starts a fresh stream.
    let n = e
        .stream_append("s", "new", 2, MAX_AGE, T0 + 30 + MAX_AGE)
        .await
        .unwrap();
    assert_eq!(n, format!("{}-0", T0 + 30 + MAX_AGE));
    let r = e
        .stream_since("s", "0-0", 100, T0 + 30 + MAX_AGE, MAX_AGE)
        .await
        .unwrap();
    assert_eq!(payloads(&r), ["new"]);
    assert!(!r.lost);
}

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

#[tokio::test]
async fn redis_ws_keys_are_prefixed_tagged_and_expire() {
    let (engine, cleanup) = redis_engine().await;
    for i in 0..3 {
        engine
            .stream_append("room:7", &format!("p{i}"), 2, MAX_AGE, T0 + i)
            .await
            .unwrap();
    }
    engine
        .presence_touch(&["user:9".to_owned()], "n1", T0, 20_000)
        .await
        .unwrap();
    // A shorter touch by another node does not cut the key's life.
    engine
        .presence_touch(&["user:9".to_owned()], "n2", T0, 1_000)
        .await
        .unwrap();
    let client = redis::Client::open(cleanup.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let p = &cleanup.prefix;
    for (key, kind, max_ttl, min_ttl) in [
        (format!("{p}:ws:{{room:7}}"), "stream", MAX_AGE, 1_000),
        (format!("{p}:ws:{{room:7}}:lost"), "string", MAX_AGE, 1_000),
        (format!("{p}:ws:{{user:9}}:on"), "zset", 20_000, 10_000),
    ] {
        let t: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(t, kind, "{key}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(min_ttl < ttl && ttl <= max_ttl, "{key}: pttl {ttl}");
    }
    let lost: String = redis::cmd("GET")
        .arg(format!("{p}:ws:{{room:7}}:lost"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(lost, format!("{T0}-0"));
    let len: i64 = redis::cmd("XLEN")
        .arg(format!("{p}:ws:{{room:7}}"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(len, 2);
}
