//! A pigeon that panics is restarted by its supervisor and loses no claim.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pigeon::engine::{
    redis::RedisEngine, Engine, Millis, QueueDepth, Replay, Result, Subscription,
};
use serde_json::json;
use uuid::Uuid;

use crate::util::{redis_url, Receiver, Scratch, TestApp};

#[derive(Clone, Copy)]
enum Fault {
    /// Panic in the first `claim`, after the claim was taken (the wake never learns its ids).
    AfterClaim,
    /// Panic in the first `ack` (the wake holds its ids).
    OnAck,
    /// The first pub/sub subscription ends after one message (a dropped Redis connection).
    DropSubscription,
}

/// A real engine that panics once, where told.
struct Faulty {
    inner: RedisEngine,
    fault: Fault,
    fired: AtomicUsize,
}

impl Faulty {
    fn fire(&self, at: Fault) {
        if std::mem::discriminant(&at) == std::mem::discriminant(&self.fault)
            && self.fired.fetch_add(1, Ordering::SeqCst) == 0
        {
            panic!("injected fault");
        }
    }
}

#[async_trait]
impl Engine for Faulty {
    fn kind(&self) -> &'static str {
        "faulty-redis"
    }
    async fn enqueue(&self, g: Uuid, items: &[(Uuid, Millis)]) -> Result<()> {
        self.inner.enqueue(g, items).await
    }
    async fn claim(&self, g: Uuid, max: usize, now: Millis, lease: Millis) -> Result<Vec<Uuid>> {
        let ids = self.inner.claim(g, max, now, lease).await?;
        if !ids.is_empty() {
            self.fire(Fault::AfterClaim);
        }
        Ok(ids)
    }
    async fn ack(&self, g: Uuid, ids: &[Uuid]) -> Result<()> {
        self.fire(Fault::OnAck);
        self.inner.ack(g, ids).await
    }
    async fn release(&self, g: Uuid, items: &[(Uuid, Millis)]) -> Result<()> {
        self.inner.release(g, items).await
    }
    async fn remove(&self, g: Uuid, ids: &[Uuid]) -> Result<()> {
        self.inner.remove(g, ids).await
    }
    async fn drop_group(&self, g: Uuid) -> Result<()> {
        self.inner.drop_group(g).await
    }
    async fn depth(&self, g: Uuid) -> Result<QueueDepth> {
        self.inner.depth(g).await
    }
    async fn acquire_lease(&self, g: Uuid, node: &str, ttl: Millis) -> Result<bool> {
        self.inner.acquire_lease(g, node, ttl).await
    }
    async fn release_lease(&self, g: Uuid, node: &str) -> Result<()> {
        self.inner.release_lease(g, node).await
    }
    async fn is_synced(&self) -> Result<bool> {
        self.inner.is_synced().await
    }
    async fn mark_synced(&self) -> Result<()> {
        self.inner.mark_synced().await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn stream_append(
        &self,
        s: &str,
        p: &str,
        keep: usize,
        age: Millis,
        now: Millis,
    ) -> Result<String> {
        self.inner.stream_append(s, p, keep, age, now).await
    }
    async fn stream_since(
        &self,
        s: &str,
        since: &str,
        limit: usize,
        now: Millis,
        age: Millis,
    ) -> Result<Replay> {
        self.inner.stream_since(s, since, limit, now, age).await
    }
    async fn publish(&self, payload: &[u8]) -> Result<()> {
        self.inner.publish(payload).await
    }
    async fn subscribe(&self) -> Result<Subscription> {
        let stream = self.inner.subscribe().await?;
        if matches!(self.fault, Fault::DropSubscription)
            && self.fired.fetch_add(1, Ordering::SeqCst) == 0
        {
            return Ok(futures::StreamExt::boxed(futures::StreamExt::take(
                stream, 1,
            )));
        }
        Ok(stream)
    }
    async fn presence_touch(
        &self,
        keys: &[String],
        node: &str,
        now: Millis,
        ttl: Millis,
    ) -> Result<()> {
        self.inner.presence_touch(keys, node, now, ttl).await
    }
    async fn presence_drop(&self, key: &str, node: &str) -> Result<()> {
        self.inner.presence_drop(key, node).await
    }
    async fn presence_any(&self, key: &str, now: Millis) -> Result<bool> {
        self.inner.presence_any(key, now).await
    }
}

