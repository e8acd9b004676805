//! The breeder: registry and supervisor of this node's pigeons.
//!
//! It adopts every group at start-up and then, every `sync_interval`, reconciles the pigeons
//! it runs with the store: new groups get a pigeon (once this node holds the group's lease in
//! the engine, so each group runs on exactly one node), changed groups get their pigeon
//! updated, deleted groups get theirs retired. The API tells it of a change at once
//! ([`GroupChanged`]). Each sync first checks that the engine still holds its data and
//! rebuilds it from the store when it does not (Redis restarted or flushed).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix::Supervisor;
use uuid::Uuid;

use super::messages::{Apply, Found, GroupChanged, PigeonLost, Retire, StopAll, Sync, Update};
use super::pigeon::Pigeon;
use super::{Deps, PigeonSpec};
use crate::engine::rebuild::rebuild;
use crate::store::{self, groups::Group, messages::Message};

/// How long after a group is deleted its queue is swept once more: a send that read the group
/// just before the delete may commit just after it.
const SWEEP_AFTER: Duration = Duration::from_secs(5);

struct Flock {
    addr: Addr<Pigeon>,
    spec: PigeonSpec,
    generation: u64,
}

pub struct Breeder {
    deps: Arc<Deps>,
    pigeons: HashMap<Uuid, Flock>,
    generations: u64,
    syncing: bool,
    stopped: bool,
}

impl Breeder {
    pub fn new(deps: Arc<Deps>) -> Self {
        Breeder {
            deps,
            pigeons: HashMap::new(),
            generations: 0,
            syncing: false,
            stopped: false,
        }
    }

    fn retire(&mut self, group: Uuid) {
        if let Some(flock) = self.pigeons.remove(&group) {
            flock.addr.do_send(Retire);
            tracing::info!(%group, "pigeon retired");
        }
    }

    /// Cancels what a deleted group still has pending once more, after in-flight sends that
    /// raced the delete have committed.
    fn sweep_later(&self, ctx: &mut Context<Self>, group: Uuid) {
        let deps = self.deps.clone();
        ctx.run_later(SWEEP_AFTER, move |_, _| {
            actix_rt::spawn(async move {
                let Ok(mut conn) = store::conn(&deps.pool).await else { return };
                match Message::cancel_if_group_deleted(&mut conn, group).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(%group, cancelled = n, "late sends to a deleted group cancelled"),
                    Err(e) => tracing::warn!(%group, error = %e, "sweep of a deleted group failed"),
                }
            });
        });
    }
}

impl Actor for Breeder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Sync);
        ctx.run_interval(self.deps.settings.engine.sync_interval(), |_, ctx| {
            ctx.notify(Sync)
        });
    }
}

/// Looks up what to do for each group, taking the lease of each one this node does not run.
async fn lookup(
    deps: Arc<Deps>,
    rows: Vec<(Uuid, Option<PigeonSpec>)>,
    running: HashSet<Uuid>,
) -> Vec<(Uuid, Found)> {
    let ttl = deps.settings.engine.group_lease().as_millis() as i64;
    let mut out = Vec::with_capacity(rows.len());
    for (id, spec) in rows {
        let Some(spec) = spec else {
            out.push((id, Found::Gone));
            continue;
        };
        if running.contains(&id) {
            out.push((id, Found::Running(spec)));
            continue;
        }
        match deps.engine.acquire_lease(id, &deps.node_id, ttl).await {
            Ok(true) => out.push((id, Found::Leased(spec))),
            Ok(false) => {} // another node runs it
            Err(e) => tracing::warn!(group = %id, error = %e, "could not take group lease"),
        }
    }
    out
}

impl Handler<Sync> for Breeder {
    type Result = ();

