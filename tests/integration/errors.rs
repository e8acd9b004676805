//! Bad input: every case gets `{"error": {"code", "message"}}` with the right status, and
//! changes nothing.

use serde_json::{json, Value};

use crate::util::TestApp;

async fn raw(app: &TestApp, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str, mentions: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "message {message:?} should mention {mentions:?}"
    );
}

#[tokio::test]
async fn no_or_bad_token_is_401() {
    let app = TestApp::spawn().await;
    let (s, b) = raw(&app, "/api/v1/levels", None, "{}").await;
    assert_error(s, &b, 401, "unauthorized", "token");
    let (s, b) = raw(&app, "/api/v1/levels", Some("not.a.jwt"), "{}").await;
    assert_error(s, &b, 401, "unauthorized", "invalid token");
    let forged = pigeon::auth::Keys::new("another-secret")
        .sign(&pigeon::auth::claims(
            pigeon::auth::Role::Root,
            None,
            "x",
            None,
            60,
        ))
        .unwrap();
    let (s, b) = app.call("GET", "/api/v1/tenants", &forged, None).await;
    assert_error(s, &b, 401, "unauthorized", "invalid token");
    // An expired token.
    let mut old = pigeon::auth::claims(pigeon::auth::Role::Root, None, "x", None, 0);
    old.exp -= 3600;
    let expired = pigeon::auth::Keys::new(crate::util::SECRET)
        .sign(&old)
        .unwrap();
    let (s, _) = app.call("GET", "/api/v1/tenants", &expired, None).await;
    assert_eq!(s, 401);
    // Root without a tenant cannot touch tenant resources; a sender cannot create tenants.
    let (s, b) = app.call("GET", "/api/v1/levels", &app.root, None).await;
    assert_error(s, &b, 403, "forbidden", "tenant");
}

#[tokio::test]
async fn bad_levels_and_groups_change_nothing() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.tenant("acme").await;
    let ok = json!({"name": "l", "intervalTime": 1, "unit": "second", "batchCount": 5});

    let (s, b) = raw(&app, "/api/v1/levels", Some(&admin), "{\"name\": ").await;
    assert_error(s, &b, 400, "malformed_json", "EOF");
    let mut typo = ok.clone();
    typo.as_object_mut().unwrap().remove("batchCount");
    typo["batchcount"] = json!(5);
    let (s, b) = app.call("POST", "/api/v1/levels", &admin, Some(typo)).await;
    assert_error(s, &b, 400, "invalid_body", "batchcount");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/levels",
            &admin,
            Some(json!({"name": "l", "intervalTime": 1, "unit": "fortnight", "batchCount": 5})),
        )
        .await;
    assert_error(s, &b, 400, "invalid_unit", "fortnight");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/levels",
            &admin,
            Some(json!({"name": "l", "intervalTime": 1, "unit": "second", "batchCount": 0})),
        )
        .await;
    assert_error(s, &b, 400, "invalid_field", "batchCount");
    let (s, b) = app.call("POST", "/api/v1/levels", &admin, Some(json!({"name": "l", "intervalTime": 1, "unit": "second", "batchCount": 1, "expUnit": "week"}))).await;
    assert_error(s, &b, 400, "invalid_unit", "week");
    let (s, b) = app
        .call("POST", "/api/v1/levels", &admin, Some(json!([1, 2])))
        .await;
    assert_error(s, &b, 400, "invalid_body", "");
    let (s, b) = app.call("GET", "/api/v1/levels", &admin, None).await;
    assert_eq!(
        (s, b.as_array().unwrap().len()),
        (200, 0),
        "nothing was created"
    );

    app.level(&admin, "fast", 1, 5).await;
    let group = |extra: Value| {
        let mut g = json!({"name": "g", "type": "webhook", "levelName": "fast",
                           "sendList": [{"url": "http://127.0.0.1:9/x"}]});
        for (k, v) in extra.as_object().unwrap() {
            g[k] = v.clone();
        }
        g
    };
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(group(json!({"levelName": "nope"}))),
        )
        .await;
    assert_error(s, &b, 400, "unknown_level", "nope");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(group(json!({"type": "pigeonpost"}))),
        )
        .await;
    assert_error(s, &b, 400, "invalid_type", "pigeonpost");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(group(json!({"sendlist": []}))),
        )
        .await;
    assert_error(s, &b, 400, "invalid_body", "sendlist");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(group(json!({"sendList": [{"target": "no url"}]}))),
        )
        .await;
    assert_error(s, &b, 400, "invalid_target", "url");
    // Target objects stay open maps: unknown fields there are the receiver's business.
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(group(
                json!({"sendList": [{"url": "http://127.0.0.1:9/x", "firstName": "Roy"}]}),
            )),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = app.call("GET", "/api/v1/groups", &admin, None).await;
    assert_eq!((s, b.as_array().unwrap().len()), (200, 1));

    let (s, b) = app.call("GET", "/api/v1/nothing-here", &admin, None).await;
    assert_error(s, &b, 404, "not_found", "nothing-here");
    let (s, b) = app
        .call("GET", "/api/v1/groups/not-a-uuid", &admin, None)
        .await;
    assert_error(s, &b, 404, "not_found", "group");
}