async fn survives(fault: Fault) {
    let scratch = Arc::new(Scratch::new());
    let mut settings = scratch.settings();
    // A claim the wake never learned of comes back when its lease lapses.
    settings.engine.claim_lease_secs = 2;
    let engine = Faulty {
        inner: RedisEngine::connect(&redis_url(), &scratch.prefix)
            .await
            .unwrap(),
        fault,
        fired: AtomicUsize::new(0),
    };
    let app = TestApp::start(scratch, settings, Some(Arc::new(engine))).await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 10).await;
    let group = app.webhook_group(&admin, "g", "fast", &receiver.url).await;

    let first = app
        .send(&admin, json!([{"groupId": group, "message": "first"}]))
        .await[0];
    app.wait_state(&admin, first, "delivered", Duration::from_secs(15))
        .await;
    // The restarted pigeon keeps working.
    let second = app
        .send(&admin, json!([{"groupId": group, "message": "second"}]))
        .await[0];
    app.wait_state(&admin, second, "delivered", Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bodies: Vec<_> = receiver
        .got()
        .iter()
        .map(|r| r.json()["message"].clone())
        .collect();
    assert_eq!(
        bodies,
        vec![json!("first"), json!("second")],
        "each delivered exactly once"
    );
}

#[tokio::test]
async fn a_pigeon_panicking_after_its_claim_loses_nothing() {
    survives(Fault::AfterClaim).await;
}

#[tokio::test]
async fn a_pigeon_panicking_while_finishing_loses_nothing() {
    survives(Fault::OnAck).await;
}

#[tokio::test]
async fn a_pigeon_that_loses_its_lease_stops_and_the_node_stays_responsive() {
    let app = TestApp::spawn_with(|s| s.engine.group_lease_secs = 3).await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 10).await;
    let group = app.webhook_group(&admin, "g", "fast", &receiver.url).await;
    let first = app
        .send(&admin, json!([{"groupId": group, "message": "before"}]))
        .await[0];
    app.wait_state(&admin, first, "delivered", Duration::from_secs(15))
        .await;

    // Another node takes the group's lease.
    let thief = RedisEngine::connect(&redis_url(), &app.scratch.prefix)
        .await
        .unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:g:{{{group}}}:lease", app.scratch.prefix);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(thief.acquire_lease(group, "thief", 60_000).await.unwrap());
    // The pigeon notices at its next renewal (every second here) and stops.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = app
        .send(&admin, json!([{"groupId": group, "message": "while away"}]))
        .await[0];
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        app.message(&admin, during).await["state"],
        "queued",
        "this node no longer runs the group"
    );
    // The node still answers and its actors still work.
    let (s, out) = app
        .call(
            "POST",
            "/api/v1/groups/test",
            &admin,
            Some(json!([{"groupId": group, "message": "ping"}])),
        )
        .await;
    assert_eq!(
        (s, out[0]["results"][0]["status"].as_str()),
        (200, Some("delivered"))
    );

    // When the other node lets go, this one adopts the group again and delivers.
    thief.release_lease(group, "thief").await.unwrap();
    app.wait_state(&admin, during, "delivered", Duration::from_secs(15))
        .await;
}

#[tokio::test]
async fn pushes_published_while_a_hub_was_unsubscribed_still_arrive() {
    use futures::StreamExt;
    let scratch = Arc::new(Scratch::new());
    let settings = scratch.settings();
    let engine = Faulty {
        inner: RedisEngine::connect(&redis_url(), &scratch.prefix)
            .await
            .unwrap(),
        fault: Fault::DropSubscription,
        fired: AtomicUsize::new(0),
    };
    let app = TestApp::start(scratch, settings, Some(Arc::new(engine))).await;
    let (tenant, admin) = app.tenant("acme").await;
    let token = pigeon::auth::Keys::new(crate::util::SECRET)
        .sign(&pigeon::auth::claims(
            pigeon::auth::Role::Subscriber,
            Some(tenant),
            "fay",
            None,
            3600,
        ))
        .unwrap();
    let url = format!("{}/ws?token={token}", app.base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let push = |body: &'static str| {
        app.call(
            "POST",
            "/api/v1/groups/directsend",
            &admin,
            Some(json!([{"type": "websocket",
            "message": body, "sendList": [{"target": "fay"}]}])),
        )
    };
    // The first push ends the hub's subscription; the next two are published while it is
    // gone (it waits a second before subscribing again).
    for body in ["p1", "p2", "p3"] {
        assert_eq!(push(body).await.0, 200);
    }
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("pushes arrive")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            bodies.push(v["body"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(bodies, vec!["p1", "p2", "p3"]);
    // Nothing twice.
    let extra = tokio::time::timeout(Duration::from_millis(700), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                return Some(t.to_string());
            }
        }
        None
    })
    .await;
    assert!(matches!(extra, Err(_) | Ok(None)), "unexpected {extra:?}");
}
