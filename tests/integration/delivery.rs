//! Sends through pigeons to a local webhook receiver: templates, pacing, expiry, schedules,
//! repeats, retries, and the at-once `test` and `directsend`.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::util::{Receiver, TestApp};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn webhook_targets_get_rendered_requests_with_delivery_ids() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 10).await;
    let (s, g) = app
        .call("POST", "/api/v1/groups", &admin, Some(json!({
            "name": "hooks", "type": "webhook", "levelName": "fast",
            "sendList": [
                {"target": "json-room", "method": "put", "url": format!("{}/rooms/{{room}}", receiver.url),
                 "timeout": 3, "headers": {"Authorization": "Bearer {token}"}, "contentType": "json",
                 "body": {"message": "Hi {name}", "who": {"first": "{firstName}"}, "n": 7}, "firstName": "Roy"},
                {"target": "form-room", "url": format!("{}/form", receiver.url), "contentType": 2,
                 "body": {"message": "Hi {name} from {subject}"}}
            ]})))
        .await;
    assert_eq!(s, 201, "{g}");
    let group = g["id"].as_str().unwrap();
    let id = app
        .send(
            &admin,
            json!([{"groupId": group, "subject": "Welcome",
                               "variables": {"name": "Amy", "room": "7", "token": "t0k"}}]),
        )
        .await[0];
    let m = app.wait_state(&admin, id, "delivered", WAIT).await;
    let got = receiver.got();
    assert_eq!(got.len(), 2, "{got:#?}");
    let put = got
        .iter()
        .find(|r| r.path == "/rooms/7")
        .expect("json target");
    assert_eq!(put.method, "PUT");
    assert_eq!(put.header("authorization"), Some("Bearer t0k"));
    assert_eq!(
        put.json(),
        json!({"message": "Hi Amy", "who": {"first": "Roy"}, "n": 7})
    );
    let form = got.iter().find(|r| r.path == "/form").expect("form target");
    assert_eq!(form.method, "POST");
    assert_eq!(
        form.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(form.body, "message=Hi+Amy+from+Welcome");

    // The delivery ids the receivers saw are the ones the message reports.
    let deliveries = m["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    let reported: HashSet<&str> = deliveries
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let seen: HashSet<&str> = got
        .iter()
        .map(|r| r.header("pigeon-delivery-id").unwrap())
        .collect();
    assert_eq!(reported, seen);
    for d in deliveries {
        assert_eq!(d["status"], "delivered");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["responseCode"], 200);
    }
    assert_eq!(deliveries[0]["target"], "json-room");
}

#[tokio::test]
async fn a_pigeon_sends_at_most_batch_count_per_interval() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "two-per-second", 1, 2).await;
    let group = app
        .webhook_group(&admin, "paced", "two-per-second", &receiver.url)
        .await;
    let sends: Vec<_> = (0..6)
        .map(|i| json!({"groupId": group, "message": format!("m{i}")}))
        .collect();
    app.send(&admin, json!(sends)).await;
    let got = receiver.wait_for(6, WAIT).await;

    // Deliveries arrive in bursts, one per wake: split them where the gap is over half an
    // interval, then every burst holds at most batchCount.
    let mut bursts = vec![1usize];
    for w in got.windows(2) {
        if w[1].at.duration_since(w[0].at) > Duration::from_millis(500) {
            bursts.push(1);
        } else {
            *bursts.last_mut().unwrap() += 1;
        }
    }
    assert!(bursts.iter().all(|&n| n <= 2), "bursts {bursts:?}");
    assert!(bursts.len() >= 3, "bursts {bursts:?}");
    let span = got[5].at.duration_since(got[0].at);
    assert!(
        span >= Duration::from_millis(1800),
        "6 messages at 2/s took only {span:?}"
    );
}

