//! The breeder: registry and supervisor of this node's pigeons.
//!
//! It adopts every group at start-up and then, every `sync_interval`, reconciles the pigeons
//! it runs with the store: new groups get a pigeon (once this node holds the group's lease in
//! the engine, so each group runs on exactly one node), changed groups get their pigeon
//! updated, deleted groups get theirs retired. The API tells it of a change at once
//! ([`GroupChanged`]). Each sync first checks that the engine still holds its data and
//! rebuilds it from the store when it does not (Redis restarted or flushed).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use actix::Supervisor;
use uuid::Uuid;

use super::messages::{Apply, GroupChanged, PigeonLost, Retire, Running, StopAll, Sync, Update};
use super::pigeon::Pigeon;
use super::{Deps, PigeonSpec};
use crate::engine::rebuild::rebuild;
use crate::store::{self, groups::Group};

struct Flock {
    addr: Addr<Pigeon>,
    spec: PigeonSpec,
}

pub struct Breeder {
    deps: Arc<Deps>,
    pigeons: HashMap<Uuid, Flock>,
    syncing: bool,
    stopped: bool,
}

impl Breeder {
    pub fn new(deps: Arc<Deps>) -> Self {
        Breeder {
            deps,
            pigeons: HashMap::new(),
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

/// Looks up specs for `groups`, taking the lease of each one this node does not run yet.
async fn lookup(
    deps: Arc<Deps>,
    rows: Vec<(Uuid, Option<PigeonSpec>)>,
    running: Vec<Uuid>,
) -> Vec<(Uuid, Option<PigeonSpec>)> {
    let ttl = deps.settings.engine.group_lease().as_millis() as i64;
    let mut out = Vec::with_capacity(rows.len());
    for (id, spec) in rows {
        let Some(spec) = spec else {
            out.push((id, None));
            continue;
        };
        if running.contains(&id) {
            out.push((id, Some(spec)));
            continue;
        }
        match deps.engine.acquire_lease(id, &deps.node_id, ttl).await {
            Ok(true) => out.push((id, Some(spec))),
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
        let running: Vec<Uuid> = self.pigeons.keys().copied().collect();
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
            actix::fut::wrap_future::<_, Self>(fut).map(|specs, act, ctx| {
                act.syncing = false;
                if let Some(specs) = specs {
                    ctx.notify(Apply { specs, full: true });
                }
            }),
        );
    }
}

impl Handler<GroupChanged> for Breeder {
    type Result = ();

    fn handle(&mut self, msg: GroupChanged, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let running: Vec<Uuid> = self.pigeons.keys().copied().collect();
        let id = msg.0;
        let fut = async move {
            let mut conn = store::conn(&deps.pool).await.ok()?;
            let row = Group::find_live(&mut conn, id).await.ok()?;
            drop(conn);
            let spec = row.and_then(|(g, l)| PigeonSpec::from_rows(&g, &l));
            Some(lookup(deps, vec![(id, spec)], running).await)
        };
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(fut).map(|specs, _, ctx| {
                if let Some(specs) = specs {
                    ctx.notify(Apply { specs, full: false });
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
            let keep: std::collections::HashSet<Uuid> = msg
                .specs
                .iter()
                .filter(|(_, s)| s.is_some())
                .map(|(id, _)| *id)
                .collect();
            let gone: Vec<Uuid> = self
                .pigeons
                .keys()
                .filter(|id| !keep.contains(id))
                .copied()
                .collect();
            for id in gone {
                self.retire(id);
            }
        }
        for (id, spec) in msg.specs {
            match (spec, self.pigeons.get_mut(&id)) {
                (None, _) => self.retire(id),
                (Some(spec), Some(flock)) => {
                    if flock.spec != spec {
                        flock.spec = spec.clone();
                        flock.addr.do_send(Update(spec));
                    }
                }
                (Some(spec), None) => {
                    let deps = self.deps.clone();
                    let me = ctx.address();
                    let s = spec.clone();
                    let addr = Supervisor::start(move |_| Pigeon::new(s, deps, me));
                    tracing::info!(group = %id, interval = ?spec.interval, batch = spec.batch_count, "pigeon started");
                    self.pigeons.insert(id, Flock { addr, spec });
                }
            }
        }
    }
}

impl Handler<PigeonLost> for Breeder {
    type Result = ();
    fn handle(&mut self, msg: PigeonLost, _: &mut Context<Self>) {
        self.pigeons.remove(&msg.0);
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

impl Handler<Running> for Breeder {
    type Result = Vec<Uuid>;
    fn handle(&mut self, _: Running, _: &mut Context<Self>) -> Vec<Uuid> {
        self.pigeons.keys().copied().collect()
    }
}
