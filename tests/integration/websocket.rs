//! WebSocket push: real clients (tokio-tungstenite) against one or two nodes sharing
//! PostgreSQL and Redis.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pigeon::auth::{self, Keys, Role};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::util::{TestApp, SECRET};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

fn subscriber(tenant: Uuid, user: &str, topics: Option<Vec<&str>>) -> String {
    let topics = topics.map(|t| t.into_iter().map(String::from).collect());
    Keys::new(SECRET)
        .sign(&auth::claims(
            Role::Subscriber,
            Some(tenant),
            user,
            topics,
            3600,
        ))
        .unwrap()
}

fn ws_url(app: &TestApp, token: &str, since: Option<&str>) -> String {
    let mut url = format!("{}/ws?token={token}", app.base.replacen("http", "ws", 1));
    if let Some(s) = since {
        url.push_str(&format!("&since={s}"));
    }
    url
}

async fn connect(app: &TestApp, token: &str, since: Option<&str>) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(ws_url(app, token, since))
        .await
        .expect("websocket connects");
    ws
}

/// The next JSON frame (control frames are skipped; tungstenite answers pings itself).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection stays open")
            .expect("a valid frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("JSON frame");
        }
    }
}

async fn nothing_within(ws: &mut Ws, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(t)))) => panic!("unexpected frame {t}"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("connection ended: {other:?}"),
        }
    }
}

async fn send_frame(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

async fn subscribe(ws: &mut Ws, topics: &[&str], since: Option<&str>) {
    let mut frame = json!({"type": "subscribe", "topics": topics});
    if let Some(s) = since {
        frame["since"] = json!(s);
    }
    send_frame(ws, frame).await;
    let answer = next(ws).await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
}

/// `directsend` of websocket pushes; returns the per-target results.
async fn push_now(app: &TestApp, token: &str, targets: Value, message: &str) -> Value {
    let (s, out) = app
        .call(
            "POST",
            "/api/v1/groups/directsend",
            token,
            Some(json!([{"type": "websocket",
            "subject": "S", "message": message, "data": {"n": 1}, "sendList": targets}])),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    out[0]["results"].clone()
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let app = TestApp::spawn().await;
    let (tenant, admin) = app.tenant("acme").await;
    let refused = |url: String| async move {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    };
    let base = app.base.replacen("http", "ws", 1);
    assert_eq!(refused(format!("{base}/ws")).await, 401);
    assert_eq!(refused(format!("{base}/ws?token=garbage")).await, 401);
    assert_eq!(
        refused(ws_url(&app, &admin, None)).await,
        401,
        "admin is not a subscriber"
    );
    let mut old = auth::claims(Role::Subscriber, Some(tenant), "u", None, 0);
    old.exp -= 3600;
    let expired = Keys::new(SECRET).sign(&old).unwrap();
    assert_eq!(refused(ws_url(&app, &expired, None)).await, 401);
    let ghost = subscriber(Uuid::now_v7(), "u", None);
    assert_eq!(refused(ws_url(&app, &ghost, None)).await, 401);
    assert_eq!(
        refused(ws_url(
            &app,
            &subscriber(tenant, "u", None),
            Some("yesterday")
        ))
        .await,
        400
    );
    // The header works as well as the query.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("{base}/ws"),
    )
    .unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", subscriber(tenant, "u", None))
            .parse()
            .unwrap(),
    );
    tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer header accepted");
}

#[tokio::test]
async fn a_websocket_group_pushes_to_users_and_records_who_was_online() {
    let app = TestApp::spawn().await;
    let (tenant, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 100).await;
    let (s, g) = app
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(json!({"name": "ws", "type": "websocket",
            "levelName": "fast", "config": {"template": "Hi {name}"},
            "sendList": [{"target": "alice", "name": "Alice"}, {"target": "bob", "name": "Bob"}]})),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let mut alice = connect(&app, &subscriber(tenant, "alice", None), None).await;
    let mut alice_phone = connect(&app, &subscriber(tenant, "alice", None), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = app
        .send(
            &admin,
            json!([{"groupId": g["id"], "subject": "Welcome", "useTemplate": true,
                              "data": {"orderId": 7}}]),
        )
        .await[0];
    for ws in [&mut alice, &mut alice_phone] {
        let push = next(ws).await;
        assert_eq!(push["type"], "push");
        assert_eq!(push["body"], "Hi Alice");
        assert_eq!(push["subject"], "Welcome");
        assert_eq!(push["groupId"], g["id"]);
        assert_eq!(push["data"], json!({"orderId": 7}));
        assert!(push["offset"].as_str().is_some() && push["sentAt"].as_str().is_some());
    }
    let m = app.wait_state(&admin, id, "delivered", WAIT).await;
    let statuses: Vec<_> = m["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["target"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("alice".into(), "delivered".into()),
            ("bob".into(), "queued-offline".into())
        ]
    );
    // The push's id is the delivery's stable id.
    let push_id = m["deliveries"][0]["id"].clone();
    let mut again = connect(&app, &subscriber(tenant, "bob", None), Some("0-0")).await;
    let kept = next(&mut again).await;
    assert_eq!(kept["body"], "Hi Bob", "bob catches up on what he missed");
    assert_ne!(kept["id"], push_id);
}