#[tokio::test]
async fn expired_messages_are_dropped_unsent() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/levels",
            &admin,
            Some(json!({"name": "lazy", "intervalTime": 2,
            "unit": "second", "expTime": 1, "expUnit": "second", "batchCount": 10})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let group = app.webhook_group(&admin, "g", "lazy", &receiver.url).await;
    // The pigeon's first wake is two seconds after the group was made: by then the message
    // has waited more than its one second.
    let id = app
        .send(&admin, json!([{"groupId": group, "message": "stale"}]))
        .await[0];
    let m = app.wait_state(&admin, id, "expired", WAIT).await;
    assert!(m["deliveries"].as_array().unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn delayed_and_repeated_messages_run_on_time() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 10).await;
    let group = app.webhook_group(&admin, "g", "fast", &receiver.url).await;
    let ids = app
        .send(
            &admin,
            json!([
                {"groupId": group, "message": "later", "schedule": {"delay": "2s"}},
                {"groupId": group, "message": "thrice", "repeat": {"every": "1s", "times": 3}}
            ]),
        )
        .await;
    let m = app.message(&admin, ids[0]).await;
    assert_eq!(m["state"], "scheduled");
    app.wait_state(&admin, ids[0], "delivered", WAIT).await;
    let m = app.wait_state(&admin, ids[1], "delivered", WAIT).await;
    assert_eq!(m["run"], 2);
    let thrice: Vec<_> = receiver
        .got()
        .into_iter()
        .filter(|r| r.json()["message"] == "thrice")
        .collect();
    assert_eq!(thrice.len(), 3);
    let ids: HashSet<_> = thrice
        .iter()
        .map(|r| r.header("pigeon-delivery-id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "each run has its own delivery id");
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_fail() {
    let app = TestApp::spawn_with(|s| s.delivery.backoff_base_secs = 0).await;
    // 503 then 200 for the first message; 400 for the second.
    let flaky = Receiver::scripted(vec![503]).await;
    let broken = Receiver::scripted(vec![400, 400, 400]).await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 10).await;
    let g1 = app.webhook_group(&admin, "flaky", "fast", &flaky.url).await;
    let g2 = app
        .webhook_group(&admin, "broken", "fast", &broken.url)
        .await;
    let ids = app
        .send(
            &admin,
            json!([{"groupId": g1, "message": "a"}, {"groupId": g2, "message": "b"}]),
        )
        .await;
    let m = app.wait_state(&admin, ids[0], "delivered", WAIT).await;
    let d = &m["deliveries"][0];
    assert_eq!(
        (d["attempts"].as_i64(), d["status"].as_str()),
        (Some(2), Some("delivered"))
    );
    let got = flaky.got();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].header("pigeon-delivery-id"),
        got[1].header("pigeon-delivery-id")
    );

    let m = app.wait_state(&admin, ids[1], "failed", WAIT).await;
    let d = &m["deliveries"][0];
    assert_eq!(
        (d["attempts"].as_i64(), d["responseCode"].as_i64()),
        (Some(1), Some(400))
    );
    assert!(d["lastError"].as_str().unwrap().contains("400"), "{d}");
    assert_eq!(broken.count(), 1);
}

#[tokio::test]
async fn changing_a_groups_level_repaces_its_pigeon_at_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "hourly", 3600, 10).await;
    app.level(&admin, "fast", 1, 10).await;
    let group = app
        .webhook_group(&admin, "g", "hourly", &receiver.url)
        .await;
    let id = app
        .send(&admin, json!([{"groupId": group, "message": "now please"}]))
        .await[0];
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), 0, "an hourly pigeon has not woken yet");
    let (s, _) = app
        .call(
            "PATCH",
            &format!("/api/v1/groups/{group}"),
            &admin,
            Some(json!({"levelName": "fast"})),
        )
        .await;
    assert_eq!(s, 200);
    app.wait_state(&admin, id, "delivered", Duration::from_secs(5))
        .await;

    // Deleting the group stops its pigeon and cancels what it had queued.
    let later = app
        .send(
            &admin,
            json!([{"groupId": group, "message": "never", "schedule": {"delay": "2s"}}]),
        )
        .await[0];
    let (s, _) = app
        .call("DELETE", &format!("/api/v1/groups/{group}"), &admin, None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(app.message(&admin, later).await["state"], "cancelled");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn a_message_can_be_cancelled_before_it_runs() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 10).await;
    let group = app.webhook_group(&admin, "g", "fast", &receiver.url).await;
    let id = app
        .send(
            &admin,
            json!([{"groupId": group, "message": "x", "schedule": {"delay": "2s"}}]),
        )
        .await[0];
    let (s, m) = app
        .call("DELETE", &format!("/api/v1/messages/{id}"), &admin, None)
        .await;
    assert_eq!((s, m["state"].as_str()), (200, Some("cancelled")));
    let (s, e) = app
        .call("DELETE", &format!("/api/v1/messages/{id}"), &admin, None)
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("already_finished"))
    );
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn idempotency_key_returns_the_first_answer() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 10).await;
    let group = app.webhook_group(&admin, "g", "fast", &receiver.url).await;
    let body = json!([{"groupId": group, "message": "once"}]);
    let post = |b: serde_json::Value| {
        app.client
            .post(app.url("/api/v1/groups/send"))
            .bearer_auth(&admin)
            .header("Idempotency-Key", "order-42")
            .json(&b)
            .send()
    };
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let second = post(body.clone()).await.unwrap();
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.json::<serde_json::Value>().await.unwrap(), first);
    let other = post(json!([{"groupId": group, "message": "different"}]))
        .await
        .unwrap();
    assert_eq!(other.status(), 409);
    receiver.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn test_and_directsend_deliver_at_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (tenant, admin) = app.tenant("acme").await;
    app.level(&admin, "hourly", 3600, 10).await;
    let (s, g) = app
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(json!({"name": "g", "type": "webhook",
            "levelName": "hourly", "config": {"template": "Hello {name}"},
            "sendList": [{"target": "t", "url": format!("{}/test", receiver.url)}]})),
        )
        .await;
    assert_eq!(s, 201);
    let sender = app.token(pigeon::auth::Role::Sender, Some(tenant), "svc");
    let (s, out) = app
        .call(
            "POST",
            "/api/v1/groups/test",
            &sender,
            Some(json!([{"groupId": g["id"], "subject": "S",
            "useTemplate": true, "variables": {"name": "Roy"}}])),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out[0]["results"][0]["status"], "delivered");
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].json(),
        json!({"subject": "S", "message": "Hello Roy"})
    );

    let (s, out) = app
        .call(
            "POST",
            "/api/v1/groups/directsend",
            &sender,
            Some(json!([{"type": "webhook",
            "subject": "D", "message": "direct", "sendList": [
                {"target": "ok", "url": format!("{}/direct", receiver.url)},
                {"target": "closed", "url": "http://127.0.0.1:9/nobody", "timeout": 1}]}])),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out[0]["results"][0]["status"], "delivered");
    assert_eq!(out[0]["results"][1]["status"], "failed");
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].path, "/direct");
    assert!(got[1].header("pigeon-delivery-id").is_some());
    let (s, e) = app
        .call(
            "POST",
            "/api/v1/groups/directsend",
            &sender,
            Some(json!([{"type": "webhook",
            "body": "x", "sendList": []}])),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );
}

