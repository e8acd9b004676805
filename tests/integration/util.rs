//! The test harness: a real Pigeon on port 0 against the real PostgreSQL (a fresh database per
//! test, dropped afterwards) and Redis (a fresh key prefix per test, deleted afterwards), a
//! local HTTP receiver standing in for webhook targets, and small helpers to call the API.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pigeon::auth::{self, Keys, Role};
use pigeon::config::Settings;
use pigeon::engine::Engine;
use serde_json::{json, Value};
use uuid::Uuid;

pub const SECRET: &str = "integration-test-secret";

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn pg_base() -> String {
    std::env::var("TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database and a Redis prefix of one test; both are removed when it drops.
pub struct Scratch {
    pub db_url: String,
    pub prefix: String,
}

impl Scratch {
    pub fn new() -> Scratch {
        let id = Uuid::new_v4().simple().to_string();
        Scratch {
            db_url: format!("{}/pigeon_t_{}", pg_base(), &id[..16]),
            prefix: format!("pigeon-t-{id}"),
        }
    }

    pub fn settings(&self) -> Settings {
        let mut s = Settings::defaults().expect("default settings");
        s.server.port = 0;
        s.server.workers = 1;
        s.database.url = self.db_url.clone();
        s.database.pool_size = 4;
        s.engine.redis_url = redis_url();
        s.engine.prefix = self.prefix.clone();
        s.engine.sync_interval_secs = 1;
        s.auth.jwt_secret = SECRET.into();
        s.delivery.http_timeout_secs = 5;
        s
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let db = self.db_url.clone();
        let prefix = self.prefix.clone();
        block_on_own_thread(async move {
            let _ = pigeon::store::drop_database(&db).await;
            let _ = delete_prefix(&redis_url(), &prefix).await;
        });
    }
}

/// Runs a future to completion on a runtime of its own, on a thread of its own: `Drop` may run
/// inside a test's runtime, where blocking on it would panic.
fn block_on_own_thread(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fut)
    })
    .join();
}

pub async fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    }
    Ok(())
}

