//! What every request handler shares: the node's actors and clients, and the auth keys.

use std::sync::Arc;

use actix::Addr;

use crate::actors::{breeder::Breeder, ws::hub::Hub, Deps};
use crate::auth::{Keys, TenantCache};
use crate::config::Settings;
use crate::engine::Engine;
use crate::store::{commit::Committer, PgPool};

pub struct AppState {
    pub deps: Arc<Deps>,
    pub breeder: Addr<Breeder>,
    pub hub: Addr<Hub>,
    pub keys: Keys,
    pub tenants: TenantCache,
    pub pool: PgPool,
    /// Group commit of send requests.
    pub commits: Committer,
}

impl AppState {
    pub fn engine(&self) -> &dyn Engine {
        self.deps.engine.as_ref()
    }
    pub fn settings(&self) -> &Settings {
        &self.deps.settings
    }
}
