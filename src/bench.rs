//! `pigeon bench`: a load tool that drives a *running* Pigeon server over its HTTP API and
//! prints a short human-readable report on stdout (progress goes to tracing on stderr).
//!
//! The tool mints its own tokens in-process from the same [`Settings`] the binary loads
//! (`auth.jwt_secret`), so it must run with the same configuration (and `PIGEON__AUTH__JWT_SECRET`)
//! as the server. The server is `--url` (default `http://127.0.0.1:<server.port>`, i.e.
//! `http://127.0.0.1:10001` with the default config). Every scenario creates its own tenant
//! (`bench-<scenario>-<random>`), level and webhook group, and deletes the group at the end
//! (which cancels whatever is still queued and stops its pigeon) unless `--keep` is given.
//! Webhook targets point at a receiver the tool starts itself on `--receiver-ip` (default
//! 127.0.0.1, port chosen by the OS): an actix-web server on its own thread and System that
//! answers `200` and counts requests and distinct `Pigeon-Delivery-Id`s. The server must be able
//! to reach that address, so in practice it runs on the same machine.
//!
//! # Scenarios
//!
//! * `send` — the **accept path**: `POST /api/v1/groups/send` with `--per-request` messages per
//!   request from `--concurrency` tokio tasks sharing one keep-alive reqwest client, for
//!   `--duration` seconds (default 10) after a `--warmup` (default 1 s, not counted), or for
//!   `--requests` measured requests (capped at 600 s unless `--duration` is also given).
//!   The group's level wakes once a **day**, so nothing is delivered while measuring: the
//!   figure is validation + template check + one `INSERT` per request + the engine enqueue,
//!   i.e. what the durability rule (202 only after commit) costs. `--live` uses a one-second
//!   level instead (batchCount 10000), so the pigeon delivers to the receiver during the run
//!   and the figure is the accept path under concurrent delivery load. Reports requests/s,
//!   accepted messages/s (counted from the `messageId`s in the 202 answers), p50/p99/max
//!   request latency (of successful requests) and the error count with the first error seen.
//!   The clock runs from the end of the warm-up to the completion of the last measured request.
//! * `deliver` — the **delivery path**: a level with `intervalTime` 1 second and `batchCount`
//!   `--batch-count` (default 10000); `--messages` (default 20000) messages are queued in
//!   requests of `--chunk` (default 1000); then it waits (at most `--timeout` seconds, default
//!   120, counted from the first send) until the receiver has seen that many distinct delivery
//!   ids. Deliveries/s is measured from the first delivery received to the last one (the M-th
//!   when all arrived); whatever arrived by the timeout is reported. Note the level itself caps
//!   the rate at `batchCount` per second (a wake never overlaps the previous one), so with the
//!   defaults the ceiling is 10000/s and two wakes are needed; the per-second arrival counts
//!   and the bursts (arrivals split at pauses > 150 ms, i.e. one per wake, with their own
//!   rate: the raw delivery speed of one wake, free of the level's cap) show how each wake
//!   went. The receiver then keeps listening for `--settle` seconds (default 3) so that
//!   redeliveries (a repeated `Pigeon-Delivery-Id`) show up, and the server-side state of
//!   `--sample` messages (default 20, spread over the run) is read back with
//!   `GET /api/v1/messages/{id}`: a message the receiver got but the server did not record as
//!   `delivered` means the wake failed after sending.
//! * `baseline` — the **reference ceilings** of the machine, for comparison with the two above:
//!   (1) `redis-benchmark -P 16 -t lpush -n 1000000 -q` against the configured engine Redis
//!   (its host, port, password and database number; skipped if `redis-benchmark` is missing or
//!   its key `mylist` already exists there; the key is deleted afterwards), and (2) PostgreSQL
//!   insert throughput on a scratch database (`<db>_scratch_<random>` next to the configured one,
//!   dropped afterwards) into a table with the same columns, constraints, foreign keys and
//!   indexes as `messages`, through diesel-async with `--connections` (default 32) concurrent
//!   connections, each for `--seconds` (default 5): `INSERT … SELECT * FROM unnest($1::uuid[],
//!   …)` with 100 rows per statement, then the same statement with 1 row, each its own
//!   transaction (autocommit). Reports rows/s and statement latency.
//!
//! * `ws` — **WebSocket fan-out**: `--clients` (default 1000) WebSocket clients
//!   (tokio-tungstenite, one tokio task each, at most `--connect-concurrency` handshakes in
//!   flight) connect to `/ws` with subscriber tokens of a fresh tenant (user `bench-ws-<i>`)
//!   and subscribe to topic `bench`; once all answered `subscribed` (or `--connect-timeout`
//!   passed), `--pushes` (default 200) `POST /api/v1/groups/directsend` calls are issued at
//!   `--rate` per second (default 50), each its own task so a slow answer never delays the
//!   schedule, each one push of `--payload` bytes of text to the topic, whose `data` carries
//!   `{"seq": i, "t0": <unix ns as the call starts>}`. Every client counts its push frames and
//!   records receipt time − t0 (one machine clock), and notes a seq that is not above the
//!   previous one. Then it waits (at most `--timeout` seconds after the last publish, default
//!   30) for all N × P frames, closes every client and reports: connect time and rate,
//!   delivered frames / N × P, frames/s from the first to the last frame received, latency
//!   p50/p99/max, the directsend answers and call latency, and the **server's resident memory
//!   per connection**: the difference of its VmRSS (`/proc/<pid>/status`) read before the first
//!   connection and 0.5 s after the last subscribe, divided by the connections. The pid is
//!   `--server-pid`, else the process listening on the URL's port (found through `/proc`, so
//!   the server must run on this machine and be visible to this user). Both this tool and the
//!   server need an open-file limit above N (`ulimit -n`); the tool checks its own at the start
//!   and the server's when it knows the pid. The tenant is left in place (there is no tenant
//!   deletion); no group is created. `bench/socketio/` holds the same benchmark against a
//!   Socket.IO server with the Redis adapter, for comparison.
//!
//! All figures come from one client process on the same machine as the server, so on a small
//! machine the client's own CPU use is part of the picture.

