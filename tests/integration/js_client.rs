//! The bundled browser client (static/pigeon-client.js) against the real server, run by
//! Node.js (whose WebSocket is the browser's API): it reconnects after a drop and resumes with
//! `since=` and per-topic offsets, missing nothing and repeating nothing.

use std::process::Stdio;
use std::time::Duration;

use pigeon::auth::{self, Keys, Role};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::util::{TestApp, SECRET};

async fn push(app: &TestApp, token: &str, target: Value, body: &str) {
    let (s, out) = app
        .call(
            "POST",
            "/api/v1/groups/directsend",
            token,
            Some(json!([{"type": "websocket",
            "message": body, "sendList": [target]}])),
        )
        .await;
    assert_eq!(s, 200, "{out}");
}

#[tokio::test]
async fn the_browser_client_resumes_after_a_drop() {
    let app = TestApp::spawn().await;
    let (tenant, admin) = app.tenant("acme").await;
    let token = Keys::new(SECRET)
        .sign(&auth::claims(
            Role::Subscriber,
            Some(tenant),
            "js",
            None,
            3600,
        ))
        .unwrap();
    let url = format!("{}/ws", app.base.replacen("http", "ws", 1));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/client_story.js");
    let mut node = Command::new("node")
        .args([
            "--experimental-websocket",
            "--no-warnings",
            script,
            &url,
            &token,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Node.js 20+ is part of this machine kind)");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("node answers in time")
            .unwrap()
            .expect("node printed a line")
    };

    assert_eq!(next_line().await, "ready");
    tokio::time::sleep(Duration::from_millis(200)).await;
    push(&app, &admin, json!({"target": "js"}), "p1").await;
    push(&app, &admin, json!({"topic": "news"}), "t1").await;
    assert_eq!(next_line().await, "dropped");
    // Sent while the client is away.
    push(&app, &admin, json!({"target": "js"}), "p2").await;
    push(&app, &admin, json!({"topic": "news"}), "t2").await;
    push(&app, &admin, json!({"target": "js"}), "p3").await;

    let report: Value = serde_json::from_str(&next_line().await).unwrap();
    assert_eq!(report["user"], json!(["p1", "p2", "p3"]));
    assert_eq!(report["topic"], json!(["t1", "t2"]));
    assert_eq!(report["opens"], 2);
    assert!(node.wait().await.unwrap().success());
}
