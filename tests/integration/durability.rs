//! The durability rule with the real binary: `kill -9` with messages queued, a Redis
//! `FLUSHDB`, a restart, and every accepted message is delivered.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{Receiver, Scratch, SECRET};

/// The Redis database this test owns (it is flushed): nothing else in the suite uses it.
const REDIS_DB: u32 = 15;

fn redis_db_url() -> String {
    format!(
        "{}/{REDIS_DB}",
        crate::util::redis_url().trim_end_matches('/')
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `pigeon serve` as a child process, configured only through the environment, on this
/// test file's own Redis database.
fn serve(scratch: &Scratch, port: u16) -> Child {
    serve_on(scratch, port, &redis_db_url(), &[])
}

/// `pigeon serve` on a given Redis, with extra settings.
fn serve_on(scratch: &Scratch, port: u16, redis: &str, extra: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .arg("serve")
        .envs(extra.iter().copied())
        .env("DATABASE_URL", &scratch.db_url)
        .env("REDIS_URL", redis)
        .env("PIGEON__ENGINE__PREFIX", &scratch.prefix)
        .env("PIGEON__SERVER__PORT", port.to_string())
        .env("PIGEON__SERVER__HOST", "127.0.0.1")
        .env("PIGEON__AUTH__JWT_SECRET", SECRET)
        .env("PIGEON__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pigeon serve")
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pigeon at {base} never became healthy");
}

async fn flushdb() {
    let client = redis::Client::open(redis_db_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn kill_flush_restart_delivers_every_accepted_message() {
    let scratch = Scratch::new();
    let receiver = Receiver::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut node = Killed(serve(&scratch, port));
    wait_healthy(&client, &base).await;

    // Drive the child through the same helpers as the in-process app.
    let api = crate::util::ApiClient::new(&base);
    let (_, admin) = api.tenant("acme").await;
    api.level(&admin, "slow-drip", 1, 2).await;
    let group = api
        .webhook_group(&admin, "g", "slow-drip", &receiver.url)
        .await;
    let sends: Vec<_> = (0..12)
        .map(|i| json!({"groupId": group, "message": format!("m{i}")}))
        .collect();
    let ids = api.send(&admin, json!(sends)).await;
    assert_eq!(ids.len(), 12);
    // Let a little go out, then kill -9 with most still queued.
    receiver.wait_for(1, Duration::from_secs(10)).await;
    node.0.kill().expect("kill -9");
    node.0.wait().unwrap();
    let before = receiver.count();
    assert!(
        before < 12,
        "the kill came too late to prove anything ({before} delivered)"
    );
    flushdb().await;

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _node = Killed(serve(&scratch, port));
    wait_healthy(&client, &base).await;
    let api = crate::util::ApiClient::new(&base);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: HashSet<String> = receiver
            .got()
            .iter()
            .map(|r| r.json()["message"].as_str().unwrap_or_default().to_string())
            .collect();
        if got.len() == 12 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 12 delivered: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in ids {
        api.wait_state(&admin, id, "delivered", Duration::from_secs(10))
            .await;
    }
    // At-least-once: a duplicate is possible only for what was in flight at the kill.
    assert!(
        receiver.count() <= 12 + 2,
        "{} requests for 12 messages",
        receiver.count()
    );
    drop(_node);
    flushdb().await;
}

#[tokio::test]
async fn when_a_node_dies_another_adopts_its_groups() {
    let scratch = Scratch::new();
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    let redis = crate::util::redis_url();
    let fast_leases = [("PIGEON__ENGINE__GROUP_LEASE_SECS", "3")];
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = Killed(serve_on(&scratch, port_a, &redis, &fast_leases));
    let base_a = format!("http://127.0.0.1:{port_a}");
    wait_healthy(&client, &base_a).await;
    let api_a = crate::util::ApiClient::new(&base_a);
    let (_, admin) = api_a.tenant("acme").await;
    api_a.level(&admin, "fast", 1, 10).await;
    // Node A takes the group's lease at once (it took the API call).
    let group = api_a
        .webhook_group(&admin, "g", "fast", &receiver.url)
        .await;
    let first = api_a
        .send(&admin, json!([{"groupId": group, "message": "via a"}]))
        .await[0];
    api_a
        .wait_state(&admin, first, "delivered", Duration::from_secs(10))
        .await;

    let _b = Killed(serve_on(&scratch, port_b, &redis, &fast_leases));
    let base_b = format!("http://127.0.0.1:{port_b}");
    wait_healthy(&client, &base_b).await;
    a.0.kill().expect("kill -9 node a");
    a.0.wait().unwrap();

    // Node B takes over once A's lease lapses, and delivers what is sent through it.
    let api_b = crate::util::ApiClient::new(&base_b);
    let second = api_b
        .send(&admin, json!([{"groupId": group, "message": "via b"}]))
        .await[0];
    api_b
        .wait_state(&admin, second, "delivered", Duration::from_secs(20))
        .await;
    let bodies: Vec<_> = receiver
        .got()
        .iter()
        .map(|r| r.json()["message"].clone())
        .collect();
    assert_eq!(bodies, vec![json!("via a"), json!("via b")]);
}