#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::Utc;
use clap::{Args, Subcommand};
use diesel::sql_types::{Array, Bool, Int4, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::{self, AuthError, Keys, Role};
use crate::config::Settings;
use crate::store::{self, StoreError};

/// Lifetime of the tokens the tool mints, seconds.
const TOKEN_TTL_SECS: u64 = 3600;
/// Longest a `send --requests` run may last when no `--duration` is given, seconds.
const REQUESTS_CAP_SECS: u64 = 600;
/// Rows per statement of the batched `baseline` PostgreSQL phase.
const BASELINE_ROWS_PER_STATEMENT: usize = 100;

/// `pigeon bench [--url URL] <scenario>`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of the running server (default http://127.0.0.1:<server.port>).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// IP the local webhook receiver listens on and the groups' targets point at.
    #[arg(long, global = true, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub receiver_ip: IpAddr,
    /// Worker threads of the local webhook receiver.
    #[arg(long, global = true, default_value_t = 1)]
    pub receiver_workers: usize,
    /// Leave the bench tenant's group (and its queued messages) in place at the end.
    #[arg(long, global = true)]
    pub keep: bool,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Throughput and latency of POST /api/v1/groups/send (1-day level: nothing delivered
    /// meanwhile, unless --live).
    Send {
        /// Messages per request.
        #[arg(long, default_value_t = 1)]
        per_request: usize,
        /// Concurrent requests (tokio tasks).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds to measure (default 10 without --requests).
        #[arg(long)]
        duration: Option<u64>,
        /// Measured requests to send instead of a duration.
        #[arg(long)]
        requests: Option<u64>,
        /// Seconds of unmeasured warm-up first.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Use a 1-second level so the pigeon delivers during the run.
        #[arg(long)]
        live: bool,
    },
    /// Deliveries per second from queue to a local webhook receiver.
    Deliver {
        /// Messages to queue.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// The level's batchCount (its interval is 1 second).
        #[arg(long, default_value_t = 10_000)]
        batch_count: i64,
        /// Messages per send request.
        #[arg(long, default_value_t = 1000)]
        chunk: usize,
        /// Seconds to wait for every delivery, from the first send.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Seconds to keep listening after the last delivery, to catch redeliveries.
        #[arg(long, default_value_t = 3)]
        settle: u64,
        /// Messages whose server-side state is checked afterwards (GET /messages/{id}).
        #[arg(long, default_value_t = 20)]
        sample: usize,
    },
    /// WebSocket fan-out: N subscribed clients, P directsend pushes to their topic at R/s.
    Ws {
        /// WebSocket clients to open (all subscribe to one topic).
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Pushes to publish: one directsend call each, fanned out to every client.
        #[arg(long, default_value_t = 200)]
        pushes: usize,
        /// Publish rate, pushes per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Bytes of message text per push (the frame's `body`).
        #[arg(long, default_value_t = 100)]
        payload: usize,
        /// WebSocket handshakes (connect + subscribe) in flight at once.
        #[arg(long, default_value_t = 64)]
        connect_concurrency: usize,
        /// Seconds allowed for connecting and subscribing every client.
        #[arg(long, default_value_t = 120)]
        connect_timeout: u64,
        /// Seconds to wait for outstanding frames after the last publish.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// PID of the server, for its resident memory (default: the process listening on the
        /// URL's port, found through /proc).
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Machine ceilings: redis-benchmark LPUSH, and PostgreSQL unnest inserts.
    Baseline {
        /// Concurrent PostgreSQL connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds per PostgreSQL phase.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Skip the redis-benchmark run.
        #[arg(long)]
        no_redis: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Api(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Other(String),
}

type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Runs one scenario to completion on its own tokio runtime.
pub fn run(settings: &Settings, args: BenchArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let base = args
            .url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", settings.server.port));
        let common = args_common(&args, base.trim_end_matches('/').to_string());
        match args.scenario {
            Scenario::Send {
                per_request,
                concurrency,
                duration,
                requests,
                warmup,
                live,
            } => {
                let plan = SendPlan {
                    per_request: per_request.clamp(1, 10_000),
                    concurrency: concurrency.max(1),
                    duration,
                    requests,
                    warmup: Duration::from_secs(warmup),
                    live,
                };
                bench_send(settings, &common, plan).await
            }
            Scenario::Deliver {
                messages,
                batch_count,
                chunk,
                timeout,
                settle,
                sample,
            } => {
                let plan = DeliverPlan {
                    messages: messages.max(1),
                    batch_count: batch_count.max(1),
                    chunk: chunk.clamp(1, 10_000),
                    timeout: Duration::from_secs(timeout),
                    settle: Duration::from_secs(settle),
                    sample,
                };
                bench_deliver(settings, &common, plan).await
            }
            Scenario::Ws {
                clients,
                pushes,
                rate,
                payload,
                connect_concurrency,
                connect_timeout,
                timeout,
                server_pid,
            } => {
                let plan = WsPlan {
                    clients: clients.max(1),
                    pushes: pushes.max(1),
                    rate: if rate.is_finite() && rate > 0.0 {
                        rate
                    } else {
                        50.0
                    },
                    payload,
                    connect_concurrency: connect_concurrency.max(1),
                    connect_timeout: Duration::from_secs(connect_timeout.max(1)),
                    timeout: Duration::from_secs(timeout),
                    server_pid,
                };
                bench_ws(settings, &common, plan).await
            }
            Scenario::Baseline {
                connections,
                seconds,
                no_redis,
            } => {
                if !no_redis {
                    redis_baseline(&settings.engine.redis_url).await?;
                }
                pg_baseline(
                    &settings.database.url,
                    connections.max(1),
                    Duration::from_secs(seconds.max(1)),
                )
                .await
            }
        }
    })
}

/// What every API scenario needs.
struct Common {
    base: String,
    receiver_ip: IpAddr,
    receiver_workers: usize,
    keep: bool,
}

fn args_common(args: &BenchArgs, base: String) -> Common {
    Common {
        base,
        receiver_ip: args.receiver_ip,
        receiver_workers: args.receiver_workers.max(1),
        keep: args.keep,
    }
}

// ---------------------------------------------------------------------------------------------
// API helpers

fn client(pool: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()?)
}

fn token(keys: &Keys, role: Role, tenant: Option<Uuid>) -> Result<String> {
    let claims = auth::claims(role, tenant, "pigeon-bench", None, TOKEN_TTL_SECS);
    Ok(keys.sign(&claims)?)
}

/// One API call that must answer `expect`; the JSON answer (Null when empty).
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<&Value>,
    expect: StatusCode,
) -> Result<Value> {
    let mut req = http
        .request(method.clone(), url)
        .header(AUTHORIZATION, format!("Bearer {token}"));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if status != expect {
        return Err(BenchError::Api(format!(
            "{method} {url}: expected {expect}, got {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|e| BenchError::Api(format!("{method} {url}: answer is not JSON: {e}")))
}

/// A fresh tenant with one level and one webhook group pointing at `hook_url`.
struct Fixture {
    tenant: Uuid,
    group: Uuid,
    /// A token of the tenant (admin: may also send).
    token: String,
}

/// A fresh tenant `bench-<scenario>-<random>`: its id, name and an admin token of it.
async fn create_tenant(
    keys: &Keys,
    http: &reqwest::Client,
    base: &str,
    scenario: &str,
) -> Result<(Uuid, String, String)> {
    let root = token(keys, Role::Root, None)?;
    let tag = Uuid::new_v4().simple().to_string();
    let name = format!("bench-{scenario}-{}", &tag[..12]);
    let tenant = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/tenants"),
        &root,
        Some(&json!({ "name": name })),
        StatusCode::CREATED,
    )
    .await?;
    let tenant = tenant
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| BenchError::Api(format!("tenant answer without id: {tenant}")))?;
    let admin = token(keys, Role::Admin, Some(tenant))?;
    Ok((tenant, name, admin))
}

async fn fixture(
    settings: &Settings,
    http: &reqwest::Client,
    base: &str,
    scenario: &str,
    level: Value,
    hook_url: &str,
) -> Result<Fixture> {
    let keys = Keys::new(&settings.auth.jwt_secret);
    let (tenant, name, admin) = create_tenant(&keys, http, base, scenario).await?;
    let level_name = level
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    call(
        http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/levels"),
        &admin,
        Some(&level),
        StatusCode::CREATED,
    )
    .await?;
    let group = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/groups"),
        &admin,
        Some(&json!({
            "name": format!("bench-{scenario}"),
            "type": "webhook",
            "levelName": level_name,
            "sendList": [{"target": "bench-receiver", "url": hook_url}],
        })),
        StatusCode::CREATED,
    )
    .await?;
    let group = group
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| BenchError::Api(format!("group answer without id: {group}")))?;
    tracing::info!(%tenant, %group, tenant_name = %name, "bench fixture created");
    Ok(Fixture {
        tenant,
        group,
        token: admin,
    })
}

/// Deletes the fixture's group (cancels what is still queued, stops its pigeon).
async fn cleanup(http: &reqwest::Client, base: &str, fx: &Fixture, keep: bool) {
    if keep {
        tracing::info!(tenant = %fx.tenant, group = %fx.group, "keeping the bench group");
        return;
    }
    let url = format!("{base}/api/v1/groups/{}", fx.group);
    match call(
        http,
        reqwest::Method::DELETE,
        &url,
        &fx.token,
        None,
        StatusCode::NO_CONTENT,
    )
    .await
    {
        Ok(_) => tracing::info!(group = %fx.group, "bench group deleted"),
        Err(e) => tracing::warn!(group = %fx.group, error = %e, "could not delete the bench group"),
    }
}