    fn handle(&mut self, _: Sync, ctx: &mut Context<Self>) {
        if self.syncing || self.stopped {
            return;
        }
        self.syncing = true;
        let deps = self.deps.clone();
        let running: HashSet<Uuid> = self.pigeons.keys().copied().collect();
        let fut = async move {
            let dirty = deps.engine_dirty.swap(false, Ordering::SeqCst);
            match deps.engine.is_synced().await {
                Ok(synced) if synced && !dirty => {}
                Ok(_) => {
                    tracing::warn!("engine is missing data; rebuilding from the store");
                    if let Err(e) = rebuild(deps.engine.as_ref(), &deps.pool).await {
                        deps.engine_dirty.store(true, Ordering::SeqCst);
                        tracing::error!(error = %e, "engine rebuild failed");
                    }
                }
                Err(e) => {
                    deps.engine_dirty.fetch_or(dirty, Ordering::SeqCst);
                    tracing::warn!(error = %e, "engine unreachable");
                }
            }
            let mut conn = store::conn(&deps.pool).await.ok()?;
            let rows = match Group::all_live(&mut conn).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list groups");
                    return None;
                }
            };
            drop(conn);
            let rows = rows
                .iter()
                .map(|(g, l)| (g.id, PigeonSpec::from_rows(g, l)))
                .collect();
            Some(lookup(deps, rows, running).await)
        };
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(fut).map(|found, act, ctx| {
                act.syncing = false;
                if let Some(found) = found {
                    ctx.notify(Apply { found, full: true });
                }
            }),
        );
    }
}

impl Handler<GroupChanged> for Breeder {
    type Result = ();

    fn handle(&mut self, msg: GroupChanged, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let running: HashSet<Uuid> = self.pigeons.keys().copied().collect();
        let id = msg.0;
        let fut = async move {
            let mut conn = store::conn(&deps.pool).await.ok()?;
            let row = Group::find_live(&mut conn, id).await.ok()?;
            drop(conn);
            let spec = row.and_then(|(g, l)| PigeonSpec::from_rows(&g, &l));
            Some(lookup(deps, vec![(id, spec)], running).await)
        };
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(fut).map(|found, _, ctx| {
                if let Some(found) = found {
                    ctx.notify(Apply { found, full: false });
                }
            }),
        );
    }
}

impl Handler<Apply> for Breeder {
    type Result = ();

    fn handle(&mut self, msg: Apply, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        if msg.full {
            let live: HashSet<Uuid> = msg
                .found
                .iter()
                .filter(|(_, f)| !matches!(f, Found::Gone))
                .map(|(id, _)| *id)
                .collect();
            let gone: Vec<Uuid> = self
                .pigeons
                .keys()
                .filter(|id| !live.contains(id))
                .copied()
                .collect();
            for id in gone {
                self.retire(id);
            }
        }
        for (id, found) in msg.found {
            match found {
                Found::Gone => {
                    if self.pigeons.contains_key(&id) {
                        self.retire(id);
                        self.sweep_later(ctx, id);
                    }
                }
                Found::Running(spec) | Found::Leased(spec) if self.pigeons.contains_key(&id) => {
                    if let Some(flock) = self.pigeons.get_mut(&id) {
                        if flock.spec != spec {
                            flock.spec = spec.clone();
                            flock.addr.do_send(Update(spec));
                        }
                    }
                }
                // It stopped while the lookup ran; the next sync takes the lease again.
                Found::Running(_) => {}
                Found::Leased(spec) => {
                    self.generations += 1;
                    let generation = self.generations;
                    let deps = self.deps.clone();
                    let me = ctx.address();
                    let s = spec.clone();
                    let addr = Supervisor::start(move |_| Pigeon::new(s, generation, deps, me));
                    tracing::info!(group = %id, interval = ?spec.interval, batch = spec.batch_count, "pigeon started");
                    self.pigeons.insert(
                        id,
                        Flock {
                            addr,
                            spec,
                            generation,
                        },
                    );
                }
            }
        }
    }
}

impl Handler<PigeonLost> for Breeder {
    type Result = ();
    fn handle(&mut self, msg: PigeonLost, _: &mut Context<Self>) {
        if self
            .pigeons
            .get(&msg.group)
            .is_some_and(|f| f.generation == msg.generation)
        {
            // Dropping its address (after Retire) lets the idle pigeon end for good.
            self.retire(msg.group);
        }
    }
}

/// Shutdown: every pigeon finishes its wake in progress and gives its lease back; the answer
/// comes when all have.
impl Handler<StopAll> for Breeder {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: StopAll, _: &mut Context<Self>) -> Self::Result {
        self.stopped = true;
        let retiring: Vec<_> = self
            .pigeons
            .drain()
            .map(|(_, flock)| flock.addr.send(Retire))
            .collect();
        Box::pin(async move {
            futures::future::join_all(retiring).await;
        })
    }
}
