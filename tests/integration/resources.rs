//! Tenants, levels and groups: CRUD in the API's shapes, and tenant isolation.

use serde_json::json;

use crate::util::TestApp;

#[tokio::test]
async fn health_answers_once_up() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // Every answer carries a request id: the caller's, or a new one.
    assert!(res.headers().get("x-request-id").is_some());
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Pigeon"));
    let js = app
        .client
        .get(app.url("/static/pigeon-client.js"))
        .send()
        .await
        .unwrap();
    assert!(js.text().await.unwrap().contains("class PigeonClient"));
}

#[tokio::test]
async fn level_crud_in_the_original_shape() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.tenant("acme").await;
    let body = json!({"name": "ten-minutes-five-messages-one-day", "intervalTime": 10,
                      "unit": "minute", "expTime": 1, "expUnit": "day", "batchCount": 5});
    let (s, level) = app
        .call("POST", "/api/v1/levels", &admin, Some(body.clone()))
        .await;
    assert_eq!(s, 201, "{level}");
    for (k, v) in body.as_object().unwrap() {
        assert_eq!(&level[k], v, "field {k}");
    }
    let id = level["id"].as_str().unwrap().to_string();

    let (s, list) = app.call("GET", "/api/v1/levels", &admin, None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (s, by_name) = app
        .call(
            "GET",
            "/api/v1/levels/ten-minutes-five-messages-one-day",
            &admin,
            None,
        )
        .await;
    assert_eq!((s, &by_name["id"]), (200, &level["id"]));

    let (s, patched) = app
        .call(
            "PATCH",
            &format!("/api/v1/levels/{id}"),
            &admin,
            Some(json!({"batchCount": 7})),
        )
        .await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["batchCount"], 7);
    assert_eq!(patched["intervalTime"], 10);

    let (s, put) = app
        .call(
            "PUT",
            &format!("/api/v1/levels/{id}"),
            &admin,
            Some(json!({"name": "hourly", "intervalTime": 1, "unit": "hour", "batchCount": 3})),
        )
        .await;
    assert_eq!(s, 200, "{put}");
    assert_eq!(
        (
            put["name"].as_str(),
            put["unit"].as_str(),
            put["expTime"].as_i64()
        ),
        (Some("hourly"), Some("hour"), Some(0))
    );

    // The original system's path is an alias.
    let (s, legacy) = app.call("GET", "/api/v1.5/Levels", &admin, None).await;
    assert_eq!(s, 200);
    assert_eq!(legacy[0]["name"], "hourly");

    let (s, _) = app
        .call("DELETE", &format!("/api/v1/levels/{id}"), &admin, None)
        .await;
    assert_eq!(s, 204);
    let (s, err) = app
        .call("GET", &format!("/api/v1/levels/{id}"), &admin, None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(err["error"]["code"], "not_found");
}

#[tokio::test]
async fn group_crud_resolves_level_names() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "Critical", 1, 10).await;
    app.level(&admin, "Slow", 3600, 1).await;
    let body = json!({"name": "webhookToChat", "description": "chat", "type": "webhook",
        "levelName": "Critical", "config": {"template": "Hi {name}"},
        "sendList": [{"target": "chat room 7", "method": "post", "url": "http://127.0.0.1:9/notify",
                      "timeout": 10, "headers": {"Authorization": "Bearer x"},
                      "contentType": "form", "body": {"message": "Hi {name}"}}]});
    let (s, group) = app
        .call("POST", "/api/v1/groups", &admin, Some(body.clone()))
        .await;
    assert_eq!(s, 201, "{group}");
    for k in [
        "name",
        "description",
        "type",
        "levelName",
        "config",
        "sendList",
    ] {
        assert_eq!(group[k], body[k], "field {k}");
    }
    let id = group["id"].as_str().unwrap().to_string();

    let (s, again) = app
        .call("POST", "/api/v1/groups", &admin, Some(body.clone()))
        .await;
    assert_eq!(
        (s, again["error"]["code"].as_str()),
        (409, Some("duplicate"))
    );

    let (s, patched) = app
        .call(
            "PATCH",
            &format!("/api/v1/groups/{id}"),
            &admin,
            Some(json!({"levelName": "Slow"})),
        )
        .await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["levelName"], "Slow");
    assert_eq!(patched["sendList"], body["sendList"]);

    // A level in use cannot go.
    let (s, err) = app
        .call("DELETE", "/api/v1/levels/Slow", &admin, None)
        .await;
    assert_eq!((s, err["error"]["code"].as_str()), (409, Some("in_use")));

    let (s, list) = app.call("GET", "/api/v1/groups", &admin, None).await;
    assert_eq!((s, list.as_array().unwrap().len()), (200, 1));
    // One group's view also tells how much waits for its pigeon (the level is hourly now).
    let queued = app
        .send(&admin, json!([{"groupId": id, "variables": {"name": "x"}}, {"groupId": id, "variables": {"name": "y"}}]))
        .await;
    assert_eq!(queued.len(), 2);
    let (s, one) = app
        .call("GET", &format!("/api/v1/groups/{id}"), &admin, None)
        .await;
    assert_eq!(
        (s, &one["queue"]),
        (200, &json!({"queued": 2, "inFlight": 0}))
    );
    let (s, _) = app
        .call("DELETE", &format!("/api/v1/groups/{id}"), &admin, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .call("GET", &format!("/api/v1/groups/{id}"), &admin, None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .call("DELETE", "/api/v1/levels/Slow", &admin, None)
        .await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let app = TestApp::spawn().await;
    let receiver = crate::util::Receiver::start().await;
    let (_, a) = app.tenant("a").await;
    let (_, b) = app.tenant("b").await;
    let level = app.level(&a, "fast", 1, 10).await;
    let group = app.webhook_group(&a, "g", "fast", &receiver.url).await;
    let msg = app
        .send(&a, json!([{"groupId": group, "message": "secret"}]))
        .await[0];

    for path in [
        format!("/api/v1/levels/{}", level["id"].as_str().unwrap()),
        "/api/v1/levels/fast".to_string(),
        format!("/api/v1/groups/{group}"),
        format!("/api/v1/messages/{msg}"),
    ] {
        let (s, _) = app.call("GET", &path, &b, None).await;
        assert_eq!(s, 404, "{path}");
    }
    let (s, list) = app.call("GET", "/api/v1/groups", &b, None).await;
    assert_eq!((s, list.as_array().unwrap().len()), (200, 0));
    let (s, err) = app
        .call(
            "POST",
            "/api/v1/groups/send",
            &b,
            Some(json!([{"groupId": group, "message": "x"}])),
        )
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("unknown_group"))
    );
    let (s, _) = app
        .call("DELETE", &format!("/api/v1/groups/{group}"), &b, None)
        .await;
    assert_eq!(s, 404);
    // Same names are fine in another tenant.
    app.level(&b, "fast", 1, 10).await;

    // A sender may send but not manage; a token of a tenant that does not exist is refused.
    let sender = app.token(pigeon::auth::Role::Sender, Some(uuid::Uuid::now_v7()), "s");
    let (s, _) = app.call("GET", "/api/v1/levels", &sender, None).await;
    assert_eq!(s, 401);
}
