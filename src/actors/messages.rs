//! Every actor message type, each with what it asks.

use actix::prelude::*;
use uuid::Uuid;

use super::PigeonSpec;

/// Breeder: a group was created, changed or deleted; look it up and start, update or stop its
/// pigeon now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct GroupChanged(pub Uuid);

/// Breeder: reconcile every group with the store (and the engine with the store when it has
/// lost its data).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Sync;

/// What a lookup found for a group.
#[derive(Debug, Clone)]
pub enum Found {
    /// Deleted (or not runnable): its pigeon must stop.
    Gone,
    /// This node already ran it when the lookup began: update its pigeon if still there.
    Running(PigeonSpec),
    /// This node just took the group's lease: start (or update) its pigeon.
    Leased(PigeonSpec),
}

/// Breeder (from itself): apply a lookup. `full` means the list holds every live group, so
/// pigeons missing from it stop.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Apply {
    pub found: Vec<(Uuid, Found)>,
    pub full: bool,
}

/// Breeder (from a pigeon): this pigeon lost its group's lease to another node and went idle.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct PigeonLost {
    pub group: Uuid,
    /// Which pigeon of the group: a stale report must not remove a newer one.
    pub generation: u64,
}

/// Breeder: stop every pigeon and give their leases back (shutdown); answers when done.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopAll;

/// Pigeon: the group's level or channel changed; re-arm with this spec.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Update(pub PigeonSpec);

/// Pigeon: stop for good once the wake in progress ends, releasing the group's lease.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Retire;