fn send_body(group: Uuid, n: usize) -> Result<Bytes> {
    let items: Vec<Value> = (0..n)
        .map(|_| {
            json!({
                "groupId": group,
                "subject": "pigeon bench",
                "message": "hello from pigeon bench",
            })
        })
        .collect();
    serde_json::to_vec(&items)
        .map(Bytes::from)
        .map_err(|e| BenchError::Other(e.to_string()))
}

/// `"messageId"` occurrences in a send answer: the messages it accepted.
fn accepted_in(answer: &[u8]) -> u64 {
    const NEEDLE: &[u8] = b"\"messageId\"";
    answer
        .windows(NEEDLE.len())
        .filter(|w| *w == NEEDLE)
        .count() as u64
}

// ---------------------------------------------------------------------------------------------
// The local webhook receiver

#[derive(Default)]
struct TallyInner {
    requests: u64,
    without_id: u64,
    ids: HashSet<String>,
    /// When each distinct id first arrived.
    arrivals: Vec<Instant>,
}

/// What the receiver has seen.
#[derive(Default)]
struct Tally(Mutex<TallyInner>);

impl Tally {
    fn record(&self, id: Option<&str>) {
        let now = Instant::now();
        if let Ok(mut t) = self.0.lock() {
            t.requests += 1;
            match id {
                Some(id) => {
                    if t.ids.insert(id.to_string()) {
                        t.arrivals.push(now);
                    }
                }
                None => t.without_id += 1,
            }
        }
    }

    fn distinct(&self) -> usize {
        self.0.lock().map(|t| t.ids.len()).unwrap_or(0)
    }

    /// (requests, distinct ids, requests without an id, arrival times).
    fn snapshot(&self) -> (u64, usize, u64, Vec<Instant>) {
        self.0
            .lock()
            .map(|t| (t.requests, t.ids.len(), t.without_id, t.arrivals.clone()))
            .unwrap_or_default()
    }
}

async fn hook(req: HttpRequest, tally: web::Data<Tally>, _body: Bytes) -> HttpResponse {
    tally.record(
        req.headers()
            .get("Pigeon-Delivery-Id")
            .and_then(|v| v.to_str().ok()),
    );
    HttpResponse::Ok().finish()
}

struct Receiver {
    addr: SocketAddr,
    tally: Arc<Tally>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Receiver {
    /// Starts an actix-web server on its own thread and System.
    fn start(ip: IpAddr, workers: usize) -> Result<Receiver> {
        let listener = TcpListener::bind((ip, 0))?;
        let addr = listener.local_addr()?;
        let tally = Arc::new(Tally::default());
        let shared = web::Data::from(tally.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bench-receiver".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(shared.clone())
                            .default_service(web::to(hook))
                    })
                    .workers(workers)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen(listener)?
                    .run();
                    let _ = tx.send(server.handle());
                    server.await
                })
            })?;
        let handle = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| BenchError::Other("the webhook receiver did not start".into()))?;
        tracing::info!(%addr, "bench webhook receiver listening");
        Ok(Receiver {
            addr,
            tally,
            handle,
            thread: Some(thread),
        })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// send

struct SendPlan {
    per_request: usize,
    concurrency: usize,
    duration: Option<u64>,
    requests: Option<u64>,
    warmup: Duration,
    live: bool,
}

#[derive(Default)]
struct WorkerStats {
    ok: u64,
    errors: u64,
    accepted: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

struct Clock {
    measure_from: Instant,
    stop_at: Instant,
    total: Option<u64>,
    issued: AtomicU64,
}

async fn send_worker(
    http: reqwest::Client,
    url: Arc<str>,
    auth: Arc<str>,
    body: Bytes,
    clock: Arc<Clock>,
) -> WorkerStats {
    let mut stats = WorkerStats::default();
    loop {
        let started = Instant::now();
        if started >= clock.stop_at {
            break;
        }
        let measured = started >= clock.measure_from;
        if measured {
            if let Some(total) = clock.total {
                if clock.issued.fetch_add(1, Ordering::Relaxed) >= total {
                    break;
                }
            }
        }
        let result = http
            .post(&*url)
            .header(AUTHORIZATION, &*auth)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let outcome = match result {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(answer) if status == StatusCode::ACCEPTED => Ok(accepted_in(&answer)),
                    Ok(answer) => Err(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&answer[..answer.len().min(300)])
                    )),
                    Err(e) => Err(format!("reading the answer: {e}")),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let done = Instant::now();
        if !measured {
            continue;
        }
        match outcome {
            Ok(accepted) => {
                stats.ok += 1;
                stats.accepted += accepted;
                let us = done.duration_since(started).as_micros();
                stats.latencies_us.push(us.min(u32::MAX as u128) as u32);
            }
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
            }
        }
        stats.last_done = Some(done);
    }
    stats
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn bench_send(settings: &Settings, common: &Common, plan: SendPlan) -> Result<()> {
    let receiver = Receiver::start(common.receiver_ip, common.receiver_workers)?;
    let http = client(plan.concurrency + 4)?;
    let (unit, batch) = if plan.live {
        ("second", 10_000)
    } else {
        ("day", 10_000)
    };
    let level = json!({
        "name": "bench-send",
        "intervalTime": 1, "unit": unit,
        "expTime": 7, "expUnit": "day",
        "batchCount": batch,
    });
    let fx = fixture(
        settings,
        &http,
        &common.base,
        "send",
        level,
        &receiver.url(),
    )
    .await?;
    let body = send_body(fx.group, plan.per_request)?;

    let duration = match (plan.duration, plan.requests) {
        (Some(d), _) => Duration::from_secs(d.max(1)),
        (None, Some(_)) => Duration::from_secs(REQUESTS_CAP_SECS),
        (None, None) => Duration::from_secs(10),
    };
    let start = Instant::now();
    let clock = Arc::new(Clock {
        measure_from: start + plan.warmup,
        stop_at: start + plan.warmup + duration,
        total: plan.requests,
        issued: AtomicU64::new(0),
    });
    let url: Arc<str> = format!("{}/api/v1/groups/send", common.base).into();
    let auth: Arc<str> = format!("Bearer {}", fx.token).into();
    tracing::info!(
        per_request = plan.per_request,
        concurrency = plan.concurrency,
        ?duration,
        requests = ?plan.requests,
        "send: running"
    );
    let tasks: Vec<_> = (0..plan.concurrency)
        .map(|_| {
            tokio::spawn(send_worker(
                http.clone(),
                url.clone(),
                auth.clone(),
                body.clone(),
                clock.clone(),
            ))
        })
        .collect();
    let mut all = WorkerStats::default();
    for t in tasks {
        let s = t
            .await
            .map_err(|e| BenchError::Other(format!("send task: {e}")))?;
        all.ok += s.ok;
        all.errors += s.errors;
        all.accepted += s.accepted;
        all.latencies_us.extend(s.latencies_us);
        if all.first_error.is_none() {
            all.first_error = s.first_error;
        }
        all.last_done = all.last_done.max(s.last_done);
    }
    let elapsed = all
        .last_done
        .map(|d| d.saturating_duration_since(clock.measure_from))
        .unwrap_or_default()
        .as_secs_f64()
        .max(1e-9);
    all.latencies_us.sort_unstable();
    let requests = all.ok + all.errors;
    let (_, delivered, _, _) = receiver.tally.snapshot();

    println!(
        "send: {} message(s)/request, concurrency {}, measured {:.2} s after {} s warm-up{}",
        plan.per_request,
        plan.concurrency,
        elapsed,
        plan.warmup.as_secs(),
        if plan.live {
            " (live: 1-second level delivering)"
        } else {
            " (1-day level: nothing delivered)"
        }
    );
    println!(
        "  requests:  {requests} ({} ok, {} errors) = {:.0} req/s",
        all.ok,
        all.errors,
        requests as f64 / elapsed
    );
    println!(
        "  accepted:  {} messages = {:.0} msg/s",
        all.accepted,
        all.accepted as f64 / elapsed
    );
    let mean = if all.latencies_us.is_empty() {
        0.0
    } else {
        all.latencies_us.iter().map(|&u| u as f64).sum::<f64>()
            / all.latencies_us.len() as f64
            / 1000.0
    };
    println!(
        "  latency:   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms",
        percentile(&all.latencies_us, 50.0),
        percentile(&all.latencies_us, 99.0),
        percentile(&all.latencies_us, 100.0),
        mean
    );
    if let Some(e) = &all.first_error {
        println!("  first error: {e}");
    }
    println!("  deliveries seen by the receiver meanwhile: {delivered}");

    cleanup(&http, &common.base, &fx, common.keep).await;
    receiver.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// deliver

/// A pause between two deliveries longer than this starts a new burst (a new wake).
const BURST_GAP: Duration = Duration::from_millis(150);

/// Arrivals split into bursts at gaps longer than `gap`: (deliveries, first to last).
fn bursts(arrivals: &[Instant], gap: Duration) -> Vec<(usize, Duration)> {
    let mut out: Vec<(usize, Duration)> = Vec::new();
    let Some(&first) = arrivals.first() else {
        return out;
    };
    let (mut start, mut prev, mut n) = (first, first, 0usize);
    for &a in arrivals {
        if a.saturating_duration_since(prev) > gap {
            out.push((n, prev.duration_since(start)));
            (start, n) = (a, 0);
        }
        n += 1;
        prev = a;
    }
    out.push((n, prev.duration_since(start)));
    out
}

struct DeliverPlan {
    messages: usize,
    batch_count: i64,
    chunk: usize,
    timeout: Duration,
    settle: Duration,
    sample: usize,
}

/// The `messageId`s of a send answer.
fn message_ids(answer: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Vec<Value>>(answer)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.get("messageId").and_then(Value::as_str).map(String::from))
        .collect()
}