#[tokio::test]
async fn bad_sends_queue_nothing() {
    let app = TestApp::spawn_with(|s| s.server.max_body_bytes = 4096).await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 5).await;
    let (s, g) = app
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(json!({"name": "g", "type": "webhook", "levelName": "fast",
            "sendList": [{"url": "http://127.0.0.1:9/x", "body": {"text": "Hi {name}"}}]})),
        )
        .await;
    assert_eq!(s, 201);
    let group = g["id"].as_str().unwrap();

    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups/send",
            &admin,
            Some(json!([{"groupId": group}])),
        )
        .await;
    assert_error(s, &b, 400, "missing_variable", "'name'");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups/send",
            &admin,
            Some(json!([{"groupId": group, "variables": {"name": "x"}, "useTemplte": true}])),
        )
        .await;
    assert_error(s, &b, 400, "invalid_body", "useTemplte");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups/send",
            &admin,
            Some(json!([{"groupId": uuid::Uuid::now_v7(), "variables": {"name": "x"}}])),
        )
        .await;
    assert_error(s, &b, 400, "unknown_group", "no group");
    let (s, b) = app
        .call("POST", "/api/v1/groups/send", &admin, Some(json!([])))
        .await;
    assert_error(s, &b, 400, "empty_request", "no sends");
    let (s, b) = app.call("POST", "/api/v1/groups/send", &admin, Some(json!([{"groupId": group, "variables": {"name": "x"}, "schedule": {"delay": "soon"}}]))).await;
    assert_error(s, &b, 400, "invalid_schedule", "soon");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups/send",
            &admin,
            Some(
                json!([{"groupId": group, "variables": {"name": "x"}, "repeat": {"every": "1h"}}]),
            ),
        )
        .await;
    assert_error(s, &b, 400, "invalid_repeat", "times");
    let (s, b) = app.call("POST", "/api/v1/groups/send", &admin, Some(json!([{"groupId": group, "variables": {"name": "x"}, "sendList": [{"url": "ftp://x"}]}]))).await;
    assert_error(s, &b, 400, "invalid_target", "http");
    // The second of two sends is bad: neither is queued.
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups/send",
            &admin,
            Some(json!([{"groupId": group, "variables": {"name": "x"}}, {"groupId": group}])),
        )
        .await;
    assert_error(s, &b, 400, "missing_variable", "[1]");
    let big = "x".repeat(5000);
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/groups/send",
            &admin,
            Some(json!([{"groupId": group, "variables": {"name": big}}])),
        )
        .await;
    assert_error(s, &b, 413, "payload_too_large", "4096");
    let res = app
        .client
        .post(app.url("/api/v1/groups/send"))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);

    // Nothing reached the engine or the store: a pigeon with nothing to do.
    let pool = pigeon::store::pool(&app.scratch.db_url, 1).unwrap();
    let mut conn = pigeon::store::conn(&pool).await.unwrap();
    let pending = pigeon::store::messages::Message::pending_page(&mut conn, None, 10)
        .await
        .unwrap();
    assert!(pending.is_empty(), "{pending:?}");
}