/// A running Pigeon on its own thread and actix System.
pub struct TestApp {
    pub api: ApiClient,
    stop: Option<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Last: dropped after the app has stopped.
    pub scratch: Arc<Scratch>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let scratch = Arc::new(Scratch::new());
        let mut settings = scratch.settings();
        tweak(&mut settings);
        Self::start(scratch, settings, None).await
    }

    /// Starts an app on an existing scratch (a second node, or a restart), optionally with an
    /// engine of the test's own.
    pub async fn start(
        scratch: Arc<Scratch>,
        settings: Settings,
        engine: Option<Arc<dyn Engine>>,
    ) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                match pigeon::start(settings, listener, engine).await {
                    Ok(service) => {
                        let _ = tx.send(Ok((service.addr, service.server.handle())));
                        let _ = service.run().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        let (addr, handle) = tokio::task::spawn_blocking(move || rx.recv())
            .await
            .expect("join")
            .expect("app thread")
            .expect("app starts");
        TestApp {
            api: ApiClient::new(&format!("http://{addr}")),
            stop: Some(handle),
            thread: Some(thread),
            scratch,
        }
    }

    /// Stops the server and its actors (a graceful stop).
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(h) = self.stop.take() {
            h.stop(false).await;
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl std::ops::Deref for TestApp {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

/// Calls one Pigeon's API (in-process or a child process) with tokens signed by [`SECRET`].
pub struct ApiClient {
    pub base: String,
    pub root: String,
    pub client: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str) -> ApiClient {
        let root = Keys::new(SECRET)
            .sign(&auth::claims(Role::Root, None, "test-root", None, 3600))
            .expect("sign");
        ApiClient {
            base: base.to_string(),
            root,
            // A hung server fails the test instead of hanging the suite.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn token(&self, role: Role, tenant: Option<Uuid>, sub: &str) -> String {
        Keys::new(SECRET)
            .sign(&auth::claims(role, tenant, sub, None, 3600))
            .expect("sign")
    }

    /// Creates a tenant and returns (its id, an admin token for it).
    pub async fn tenant(&self, name: &str) -> (Uuid, String) {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/tenants",
                &self.root,
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
        (id, self.token(Role::Admin, Some(id), "test-admin"))
    }

    /// One API call; returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn level(&self, token: &str, name: &str, interval_secs: i64, batch: i64) -> Value {
        let (s, b) = self
            .call(
                "POST",
                "/api/v1/levels",
                token,
                Some(
                    json!({"name": name, "intervalTime": interval_secs, "unit": "second",
                            "expTime": 1, "expUnit": "day", "batchCount": batch}),
                ),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b
    }

    /// A webhook group whose one target posts to `url`.
    pub async fn webhook_group(&self, token: &str, name: &str, level: &str, url: &str) -> Uuid {
        let (s, b) = self
            .call(
                "POST",
                "/api/v1/groups",
                token,
                Some(json!({"name": name, "type": "webhook", "levelName": level,
                            "sendList": [{"target": "receiver", "url": url}]})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn send(&self, token: &str, sends: Value) -> Vec<Uuid> {
        let (s, b) = self
            .call("POST", "/api/v1/groups/send", token, Some(sends))
            .await;
        assert_eq!(s, 202, "{b}");
        b.as_array()
            .unwrap()
            .iter()
            .map(|e| e["messageId"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    pub async fn message(&self, token: &str, id: Uuid) -> Value {
        let (s, b) = self
            .call("GET", &format!("/api/v1/messages/{id}"), token, None)
            .await;
        assert_eq!(s, 200, "{b}");
        b
    }

    /// Waits until the message reaches `state`, or panics showing where it is.
    pub async fn wait_state(&self, token: &str, id: Uuid, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let m = self.message(token, id).await;
            if m["state"] == state {
                return m;
            }
            if Instant::now() > deadline {
                panic!("message {id} never reached {state}: {m:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(h) = self.stop.take() {
            block_on_own_thread(h.stop(false));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Vec<Received>,
    /// Statuses to answer, first to last; 200 once empty.
    script: std::collections::VecDeque<u16>,
}

/// A local HTTP server standing in for a webhook target: it records every request.
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
    stop: Option<actix_web::dev::ServerHandle>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::scripted(vec![]).await
    }

    /// Answers the given statuses in turn, then 200.
    pub async fn scripted(statuses: Vec<u16>) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            got: vec![],
            script: statuses.into(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = state.clone();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || {
                    let shared = shared.clone();
                    actix_web::App::new().default_service(actix_web::web::to(
                        move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                            let shared = shared.clone();
                            async move {
                                let mut st = shared.lock().unwrap();
                                st.got.push(Received {
                                    method: req.method().to_string(),
                                    path: req.path().to_string(),
                                    query: req.query_string().to_string(),
                                    headers: req
                                        .headers()
                                        .iter()
                                        .map(|(k, v)| {
                                            (
                                                k.as_str().to_string(),
                                                v.to_str().unwrap_or("").to_string(),
                                            )
                                        })
                                        .collect(),
                                    body: String::from_utf8_lossy(&body).to_string(),
                                    at: Instant::now(),
                                });
                                let status = st.script.pop_front().unwrap_or(200);
                                actix_web::HttpResponse::build(
                                    actix_web::http::StatusCode::from_u16(status).unwrap(),
                                )
                                .body(format!("answer {status}"))
                            }
                        },
                    ))
                })
                .workers(1)
                .listen(listener)
                .expect("listen")
                .run();
                let _ = tx.send(server.handle());
                let _ = server.await;
            });
        });
        let handle = tokio::task::spawn_blocking(move || rx.recv())
            .await
            .unwrap()
            .unwrap();
        Receiver {
            url: format!("http://{addr}"),
            state,
            stop: Some(handle),
        }
    }

    pub fn got(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().got.len()
    }

    /// Waits until at least `n` requests arrived; returns them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!("receiver got {} of {n} requests: {got:#?}", got.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(h) = self.stop.take() {
            block_on_own_thread(h.stop(false));
        }
    }
}