#[tokio::test]
async fn a_wake_larger_than_one_statement_is_recorded_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "wide", 1, 5000).await;
    // 6 messages x 1 000 targets: 6 000 deliveries in one wake, more rows than one statement
    // may bind.
    let targets: Vec<_> = (0..1000)
        .map(|i| json!({"target": format!("t{i}"), "url": receiver.url}))
        .collect();
    let (s, g) = app
        .call(
            "POST",
            "/api/v1/groups",
            &admin,
            Some(json!({"name": "wide", "type": "webhook",
            "levelName": "wide", "sendList": targets})),
        )
        .await;
    assert_eq!(s, 201);
    let sends: Vec<_> = (0..6)
        .map(|i| json!({"groupId": g["id"], "message": format!("m{i}")}))
        .collect();
    let ids = app.send(&admin, json!(sends)).await;
    for id in &ids {
        let m = app
            .wait_state(&admin, *id, "delivered", Duration::from_secs(60))
            .await;
        assert_eq!(m["deliveries"].as_array().unwrap().len(), 1000);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), 6000, "each delivery sent once");
}

#[tokio::test]
async fn concurrent_sends_are_committed_together_and_all_delivered() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 1000).await;
    let group = app.webhook_group(&admin, "g", "fast", &receiver.url).await;
    let calls = (0..64).map(|i| {
        app.send(
            &admin,
            json!([{"groupId": group, "message": format!("m{i}")}]),
        )
    });
    let ids: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 64);
    let got = receiver.wait_for(64, WAIT).await;
    let bodies: HashSet<_> = got
        .iter()
        .map(|r| r.json()["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies.len(), 64);

    // A request may carry at most 1 000 sends (one statement).
    let too_many: Vec<_> = (0..1001)
        .map(|_| json!({"groupId": group, "message": "x"}))
        .collect();
    let (s, e) = app
        .call("POST", "/api/v1/groups/send", &admin, Some(json!(too_many)))
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("too_many_sends"))
    );
}

#[tokio::test]
async fn many_recurring_messages_are_rescheduled_together() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, admin) = app.tenant("acme").await;
    app.level(&admin, "fast", 1, 1000).await;
    let group = app.webhook_group(&admin, "g", "fast", &receiver.url).await;
    let sends: Vec<_> = (0..40)
        .map(|i| json!({"groupId": group, "message": format!("r{i}"), "repeat": {"every": "1s", "times": 2}}))
        .collect();
    let ids = app.send(&admin, json!(sends)).await;
    receiver.wait_for(80, WAIT).await;
    for id in ids {
        let m = app.wait_state(&admin, id, "delivered", WAIT).await;
        assert_eq!(m["run"], 1);
        assert_eq!(
            m["deliveries"].as_array().unwrap().len(),
            2,
            "one delivery per run"
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), 80);
}
