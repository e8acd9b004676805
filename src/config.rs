//! Settings: compiled-in defaults (`config/default.toml`), then `config/<PIGEON_ENV>.toml`, then
//! environment variables (`PIGEON__SECTION__KEY`, `DATABASE_URL`, `REDIS_URL`).
//!
//! Settings are passed in, never global, so tests can run several differently configured apps in
//! one process.

use std::time::Duration;

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub engine: EngineSettings,
    pub auth: AuthSettings,
    pub delivery: DeliverySettings,
    pub websocket: WebsocketSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Listen address.
    pub host: String,
    /// Listen port (0 picks a free one).
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Grace period on shutdown, seconds.
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// PostgreSQL URL.
    pub url: String,
    /// Pool size.
    pub pool_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Redis,
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Which engine backs the queues.
    pub kind: EngineKind,
    /// Redis URL (with an optional database number).
    pub redis_url: String,
    /// Prefix of every Redis key.
    pub prefix: String,
    /// Claim lease, seconds.
    pub claim_lease_secs: u64,
    /// Group ownership lease, seconds.
    pub group_lease_secs: u64,
    /// Group and engine sync period, seconds.
    pub sync_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret.
    pub jwt_secret: String,
    /// Lifetime of minted tokens, seconds.
    pub token_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// Attempts per target before giving up on transient failures.
    pub max_attempts: u32,
    /// Backoff base, seconds.
    pub backoff_base_secs: u64,
    /// Backoff cap, seconds.
    pub backoff_max_secs: u64,
    /// Default webhook timeout, seconds.
    pub http_timeout_secs: u64,
    /// Concurrent webhook requests per channel.
    pub http_concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketSettings {
    /// Server ping period, seconds (default `session::HEARTBEAT_INTERVAL`).
    #[serde(default)]
    pub heartbeat_interval_secs: Option<u64>,
    /// A client silent this long is dropped, seconds (default `session::CLIENT_TIMEOUT`).
    #[serde(default)]
    pub client_timeout_secs: Option<u64>,
    /// Outbound bytes a session may have pending before it is closed (1008).
    pub outbound_buffer_bytes: usize,
    /// Pushes kept per catch-up stream.
    pub retention_count: usize,
    /// Age after which pushes leave catch-up streams, seconds.
    pub retention_secs: u64,
}

impl WebsocketSettings {
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval_secs
            .map(|s| Duration::from_secs(s.max(1)))
            .unwrap_or(crate::actors::ws::session::HEARTBEAT_INTERVAL)
    }
    pub fn client_timeout(&self) -> Duration {
        self.client_timeout_secs
            .map(|s| Duration::from_secs(s.max(1)))
            .unwrap_or(crate::actors::ws::session::CLIENT_TIMEOUT)
    }
    pub fn retention_ms(&self) -> i64 {
        (self.retention_secs as i64).saturating_mul(1000).max(1000)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// "json" or "pretty".
    pub format: String,
    /// tracing filter.
    pub level: String,
}

impl Settings {
    /// Loads defaults, the `PIGEON_ENV` file (if any) and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let env = std::env::var("PIGEON_ENV").unwrap_or_else(|_| "development".into());
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::with_name(&format!("config/{env}")).required(false))
            .add_source(
                config::Environment::with_prefix("PIGEON")
                    .prefix_separator("__")
                    .separator("__"),
            );
        if let Ok(url) = std::env::var("DATABASE_URL") {
            builder = builder.set_override("database.url", url)?;
        }
        if let Ok(url) = std::env::var("REDIS_URL") {
            builder = builder.set_override("engine.redis_url", url)?;
        }
        Ok(builder.build()?.try_deserialize()?)
    }

    /// The compiled-in defaults alone (tests start from these).
    pub fn defaults() -> Result<Self, ConfigError> {
        Ok(config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?)
    }
}

impl EngineSettings {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            EngineKind::Redis => "redis",
            EngineKind::Memory => "memory",
        }
    }
    pub fn claim_lease(&self) -> Duration {
        Duration::from_secs(self.claim_lease_secs)
    }
    pub fn group_lease(&self) -> Duration {
        Duration::from_secs(self.group_lease_secs)
    }
    pub fn sync_interval(&self) -> Duration {
        Duration::from_secs(self.sync_interval_secs.max(1))
    }
}