/// States of `sample` messages spread over `ids`, as the server reports them, counted.
async fn sample_states(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    ids: &[String],
    sample: usize,
) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    if ids.is_empty() || sample == 0 {
        return counts;
    }
    let n = sample.min(ids.len());
    for i in 0..n {
        let at = if n > 1 {
            i * (ids.len() - 1) / (n - 1)
        } else {
            0
        };
        let id = &ids[at];
        let state = match call(
            http,
            reqwest::Method::GET,
            &format!("{base}/api/v1/messages/{id}"),
            token,
            None,
            StatusCode::OK,
        )
        .await
        {
            Ok(v) => {
                let state = v.get("state").and_then(Value::as_str).unwrap_or("?");
                let recorded = v
                    .get("deliveries")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                format!("{state} ({recorded} delivery record(s))")
            }
            Err(e) => format!("error: {e}"),
        };
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, c)) => *c += 1,
            None => counts.push((state, 1)),
        }
    }
    counts
}

async fn bench_deliver(settings: &Settings, common: &Common, plan: DeliverPlan) -> Result<()> {
    let DeliverPlan {
        messages,
        batch_count,
        chunk,
        timeout,
        settle,
        sample,
    } = plan;
    let receiver = Receiver::start(common.receiver_ip, common.receiver_workers)?;
    let http = client(8)?;
    let level = json!({
        "name": "bench-deliver",
        "intervalTime": 1, "unit": "second",
        "expTime": 1, "expUnit": "day",
        "batchCount": batch_count,
    });
    let fx = fixture(
        settings,
        &http,
        &common.base,
        "deliver",
        level,
        &receiver.url(),
    )
    .await?;
    let url = format!("{}/api/v1/groups/send", common.base);
    let auth = format!("Bearer {}", fx.token);

    tracing::info!(messages, chunk, batch_count, "deliver: queuing");
    let send_start = Instant::now();
    let deadline = send_start + timeout;
    let mut queued = 0usize;
    let mut requests = 0usize;
    let mut ids: Vec<String> = Vec::with_capacity(messages);
    while queued < messages {
        let n = chunk.min(messages - queued);
        let resp = http
            .post(&url)
            .header(AUTHORIZATION, &auth)
            .header(CONTENT_TYPE, "application/json")
            .body(send_body(fx.group, n)?)
            .send()
            .await?;
        let status = resp.status();
        let answer = resp.bytes().await?;
        if status != StatusCode::ACCEPTED {
            return Err(BenchError::Api(format!(
                "send: HTTP {status}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            )));
        }
        let accepted = message_ids(&answer);
        queued += accepted.len();
        ids.extend(accepted);
        requests += 1;
    }
    let send_elapsed = send_start.elapsed();

    tracing::info!(queued, "deliver: waiting for the deliveries");
    loop {
        if receiver.tally.distinct() >= messages || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Redeliveries (same Pigeon-Delivery-Id) would come on later wakes: keep listening.
    tokio::time::sleep(settle).await;
    let (hits, distinct, without_id, arrivals) = receiver.tally.snapshot();
    let states = sample_states(&http, &common.base, &fx.token, &ids, sample).await;

    println!(
        "deliver: {messages} messages, level 1 s x batchCount {batch_count} (ceiling {batch_count}/s), sent in requests of {chunk}"
    );
    println!(
        "  queuing:   {requests} requests, {queued} accepted in {:.2} s = {:.0} msg/s",
        send_elapsed.as_secs_f64(),
        queued as f64 / send_elapsed.as_secs_f64().max(1e-9)
    );
    match (
        arrivals.first(),
        arrivals.get(messages.min(arrivals.len()).saturating_sub(1)),
    ) {
        (Some(&first), Some(&last)) => {
            let span = last.duration_since(first).as_secs_f64();
            let counted = messages.min(arrivals.len());
            println!(
                "  first delivery {:.2} s after the first send; delivery #{counted} {:.2} s after it",
                first.duration_since(send_start).as_secs_f64(),
                span
            );
            println!(
                "  delivered: {distinct}/{messages} distinct ids; {hits} requests, {} of them repeats of an id, {without_id} without id (listened {} s more){}",
                hits.saturating_sub(distinct as u64 + without_id),
                settle.as_secs(),
                if distinct < messages {
                    format!(" -- timed out after {} s", timeout.as_secs())
                } else {
                    String::new()
                }
            );
            println!(
                "  rate:      {:.0} deliveries/s (first to #{counted})",
                counted as f64 / span.max(1e-9)
            );
            let mut buckets: Vec<usize> = Vec::new();
            for a in &arrivals {
                let s = a.duration_since(first).as_secs() as usize;
                if buckets.len() <= s {
                    buckets.resize(s + 1, 0);
                }
                buckets[s] += 1;
            }
            println!("  per second since the first delivery: {buckets:?}");
            let text: Vec<String> = bursts(&arrivals, BURST_GAP)
                .iter()
                .map(|(n, d)| {
                    format!(
                        "{n} in {:.3} s ({:.0}/s)",
                        d.as_secs_f64(),
                        *n as f64 / d.as_secs_f64().max(1e-3)
                    )
                })
                .collect();
            println!(
                "  bursts (wakes; split at gaps > {} ms): {}",
                BURST_GAP.as_millis(),
                text.join(", ")
            );
        }
        _ => println!(
            "  delivered: nothing within {} s ({hits} requests)",
            timeout.as_secs()
        ),
    }
    if !states.is_empty() {
        let text: Vec<String> = states.iter().map(|(s, c)| format!("{c} {s}")).collect();
        println!(
            "  server-side state of {} sampled messages: {}",
            states.iter().map(|(_, c)| c).sum::<usize>(),
            text.join(", ")
        );
    }

    cleanup(&http, &common.base, &fx, common.keep).await;
    receiver.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ws

/// The topic every `ws` client subscribes to and every push goes to.
const WS_TOPIC: &str = "bench";
/// File descriptors the tool keeps for itself besides one per client.
const FD_MARGIN: u64 = 64;
/// Longest wait for a client's close handshake at the end.
const WS_CLOSE_WAIT: Duration = Duration::from_secs(5);

struct WsPlan {
    clients: usize,
    pushes: usize,
    rate: f64,
    payload: usize,
    connect_concurrency: usize,
    connect_timeout: Duration,
    timeout: Duration,
    server_pid: Option<u32>,
}

/// Now, as nanoseconds since the Unix epoch (the clock both ends of a push read).
fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// `(seq, t0)` of a bench push frame: the numbers after the last `"seq":` and `"t0":` (the
/// frame's `data`, which comes after the body; the body is only `x`s).
fn push_marks(text: &str) -> Option<(u64, u64)> {
    let number = |key: &str| -> Option<u64> {
        let at = text.rfind(key)? + key.len();
        let rest = &text[at..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    Some((number("\"seq\":")?, number("\"t0\":")?))
}

/// The offset of a push frame (`{"type":"push","offset":"<ms>-<n>",…`), comparable.
fn push_offset(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix("{\"type\":\"push\",\"offset\":\"")?;
    crate::engine::offset_key(&rest[..rest.find('"')?])
}

/// A `Key: <n> kB` line of `/proc/<pid>/status`, in bytes.
fn proc_status_bytes(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The soft `Max open files` limit of a process (`self` or a pid) from `/proc/<p>/limits`.
fn open_files_limit(process: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{process}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// The process listening on TCP `port` (any address), found through `/proc/net/tcp{,6}` and
/// the `/proc/<pid>/fd` links; None when not found or not visible to this user.
fn listening_pid(port: u16) -> Option<u32> {
    let mut sockets = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if f.len() > 9 && f[3] == "0A" && local_port == Some(port) {
                sockets.insert(format!("socket:[{}]", f[9]));
            }
        }
    }
    if sockets.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if sockets.contains(link.to_string_lossy().as_ref()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What the clients share with the main task.
#[derive(Default)]
struct WsProgress {
    /// Clients subscribed to the topic.
    subscribed: AtomicU64,
    /// Clients that failed to connect or subscribe.
    failed: AtomicU64,
    /// Clients whose connection ended before the end of the run.
    ended: AtomicU64,
    /// Push frames received by all clients.
    frames: AtomicU64,
}

/// One client's record.
#[derive(Default)]
struct WsClientStats {
    subscribed: bool,
    /// Connect + handshake + subscribe answer, microseconds.
    connect_us: Option<u32>,
    frames: u64,
    /// Receipt time − t0 per push frame, microseconds.
    latencies_us: Vec<u32>,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Push frames of a seq already received.
    repeated: u64,
    /// Push frames of a seq below one already received: their publish calls overlapped and
    /// the later one was appended first (the server's order is the offset order).
    seq_inversions: u64,
    /// Push frames whose offset was not above the previous frame's: a break of the server's
    /// per-topic order.
    offset_regressions: u64,
    /// Frames that were neither a bench push nor the subscribe answer.
    other_frames: u64,
    first_other: Option<String>,
    /// Why the connection failed or ended before the end of the run.
    error: Option<String>,
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and subscribes (under a permit of `gate`), then counts push frames until `stop`.
async fn ws_client(
    url: String,
    gate: Arc<tokio::sync::Semaphore>,
    deadline: Instant,
    progress: Arc<WsProgress>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    pushes: usize,
) -> WsClientStats {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let mut stats = WsClientStats::default();
    let connected = tokio::time::timeout_at(deadline.into(), async {
        let _permit = gate
            .acquire()
            .await
            .map_err(|e| format!("connect gate: {e}"))?;
        let started = Instant::now();
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let subscribe = json!({"type": "subscribe", "topics": [WS_TOPIC]}).to_string();
        ws.send(Message::text(subscribe))
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if v.get("type").and_then(Value::as_str) == Some("subscribed") {
                        break;
                    }
                    return Err(format!(
                        "answer to subscribe: {}",
                        text.chars().take(200).collect::<String>()
                    ));
                }
                Some(Ok(Message::Close(reason))) => {
                    return Err(format!("closed while subscribing: {reason:?}"))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("while subscribing: {e}")),
                None => return Err("connection ended while subscribing".into()),
            }
        }
        let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        Ok::<(WsStream, u32), String>((ws, us))
    })
    .await
    .unwrap_or_else(|_| Err("connect timeout".into()));
    let mut ws = match connected {
        Ok((ws, us)) => {
            stats.subscribed = true;
            stats.connect_us = Some(us);
            progress.subscribed.fetch_add(1, Ordering::Relaxed);
            ws
        }
        Err(e) => {
            stats.error = Some(e);
            progress.failed.fetch_add(1, Ordering::Relaxed);
            return stats;
        }
    };

    let mut seen = vec![false; pushes];
    let mut max_seq: Option<u64> = None;
    let mut last_offset: Option<(u64, u64)> = None;
    loop {
        let msg = tokio::select! {
            biased;
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        match msg {
            Some(Ok(Message::Text(text))) => {
                let text = text.as_str();
                match text
                    .starts_with("{\"type\":\"push\"")
                    .then(|| push_marks(text))
                    .flatten()
                {
                    Some((seq, t0)) => {
                        let now = Instant::now();
                        let latency_ns = unix_nanos().saturating_sub(t0);
                        stats
                            .latencies_us
                            .push((latency_ns / 1000).min(u32::MAX as u64) as u32);
                        stats.frames += 1;
                        stats.first.get_or_insert(now);
                        stats.last = Some(now);
                        match seen.get_mut(seq as usize) {
                            Some(true) => stats.repeated += 1,
                            Some(s) => {
                                *s = true;
                                if max_seq.is_some_and(|m| seq < m) {
                                    stats.seq_inversions += 1;
                                }
                            }
                            None => stats.other_frames += 1,
                        }
                        max_seq = max_seq.max(Some(seq));
                        let offset = push_offset(text);
                        if offset.is_none() || offset <= last_offset {
                            stats.offset_regressions += 1;
                        }
                        last_offset = offset.max(last_offset);
                        progress.frames.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        stats.other_frames += 1;
                        stats
                            .first_other
                            .get_or_insert_with(|| text.chars().take(200).collect());
                    }
                }
            }
            // tungstenite answers pings by itself while reading.
            Some(Ok(Message::Close(reason))) => {
                stats.error = Some(format!("closed by the server: {reason:?}"));
                progress.ended.fetch_add(1, Ordering::Relaxed);
                return stats;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                stats.error = Some(format!("read: {e}"));
                progress.ended.fetch_add(1, Ordering::Relaxed);
                return stats;
            }
            None => {
                stats.error = Some("connection ended".into());
                progress.ended.fetch_add(1, Ordering::Relaxed);
                return stats;
            }
        }
    }
    // The end of the run: close politely, wait (briefly) for the server's close.
    let _ = tokio::time::timeout(WS_CLOSE_WAIT, async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
    stats
}

/// One directsend call: (latency µs, outcome: the push's status or the error).
async fn ws_publish(
    http: reqwest::Client,
    url: Arc<str>,
    auth: Arc<str>,
    message: Arc<str>,
    seq: usize,
) -> (u32, String) {
    let started = Instant::now();
    let t0 = unix_nanos();
    let body = json!([{
        "type": "websocket",
        "subject": "s",
        "message": &*message,
        "data": {"seq": seq, "t0": t0},
        "sendList": [{"topic": WS_TOPIC}],
    }]);
    let outcome = match http
        .post(&*url)
        .header(AUTHORIZATION, &*auth)
        .json(&body)
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status();
            match resp.bytes().await {
                Ok(answer) if status == StatusCode::OK => serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/0/results/0/status")
                            .and_then(Value::as_str)
                            .map(String::from)
                    })
                    .unwrap_or_else(|| {
                        format!(
                            "unexpected answer: {}",
                            String::from_utf8_lossy(&answer[..answer.len().min(300)])
                        )
                    }),
                Ok(answer) => format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(300)])
                ),
                Err(e) => format!("reading the answer: {e}"),
            }
        }
        Err(e) => format!("error: {e}"),
    };
    let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
    (us, outcome)
}

async fn bench_ws(settings: &Settings, common: &Common, plan: WsPlan) -> Result<()> {
    let WsPlan {
        clients,
        pushes,
        rate,
        payload,
        connect_concurrency,
        connect_timeout,
        timeout,
        server_pid,
    } = plan;

    let need = clients as u64 + FD_MARGIN;
    match open_files_limit("self") {
        Some(limit) if limit < need => {
            return Err(BenchError::Other(format!(
                "the open-file limit of this shell is {limit}, below --clients {clients} + {FD_MARGIN}: \
                 raise it with `ulimit -n 65536` (or as far as `ulimit -Hn` allows) in this shell, \
                 and in the server's before starting it"
            )))
        }
        Some(_) => {}
        None => tracing::warn!("could not read this process's open-file limit"),
    }
    let parsed = url::Url::parse(&common.base)
        .map_err(|e| BenchError::Other(format!("--url '{}': {e}", common.base)))?;
    let ws_base = match parsed.scheme() {
        "http" => format!("ws{}", &common.base["http".len()..]),
        other => {
            return Err(BenchError::Other(format!(
                "--url: only http:// servers are supported by `bench ws`, got {other}://"
            )))
        }
    };
    let port = parsed.port_or_known_default().unwrap_or(80);
    let pid = server_pid.or_else(|| listening_pid(port));
    match pid {
        Some(pid) => {
            if let Some(limit) = open_files_limit(&pid.to_string()) {
                if limit < need {
                    println!(
                        "warning: the server (pid {pid}) may open only {limit} files, fewer than {clients} connections need; start it after `ulimit -n 65536` (or `ulimit -Hn`)"
                    );
                }
            }
        }
        None => println!(
            "note: no server pid (--server-pid, or a process visible listening on port {port}): no memory figures"
        ),
    }

    let http = client(16)?;
    let keys = Keys::new(&settings.auth.jwt_secret);
    let (tenant, tenant_name, admin) = create_tenant(&keys, &http, &common.base, "ws").await?;
    tracing::info!(%tenant, %tenant_name, clients, "ws: tenant created; connecting");
    let mut urls = Vec::with_capacity(clients);
    for i in 0..clients {
        let claims = auth::claims(
            Role::Subscriber,
            Some(tenant),
            &format!("bench-ws-{i}"),
            None,
            TOKEN_TTL_SECS,
        );
        urls.push(format!("{ws_base}/ws?token={}", keys.sign(&claims)?));
    }

    // The server's memory before any connection.
    let rss_before = pid.and_then(|p| proc_status_bytes(p, "VmRSS"));

    let progress = Arc::new(WsProgress::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(connect_concurrency));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let connect_start = Instant::now();
    let connect_deadline = connect_start + connect_timeout;
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            tokio::spawn(ws_client(
                url,
                gate.clone(),
                connect_deadline,
                progress.clone(),
                stop_rx.clone(),
                pushes,
            ))
        })
        .collect();
    loop {
        let done =
            progress.subscribed.load(Ordering::Relaxed) + progress.failed.load(Ordering::Relaxed);
        if done >= clients as u64 || Instant::now() >= connect_deadline + Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect_elapsed = connect_start.elapsed();
    let subscribed = progress.subscribed.load(Ordering::Relaxed);
    tracing::info!(
        subscribed,
        failed = progress.failed.load(Ordering::Relaxed),
        "ws: clients connected; publishing"
    );
    // Let the server settle (hub registrations, presence writes) before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = pid.and_then(|p| proc_status_bytes(p, "VmRSS"));

    // Publish P pushes at R/s, each call on its own task so a slow answer never delays the
    // schedule.
    let message: Arc<str> = "x".repeat(payload).into();
    let url: Arc<str> = format!("{}/api/v1/groups/directsend", common.base).into();
    let auth: Arc<str> = format!("Bearer {admin}").into();
    let publish_start = Instant::now();
    let mut calls = Vec::with_capacity(pushes);
    for seq in 0..pushes {
        let at = publish_start + Duration::from_secs_f64(seq as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        calls.push(tokio::spawn(ws_publish(
            http.clone(),
            url.clone(),
            auth.clone(),
            message.clone(),
            seq,
        )));
    }
    let last_publish = Instant::now();
    let mut call_latencies = Vec::with_capacity(pushes);
    let mut outcomes: Vec<(String, usize)> = Vec::new();
    for c in calls {
        let (us, outcome) = c
            .await
            .map_err(|e| BenchError::Other(format!("publish task: {e}")))?;
        call_latencies.push(us);
        let key = if outcome.len() > 120 {
            format!("{}…", outcome.chars().take(120).collect::<String>())
        } else {
            outcome
        };
        match outcomes.iter_mut().find(|(s, _)| *s == key) {
            Some((_, n)) => *n += 1,
            None => outcomes.push((key, 1)),
        }
    }
    let publish_elapsed = Instant::now().duration_since(publish_start);
    call_latencies.sort_unstable();

    // Wait for every frame (or the timeout, or every client gone).
    let expected_live = subscribed * pushes as u64;
    let wait_until = last_publish + timeout;
    loop {
        let frames = progress.frames.load(Ordering::Relaxed);
        let alive = subscribed.saturating_sub(progress.ended.load(Ordering::Relaxed));
        if frames >= expected_live || alive == 0 || Instant::now() >= wait_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited_out = progress.frames.load(Ordering::Relaxed) < expected_live;
    let rss_end = pid.and_then(|p| proc_status_bytes(p, "VmRSS"));
    let hwm_end = pid.and_then(|p| proc_status_bytes(p, "VmHWM"));

    // Close everyone and collect.
    let _ = stop_tx.send(true);
    let mut all = Vec::with_capacity(clients);
    for t in tasks {
        match tokio::time::timeout(WS_CLOSE_WAIT * 2, t).await {
            Ok(Ok(s)) => all.push(s),
            Ok(Err(e)) => tracing::warn!(error = %e, "ws client task failed"),
            Err(_) => tracing::warn!("ws client task did not finish in time"),
        }
    }

    let mut latencies: Vec<u32> = Vec::with_capacity(expected_live as usize);
    let mut connect_us: Vec<u32> = Vec::with_capacity(clients);
    let (mut frames, mut repeated, mut inversions, mut regressions, mut other) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    let (mut complete, mut min_frames, mut max_frames) = (0usize, u64::MAX, 0u64);
    let mut first_other: Option<String> = None;
    let mut failures: Vec<(String, usize)> = Vec::new();
    for s in &mut all {
        if s.subscribed {
            frames += s.frames;
            min_frames = min_frames.min(s.frames);
            max_frames = max_frames.max(s.frames);
            if s.frames >= pushes as u64 {
                complete += 1;
            }
        }
        connect_us.extend(s.connect_us);
        latencies.append(&mut s.latencies_us);
        repeated += s.repeated;
        inversions += s.seq_inversions;
        regressions += s.offset_regressions;
        other += s.other_frames;
        if first_other.is_none() {
            first_other = s.first_other.take();
        }
        first = match (first, s.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = last.max(s.last);
        if let Some(e) = &s.error {
            let e: String = e.chars().take(160).collect();
            match failures.iter_mut().find(|(k, _)| *k == e) {
                Some((_, n)) => *n += 1,
                None => failures.push((e, 1)),
            }
        }
    }
    latencies.sort_unstable();
    connect_us.sort_unstable();
    if min_frames == u64::MAX {
        min_frames = 0;
    }
    let expected = clients as u64 * pushes as u64;

    println!(
        "ws: {clients} clients on topic '{WS_TOPIC}', {pushes} pushes at {rate}/s (one directsend each), {payload}-byte message{}",
        pid.map(|p| format!("; server pid {p}")).unwrap_or_default()
    );
    println!(
        "  connect:   {subscribed}/{clients} subscribed in {:.2} s ({:.0}/s, {connect_concurrency} in flight); connect+subscribe p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} failed",
        connect_elapsed.as_secs_f64(),
        subscribed as f64 / connect_elapsed.as_secs_f64().max(1e-9),
        percentile(&connect_us, 50.0),
        percentile(&connect_us, 99.0),
        percentile(&connect_us, 100.0),
        progress.failed.load(Ordering::Relaxed)
    );
    if let (Some(before), Some(after)) = (rss_before, rss_connected) {
        let per = after.saturating_sub(before) as f64 / subscribed.max(1) as f64;
        println!(
            "  memory:    server VmRSS {:.1} MiB before, {:.1} MiB with {subscribed} connections = {:.1} KiB per connection; at the end VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            mib(before),
            mib(after),
            per / 1024.0,
            mib(rss_end.unwrap_or(0)),
            mib(hwm_end.unwrap_or(0)),
        );
    }
    let text: Vec<String> = outcomes.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "  publish:   {pushes} directsend calls in {:.2} s ({:.1}/s): {}; call latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        publish_elapsed.as_secs_f64(),
        pushes as f64 / publish_elapsed.as_secs_f64().max(1e-9),
        text.join(", "),
        percentile(&call_latencies, 50.0),
        percentile(&call_latencies, 99.0),
        percentile(&call_latencies, 100.0),
    );
    println!(
        "  delivered: {frames}/{expected} frames ({:.2} %); {complete} clients got all {pushes}, per client min {min_frames} max {max_frames}; {repeated} repeated, {regressions} out of offset order, {other} other frames{}",
        frames as f64 * 100.0 / expected.max(1) as f64,
        if waited_out {
            format!(" -- stopped waiting {} s after the last publish", timeout.as_secs())
        } else {
            String::new()
        }
    );
    println!(
        "  order:     {inversions} frames came after a later seq (their directsend calls overlapped and the later one was appended first; the topic's order is its offsets)"
    );
    if let (Some(first), Some(last)) = (first, last) {
        let window = last.duration_since(first).as_secs_f64();
        println!(
            "  rate:      {:.0} frames/s over the delivery window (first to last frame, {:.2} s; first frame {:.3} s after the first publish)",
            frames as f64 / window.max(1e-9),
            window,
            first.saturating_duration_since(publish_start).as_secs_f64()
        );
    }
    let mean = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().map(|&u| u as f64).sum::<f64>() / latencies.len() as f64 / 1000.0
    };
    println!(
        "  latency:   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms (receipt - t0, t0 taken as the directsend call starts)",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
        mean
    );
    if let Some(o) = first_other {
        println!("  first other frame: {o}");
    }
    if !failures.is_empty() {
        let text: Vec<String> = failures.iter().map(|(e, n)| format!("{n} x {e}")).collect();
        println!("  clients failed or ended early: {}", text.join("; "));
    }
    if all.len() < clients {
        println!("  {} client task(s) did not report", clients - all.len());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// baseline

/// The key `redis-benchmark -t lpush` writes.
const REDIS_BENCH_KEY: &str = "mylist";

async fn redis_baseline(redis_url: &str) -> Result<()> {
    let parsed = url::Url::parse(redis_url)
        .map_err(|e| BenchError::Other(format!("redis url '{redis_url}': {e}")))?;
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
    let port = parsed.port().unwrap_or(6379);
    let db: u32 = parsed.path().trim_start_matches('/').parse().unwrap_or(0);

    let client = redis::Client::open(redis_url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let exists: bool = redis::cmd("EXISTS")
        .arg(REDIS_BENCH_KEY)
        .query_async(&mut con)
        .await?;
    if exists {
        println!(
            "baseline redis: skipped, key '{REDIS_BENCH_KEY}' already exists in {host}:{port} db {db}"
        );
        return Ok(());
    }

    let mut cmd = tokio::process::Command::new("redis-benchmark");
    cmd.args([
        "-h",
        &host,
        "-p",
        &port.to_string(),
        "--dbnum",
        &db.to_string(),
    ]);
    if let Some(pass) = parsed.password() {
        if !parsed.username().is_empty() {
            cmd.args(["--user", parsed.username()]);
        }
        cmd.args(["-a", pass]);
    }
    let args = ["-P", "16", "-t", "lpush", "-n", "1000000", "-q"];
    cmd.args(args);
    tracing::info!(%host, port, db, "baseline: running redis-benchmark");
    let output = match cmd.output().await {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("baseline redis: skipped, redis-benchmark not found");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    // `-q` redraws a progress line with '\r'; the last segment is the result.
    let line = text
        .split(['\r', '\n'])
        .map(str::trim)
        .rfind(|l| l.contains("requests per second"))
        .unwrap_or("(no result line)");
    println!(
        "baseline redis: redis-benchmark {} (db {db}): {line}",
        args.join(" ")
    );
    if !output.status.success() {
        println!(
            "  redis-benchmark exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let _: i64 = redis::cmd("DEL")
        .arg(REDIS_BENCH_KEY)
        .query_async(&mut con)
        .await?;
    Ok(())
}

const SCRATCH_SCHEMA: [&str; 5] = [
    "CREATE TABLE bench_tenants (id UUID PRIMARY KEY)",
    "CREATE TABLE bench_groups (id UUID PRIMARY KEY, \
        tenant_id UUID NOT NULL REFERENCES bench_tenants(id) ON DELETE CASCADE)",
    // Same columns, constraints, foreign keys and indexes as `messages`.
    "CREATE TABLE bench_messages (
        id               UUID PRIMARY KEY,
        tenant_id        UUID NOT NULL REFERENCES bench_tenants(id) ON DELETE CASCADE,
        group_id         UUID NOT NULL REFERENCES bench_groups(id),
        state            TEXT NOT NULL CHECK (state IN ('scheduled', 'queued', 'active', 'delivered', 'failed', 'expired', 'cancelled')),
        subject          TEXT NOT NULL DEFAULT '',
        body             TEXT,
        use_template     BOOLEAN NOT NULL DEFAULT FALSE,
        variables        JSONB NOT NULL DEFAULT '{}',
        send_list        JSONB,
        data             JSONB,
        repeat           JSONB,
        run              INTEGER NOT NULL DEFAULT 0,
        attempts         INTEGER NOT NULL DEFAULT 0,
        due_at           TIMESTAMPTZ NOT NULL,
        run_at           TIMESTAMPTZ NOT NULL,
        finished_at      TIMESTAMPTZ,
        created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
    "CREATE INDEX bench_messages_pending ON bench_messages (group_id, due_at) \
        WHERE state IN ('scheduled', 'queued', 'active')",
    "CREATE INDEX bench_messages_tenant ON bench_messages (tenant_id, created_at)",
];

const UNNEST_INSERT: &str = "INSERT INTO bench_messages \
    (id, tenant_id, group_id, state, subject, body, use_template, variables, run, attempts, \
     due_at, run_at, created_at, updated_at) \
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], \
     $6::text[], $7::bool[], $8::jsonb[], $9::int4[], $10::int4[], $11::timestamptz[], \
     $12::timestamptz[], $13::timestamptz[], $14::timestamptz[])";

/// One `unnest` insert of `n` message-shaped rows.
async fn insert_rows(
    conn: &mut AsyncPgConnection,
    n: usize,
    tenant: Uuid,
    group: Uuid,
) -> Result<usize> {
    use diesel_async::RunQueryDsl;
    let now = Utc::now();
    let rows = diesel::sql_query(UNNEST_INSERT)
        .bind::<Array<SqlUuid>, _>((0..n).map(|_| Uuid::now_v7()).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(vec![tenant; n])
        .bind::<Array<SqlUuid>, _>(vec![group; n])
        .bind::<Array<Text>, _>(vec!["queued".to_string(); n])
        .bind::<Array<Text>, _>(vec!["pigeon bench".to_string(); n])
        .bind::<Array<Text>, _>(vec!["hello from pigeon bench".to_string(); n])
        .bind::<Array<Bool>, _>(vec![false; n])
        .bind::<Array<Jsonb>, _>(vec![json!({}); n])
        .bind::<Array<Int4>, _>(vec![0i32; n])
        .bind::<Array<Int4>, _>(vec![0i32; n])
        .bind::<Array<Timestamptz>, _>(vec![now; n])
        .bind::<Array<Timestamptz>, _>(vec![now; n])
        .bind::<Array<Timestamptz>, _>(vec![now; n])
        .bind::<Array<Timestamptz>, _>(vec![now; n])
        .execute(conn)
        .await?;
    Ok(rows)
}

struct PhaseResult {
    rows: u64,
    statements: u64,
    elapsed: f64,
    latencies_us: Vec<u32>,
}

/// `connections` tasks each inserting `rows` rows per statement until `length` has passed.
async fn pg_phase(
    pool: &store::PgPool,
    connections: usize,
    rows: usize,
    length: Duration,
    tenant: Uuid,
    group: Uuid,
) -> Result<PhaseResult> {
    // Connect everyone before the clock starts.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(store::conn(pool).await?);
    }
    let start = Instant::now();
    let stop_at = start + length;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut statements = 0u64;
                let mut lat = Vec::new();
                let mut last = start;
                while Instant::now() < stop_at {
                    let t = Instant::now();
                    done += insert_rows(&mut conn, rows, tenant, group).await? as u64;
                    last = Instant::now();
                    statements += 1;
                    lat.push(last.duration_since(t).as_micros().min(u32::MAX as u128) as u32);
                }
                Ok::<_, BenchError>((done, statements, lat, last))
            })
        })
        .collect();
    let mut out = PhaseResult {
        rows: 0,
        statements: 0,
        elapsed: 0.0,
        latencies_us: Vec::new(),
    };
    let mut last = start;
    for t in tasks {
        let (done, statements, lat, l) = t
            .await
            .map_err(|e| BenchError::Other(format!("insert task: {e}")))??;
        out.rows += done;
        out.statements += statements;
        out.latencies_us.extend(lat);
        last = last.max(l);
    }
    out.elapsed = last.duration_since(start).as_secs_f64().max(1e-9);
    out.latencies_us.sort_unstable();
    Ok(out)
}

fn scratch_url(database_url: &str) -> Result<String> {
    let mut parsed = url::Url::parse(database_url)
        .map_err(|e| BenchError::Other(format!("database url: {e}")))?;
    let base = parsed.path().trim_start_matches('/').to_string();
    let base = if base.is_empty() {
        "pigeon".into()
    } else {
        base
    };
    let tag = Uuid::new_v4().simple().to_string();
    parsed.set_path(&format!("/{base}_scratch_{}", &tag[..8]));
    Ok(parsed.to_string())
}

async fn pg_baseline(database_url: &str, connections: usize, length: Duration) -> Result<()> {
    let url = scratch_url(database_url)?;
    let name = url::Url::parse(&url)
        .map(|u| u.path().trim_start_matches('/').to_string())
        .unwrap_or_default();
    store::create_database_if_missing(&url).await?;
    tracing::info!(database = %name, "baseline: scratch database created");
    let result = pg_baseline_in(&url, &name, connections, length).await;
    match store::drop_database(&url).await {
        Ok(()) => tracing::info!(database = %name, "baseline: scratch database dropped"),
        Err(e) => {
            tracing::warn!(database = %name, error = %e, "could not drop the scratch database")
        }
    }
    result
}

async fn pg_baseline_in(url: &str, name: &str, connections: usize, length: Duration) -> Result<()> {
    use diesel_async::RunQueryDsl;
    let tenant = Uuid::now_v7();
    let group = Uuid::now_v7();
    {
        let mut conn = AsyncPgConnection::establish(url)
            .await
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        for stmt in SCRATCH_SCHEMA {
            diesel::sql_query(stmt).execute(&mut conn).await?;
        }
        diesel::sql_query("INSERT INTO bench_tenants (id) VALUES ($1)")
            .bind::<SqlUuid, _>(tenant)
            .execute(&mut conn)
            .await?;
        diesel::sql_query("INSERT INTO bench_groups (id, tenant_id) VALUES ($1, $2)")
            .bind::<SqlUuid, _>(group)
            .bind::<SqlUuid, _>(tenant)
            .execute(&mut conn)
            .await?;
    }
    let pool = store::pool(url, connections)?;
    println!(
        "baseline postgres: scratch db {name}, table shaped like messages (FKs, indexes), {connections} connections, {} s per phase",
        length.as_secs()
    );
    for (label, rows) in [
        ("100 rows/statement", BASELINE_ROWS_PER_STATEMENT),
        ("1 row/transaction ", 1),
    ] {
        tracing::info!(rows, "baseline: postgres phase");
        let r = pg_phase(&pool, connections, rows, length, tenant, group).await?;
        println!(
            "  {label}: {} rows in {} statements, {:.2} s = {:.0} rows/s, {:.0} statements/s; statement p50 {:.2} ms, p99 {:.2} ms",
            r.rows,
            r.statements,
            r.elapsed,
            r.rows as f64 / r.elapsed,
            r.statements as f64 / r.elapsed,
            percentile(&r.latencies_us, 50.0),
            percentile(&r.latencies_us, 99.0),
        );
    }
    drop(pool);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_message_ids() {
        let answer = br#"[{"messageId":"a","groupId":"g"},{"messageId":"b"}]"#;
        assert_eq!(accepted_in(answer), 2);
        assert_eq!(accepted_in(b"[]"), 0);
    }

    #[test]
    fn splits_bursts_at_gaps() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let arrivals = [t, t + ms(10), t + ms(20), t + ms(1000), t + ms(1030)];
        assert_eq!(bursts(&arrivals, ms(150)), vec![(3, ms(20)), (2, ms(30))]);
        assert!(bursts(&[], ms(150)).is_empty());
    }

    #[test]
    fn reads_the_marks_of_a_push_frame() {
        let frame = r#"{"type":"push","offset":"1-0","id":"i","groupId":null,"topic":"bench","subject":"s","body":"xxxx","data":{"seq":17,"t0":1764000000123456789},"sentAt":"2025-11-23T00:00:00Z"}"#;
        assert_eq!(push_marks(frame), Some((17, 1764000000123456789)));
        assert_eq!(push_offset(frame), Some((1, 0)));
        assert_eq!(push_offset(r#"{"type":"subscribed"}"#), None);
        assert_eq!(push_marks(r#"{"type":"push","data":{"seq":1}}"#), None);
        assert_eq!(
            push_marks(r#"{"type":"subscribed","topics":["bench"]}"#),
            None
        );
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn scratch_database_sits_next_to_the_configured_one() {
        let url = scratch_url("postgres://root@127.0.0.1:5432/pigeon_bench").unwrap_or_default();
        assert!(url.starts_with("postgres://root@127.0.0.1:5432/pigeon_bench_scratch_"));
    }
}
