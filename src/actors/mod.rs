//! Actors: the breeder (registry and supervisor of pigeons), one pigeon per group, and the
//! channel actors that own provider clients. Their message types live in `messages.rs`.

pub mod breeder;
pub mod channels;
pub mod messages;
pub mod pigeon;
pub mod ws;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::config::Settings;
use crate::domain::{Channel, Unit};
use crate::engine::Engine;
use crate::store::{groups::Group, levels::Level, PgPool};
use channels::Channels;

/// What every actor of a node shares.
pub struct Deps {
    pub pool: PgPool,
    pub engine: Arc<dyn Engine>,
    pub channels: Channels,
    pub settings: Arc<Settings>,
    /// This node's id in group leases.
    pub node_id: String,
    /// Set when a write to the engine failed after its rows were committed: the next sync
    /// rebuilds the engine from the store.
    pub engine_dirty: AtomicBool,
}

/// What a pigeon needs to know of its group to pace it.
#[derive(Debug, Clone, PartialEq)]
pub struct PigeonSpec {
    pub group_id: Uuid,
    pub tenant_id: Uuid,
    pub channel: Channel,
    pub interval: Duration,
    pub batch_count: usize,
    /// None: messages never expire.
    pub expiry: Option<Duration>,
}

impl PigeonSpec {
    /// The spec of a live group; None when its rows are not ones a pigeon can run.
    pub fn from_rows(group: &Group, level: &Level) -> Option<PigeonSpec> {
        let unit = Unit::parse(&level.unit)?;
        let exp_unit = Unit::parse(&level.exp_unit)?;
        Some(PigeonSpec {
            group_id: group.id,
            tenant_id: group.tenant_id,
            channel: Channel::parse(&group.channel)?,
            interval: unit.times(level.interval_time),
            batch_count: level.batch_count.max(1) as usize,
            expiry: (level.exp_time > 0).then(|| exp_unit.times(level.exp_time)),
        })
    }
}
