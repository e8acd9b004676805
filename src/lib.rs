//! Pigeon: a notification engine. `start` builds the whole service (store, engine, actors,
//! HTTP API) on a listener, so the binary and the tests run the same app.

pub mod actors;
pub mod api;
pub mod auth;
pub mod bench;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod schedule;
pub mod state;
pub mod store;
pub mod templates;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::{web, App, HttpServer};

use actors::breeder::Breeder;
use actors::channels::{ChannelError, Channels};
use actors::Deps;
use config::{EngineKind, LogSettings, Settings};
use engine::Engine;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Rebuild(#[from] engine::rebuild::RebuildError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// Group-commit tasks: one gathers waiting sends while the other commits.
const COMMIT_WORKERS: usize = 2;

/// A started service.
pub struct Service {
    pub server: actix_web::dev::Server,
    pub addr: SocketAddr,
    pub breeder: Addr<Breeder>,
    grace: Duration,
}

impl Service {
    /// Runs until the server stops (SIGINT/SIGTERM, or a stop through its handle), then lets
    /// the pigeons finish their wakes in progress and give their leases back, for at most
    /// `grace`.
    pub async fn run(self) -> std::io::Result<()> {
        let result = self.server.await;
        let stop = self.breeder.send(actors::messages::StopAll);
        if tokio::time::timeout(self.grace, stop).await.is_err() {
            tracing::warn!("pigeons did not finish in time; their claims return when they lapse");
        }
        result
    }
}

/// Prepares the database (created if missing, migrated) and connects the engine.
pub async fn connect(settings: &Settings) -> Result<(store::PgPool, Arc<dyn Engine>), StartError> {
    store::create_database_if_missing(&settings.database.url).await?;
    store::run_migrations(&settings.database.url).await?;
    let pool = store::pool(&settings.database.url, settings.database.pool_size)?;
    let engine: Arc<dyn Engine> = match settings.engine.kind {
        EngineKind::Redis => Arc::new(
            engine::redis::RedisEngine::connect(
                &settings.engine.redis_url,
                &settings.engine.prefix,
            )
            .await?,
        ),
        EngineKind::Memory => Arc::new(engine::memory::MemoryEngine::new()),
    };
    Ok((pool, engine))
}

/// Starts the service on `listener`. Must run inside an actix System. `engine` replaces the
/// configured engine (tests wrap one to inject faults).
pub async fn start(
    settings: Settings,
    listener: TcpListener,
    engine: Option<Arc<dyn Engine>>,
) -> Result<Service, StartError> {
    let settings = Arc::new(settings);
    let (pool, configured) = connect(&settings).await?;
    let engine = engine.unwrap_or(configured);
    // The engine is an index over the store: make it whole before any pigeon claims.
    engine::rebuild::rebuild(engine.as_ref(), &pool).await?;

    let deps = Arc::new(Deps {
        pool: pool.clone(),
        engine: engine.clone(),
        channels: Channels::start(&settings, engine.clone())?,
        settings: settings.clone(),
        node_id: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
        engine_dirty: AtomicBool::new(false),
    });
    metrics::handle();
    let breeder = Breeder::new(deps.clone()).start();
    let hub = actors::ws::hub::Hub::new(deps.clone()).start();
    let state = web::Data::new(state::AppState {
        deps,
        breeder: breeder.clone(),
        hub,
        keys: auth::Keys::new(&settings.auth.jwt_secret),
        tenants: auth::TenantCache::default(),
        commits: store::commit::Committer::start(pool.clone(), COMMIT_WORKERS),
        pool,
    });

    let addr = listener.local_addr()?;
    let max_body = settings.server.max_body_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(api::request_id::middleware))
            .configure(|cfg| api::routes(cfg, max_body))
    })
    .shutdown_timeout(settings.server.shutdown_timeout_secs)
    .listen(listener)?;
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    tracing::info!(%addr, engine = settings.engine.kind_name(), "pigeon listening");
    Ok(Service {
        server: server.run(),
        addr,
        breeder,
        grace: Duration::from_secs(settings.server.shutdown_timeout_secs),
    })
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// Installs the tracing subscriber (JSON lines or pretty), filtered by RUST_LOG or config.
pub fn init_tracing(log: &LogSettings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if log.format == "pretty" {
        builder.try_init()
    } else {
        builder.json().try_init()
    };
}