#[tokio::test]
async fn topics_subscriptions_and_bad_frames() {
    let app = TestApp::spawn().await;
    let (tenant, admin) = app.tenant("acme").await;
    let mut ws = connect(
        &app,
        &subscriber(tenant, "u1", Some(vec!["news", "sports"])),
        None,
    )
    .await;
    subscribe(&mut ws, &["news"], None).await;
    send_frame(&mut ws, json!({"type": "subscribe", "topics": ["secrets"]})).await;
    let e = next(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("forbidden_topic"))
    );
    ws.send(Message::text("not json")).await.unwrap();
    let e = next(&mut ws).await;
    assert_eq!(e["code"], "bad_frame");
    send_frame(&mut ws, json!({"type": "dance"})).await;
    assert_eq!(next(&mut ws).await["code"], "bad_frame");
    send_frame(&mut ws, json!({"type": "ack", "id": "x"})).await;

    // Still connected: topic pushes arrive, unsubscribed ones stop.
    let results = push_now(&app, &admin, json!([{"topic": "news"}]), "headline").await;
    assert_eq!(results[0]["status"], "delivered");
    let push = next(&mut ws).await;
    assert_eq!(
        (push["body"].as_str(), push["topic"].as_str()),
        (Some("headline"), Some("news"))
    );
    send_frame(&mut ws, json!({"type": "unsubscribe", "topics": ["news"]})).await;
    assert_eq!(next(&mut ws).await["type"], "unsubscribed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let results = push_now(&app, &admin, json!([{"topic": "news"}]), "ignored").await;
    assert_eq!(results[0]["status"], "queued-offline");
    nothing_within(&mut ws, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_push_through_one_node_reaches_a_client_on_another() {
    let a = TestApp::spawn().await;
    let b = TestApp::start(a.scratch.clone(), a.scratch.settings(), None).await;
    let (tenant, admin) = a.tenant("acme").await;
    let mut on_b = connect(&b, &subscriber(tenant, "carol", None), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let results = push_now(&a, &admin, json!([{"target": "carol"}]), "across").await;
    assert_eq!(
        results[0]["status"], "delivered",
        "node A sees carol online on node B"
    );
    assert_eq!(next(&mut on_b).await["body"], "across");

    // And through a pigeon, whichever node runs it.
    a.level(&admin, "fast", 1, 10).await;
    let (s, g) = a
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(json!({"name": "ws", "type": "websocket",
            "levelName": "fast", "sendList": [{"target": "carol"}]})),
        )
        .await;
    assert_eq!(s, 201);
    a.send(
        &admin,
        json!([{"groupId": g["id"], "message": "queued across"}]),
    )
    .await;
    assert_eq!(next(&mut on_b).await["body"], "queued across");
}

#[tokio::test]
async fn reconnecting_with_since_replays_without_gap_or_duplicate() {
    let app = TestApp::spawn().await;
    let (tenant, admin) = app.tenant("acme").await;
    let token = subscriber(tenant, "dave", None);
    let mut ws = connect(&app, &token, None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..2 {
        push_now(&app, &admin, json!([{"target": "dave"}]), &format!("m{i}")).await;
    }
    let _ = next(&mut ws).await;
    let second = next(&mut ws).await;
    assert_eq!(second["body"], "m1");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 2..5 {
        push_now(&app, &admin, json!([{"target": "dave"}]), &format!("m{i}")).await;
    }
    let mut ws = connect(&app, &token, second["offset"].as_str()).await;
    // Live pushes racing with the replay are neither lost nor doubled.
    let live = async {
        for i in 5..8 {
            push_now(&app, &admin, json!([{"target": "dave"}]), &format!("m{i}")).await;
        }
    };
    let read = async {
        let mut bodies = Vec::new();
        for _ in 2..8 {
            let f = next(&mut ws).await;
            bodies.push(f["body"].as_str().unwrap().to_string());
        }
        bodies
    };
    let ((), bodies) = tokio::join!(live, read);
    assert_eq!(bodies, (2..8).map(|i| format!("m{i}")).collect::<Vec<_>>());
    nothing_within(&mut ws, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_since_past_retention_gets_a_reset_frame() {
    let app = TestApp::spawn_with(|s| s.websocket.retention_count = 3).await;
    let (tenant, admin) = app.tenant("acme").await;
    let token = subscriber(tenant, "erin", None);
    let first = push_now(&app, &admin, json!([{"target": "erin"}]), "m0").await;
    assert_eq!(first[0]["status"], "queued-offline");
    let mut ws = connect(&app, &token, Some("0-0")).await;
    let m0 = next(&mut ws).await;
    drop(ws);
    for i in 1..6 {
        push_now(&app, &admin, json!([{"target": "erin"}]), &format!("m{i}")).await;
    }
    let mut ws = connect(&app, &token, m0["offset"].as_str()).await;
    let reset = next(&mut ws).await;
    assert_eq!(reset["type"], "reset", "{reset}");
    let kept: Vec<_> = [
        next(&mut ws).await,
        next(&mut ws).await,
        next(&mut ws).await,
    ]
    .iter()
    .map(|f| f["body"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(kept, vec!["m3", "m4", "m5"]);
}

#[tokio::test]
async fn tenants_never_receive_each_others_pushes() {
    let app = TestApp::spawn().await;
    let (a, admin_a) = app.tenant("a").await;
    let (b, _) = app.tenant("b").await;
    let mut in_b = connect(&app, &subscriber(b, "same-user", None), None).await;
    subscribe(&mut in_b, &["same-topic"], None).await;
    let mut in_a = connect(&app, &subscriber(a, "same-user", None), None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let results = push_now(
        &app,
        &admin_a,
        json!([{"target": "same-user"}, {"topic": "same-topic"}]),
        "for a",
    )
    .await;
    assert_eq!(results[0]["status"], "delivered");
    assert_eq!(
        results[1]["status"], "queued-offline",
        "nobody in tenant a follows the topic"
    );
    assert_eq!(next(&mut in_a).await["body"], "for a");
    nothing_within(&mut in_b, Duration::from_millis(700)).await;
}

#[tokio::test]
async fn a_stalled_client_is_closed_while_others_keep_receiving() {
    let app = TestApp::spawn_with(|s| s.websocket.outbound_buffer_bytes = 64 * 1024).await;
    let (tenant, admin) = app.tenant("acme").await;
    let token = subscriber(tenant, "watcher", None);
    let mut stalled = connect(&app, &token, None).await;
    subscribe(&mut stalled, &["firehose"], None).await;
    let mut reader = connect(&app, &token, None).await;
    subscribe(&mut reader, &["firehose"], None).await;

    let body = "x".repeat(2000);
    let rounds = 12;
    let per_round = 400;
    let reading = async {
        let mut n = 0;
        while n < rounds * per_round {
            let f = next(&mut reader).await;
            assert_eq!(f["type"], "push");
            n += 1;
        }
        n
    };
    let pushing = async {
        for _ in 0..rounds {
            let targets: Vec<_> = (0..per_round)
                .map(|_| json!({"topic": "firehose"}))
                .collect();
            push_now(&app, &admin, json!(targets), &body).await;
        }
    };
    let (got, ()) = tokio::join!(reading, pushing);
    assert_eq!(got, rounds * per_round, "the reading client got every push");

    // The stalled client finds, after whatever was already on its way, a 1008 close.
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(20), stalled.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => break Some(frame.code),
            Ok(Some(Ok(_))) => continue,
            Ok(_) => break None,
            Err(_) => panic!("the stalled client was never closed"),
        }
    };
    assert_eq!(code, Some(CloseCode::Policy));
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pigeon_ws_slow_client_closed_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_silent_client_is_dropped() {
    let app = TestApp::spawn_with(|s| {
        s.websocket.heartbeat_interval_secs = Some(1);
        s.websocket.client_timeout_secs = Some(2);
    })
    .await;
    let (tenant, _) = app.tenant("acme").await;
    let mut ws = connect(&app, &subscriber(tenant, "quiet", None), None).await;
    // Not reading means not answering pings: after the timeout the server hangs up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(_) = msg {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(ended, Ok(true));
}
