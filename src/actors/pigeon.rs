//! The pigeon: the supervised actor of one group.
//!
//! It wakes one interval after it starts and then every interval; each wake claims at most
//! `batchCount` due messages of its group from the engine, marks the expired ones `expired`
//! without sending them, renders the rest and hands them to the channel, then records the
//! outcomes and finishes, retries or re-schedules each message (DESIGN.md section 4).
//!
//! A wake runs as its own task. The ids it holds are kept in [`Hand`]; if the task panics or
//! fails, the pigeon stops, its supervisor restarts it, and `restarting` gives those claims
//! back to the queue at once (the claim's lease would return them anyway). A wake never
//! overlaps the previous one, so a group never gets more than `batchCount` per interval.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde_json::Map;
use uuid::Uuid;

use super::channels::{self, Content, Job, Outcome};
use super::messages::{PigeonLost, Retire, Update};
use super::{breeder::Breeder, Deps, PigeonSpec};
use crate::domain::{DeliveryStatus, MessageState};
use crate::engine::EngineError;
use crate::schedule::Repeat;
use crate::store::deliveries::{delivery_id, Attempt, Delivery};
use crate::store::groups::Group;
use crate::store::messages::{Message, Reschedule};
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The ids a wake has claimed and not yet finished.
#[derive(Default, Clone)]
pub struct Hand(Arc<Mutex<Vec<Uuid>>>);

impl Hand {
    fn hold(&self, ids: &[Uuid]) {
        if let Ok(mut h) = self.0.lock() {
            h.extend_from_slice(ids);
        }
    }
    fn take(&self) -> Vec<Uuid> {
        self.0
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default()
    }
}

pub struct Pigeon {
    spec: PigeonSpec,
    /// Tells this pigeon apart from a later one of the same group (see `PigeonLost`).
    generation: u64,
    deps: Arc<Deps>,
    breeder: Addr<Breeder>,
    hand: Hand,
    busy: bool,
    /// No more wakes: the group's lease was lost, or the breeder retired the pigeon.
    retired: bool,
    /// Retire received: stop as soon as the wake in progress ends.
    stop_when_idle: bool,
    renew: Option<SpawnHandle>,
    /// Told when the wake in progress ends (a retirement waits for it).
    on_idle: Vec<tokio::sync::oneshot::Sender<()>>,
    wake: Option<SpawnHandle>,
}

impl Pigeon {
    pub fn new(spec: PigeonSpec, generation: u64, deps: Arc<Deps>, breeder: Addr<Breeder>) -> Self {
        Pigeon {
            spec,
            generation,
            deps,
            breeder,
            hand: Hand::default(),
            busy: false,
            retired: false,
            stop_when_idle: false,
            renew: None,
            on_idle: Vec::new(),
            wake: None,
        }
    }

    /// Stops waking and renewing, without stopping the actor: stopping a supervised actor
    /// whose address is still held only restarts it.
    fn go_idle(&mut self, ctx: &mut Context<Self>) {
        self.retired = true;
        for h in [self.wake.take(), self.renew.take()].into_iter().flatten() {
            ctx.cancel_future(h);
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.wake.take() {
            ctx.cancel_future(h);
        }
        self.wake = Some(ctx.run_interval(self.spec.interval, |act, ctx| act.tick(ctx)));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.retired {
            return;
        }
        self.busy = true;
        let deps = self.deps.clone();
        let spec = self.spec.clone();
        let hand = self.hand.clone();
        // Its own task, so that a panic inside stops this wake, not the arbiter.
        let task = actix_rt::spawn(async move { wake(&deps, &spec, &hand).await });
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(task).map(|res, act, ctx| {
                act.busy = false;
                for tx in act.on_idle.drain(..) {
                    let _ = tx.send(());
                }
                match res {
                    Ok(Ok(_)) => {
                        act.hand.take();
                    }
                    Ok(Err(e)) if !act.retired => {
                        tracing::warn!(group = %act.spec.group_id, error = %e, "pigeon wake failed; restarting");
                        ctx.stop();
                    }
                    Err(e) if !act.retired => {
                        tracing::error!(group = %act.spec.group_id, error = %e, "pigeon wake panicked; restarting");
                        ctx.stop();
                    }
                    // Retired: what it still held lapses back to the queue for whoever runs
                    // the group now.
                    _ => {}
                }
                if act.stop_when_idle {
                    ctx.stop();
                }
            }),
        );
    }

    fn renew_lease(&mut self, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let group = self.spec.group_id;
        let ttl = deps.settings.engine.group_lease().as_millis() as i64;
        let fut = async move { deps.engine.acquire_lease(group, &deps.node_id, ttl).await };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(fut).map(|res, act, ctx| match res {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(group = %act.spec.group_id, "lease taken by another node; pigeon stops");
                act.go_idle(ctx);
                act.breeder.do_send(PigeonLost {
                    group: act.spec.group_id,
                    generation: act.generation,
                });
            }
            // Redis unreachable: keep going; the lease may lapse and another node take over,
            // which the next renewal finds out.
            Err(e) => tracing::warn!(group = %act.spec.group_id, error = %e, "lease renewal failed"),
        }));
    }
}

impl Actor for Pigeon {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            // Restarted after retiring: stay idle until the breeder lets go of it.
            return;
        }
        self.arm(ctx);
        let every = self.deps.settings.engine.group_lease() / 3;
        self.renew = Some(
            ctx.run_interval(every.max(Duration::from_millis(200)), |act, ctx| {
                act.renew_lease(ctx)
            }),
        );
        tracing::debug!(group = %self.spec.group_id, interval = ?self.spec.interval, batch = self.spec.batch_count, "pigeon started");
    }
}

impl Supervised for Pigeon {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.busy = false;
        self.wake = None;
        self.renew = None;
        let ids = self.hand.take();
        if ids.is_empty() {
            return;
        }
        let engine = self.deps.engine.clone();
        let group = self.spec.group_id;
        let now = Utc::now().timestamp_millis();
        actix_rt::spawn(async move {
            let items: Vec<_> = ids.iter().map(|id| (*id, now)).collect();
            if let Err(e) = engine.release(group, &items).await {
                // The claims' lease returns them later.
                tracing::warn!(%group, error = %e, "could not release claims");
            }
        });
    }
}

impl Handler<Update> for Pigeon {
    type Result = ();
    fn handle(&mut self, msg: Update, ctx: &mut Context<Self>) {
        let rearm = msg.0.interval != self.spec.interval;
        self.spec = msg.0;
        if rearm {
            self.arm(ctx);
        }
        tracing::info!(group = %self.spec.group_id, interval = ?self.spec.interval, batch = self.spec.batch_count, "pigeon updated");
    }
}

/// Retiring lets a wake in progress finish (so its claims end delivered or released, not
/// left to lapse), then gives the group's lease back; the answer comes when both are done.
impl Handler<Retire> for Pigeon {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) -> Self::Result {
        self.go_idle(ctx);
        let idle = if self.busy {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.on_idle.push(tx);
            self.stop_when_idle = true;
            Some(rx)
        } else {
            ctx.stop();
            None
        };
        let deps = self.deps.clone();
        let group = self.spec.group_id;
        Box::pin(async move {
            if let Some(rx) = idle {
                let _ = rx.await;
            }
            if let Err(e) = deps.engine.release_lease(group, &deps.node_id).await {
                tracing::warn!(%group, error = %e, "could not release the group lease");
            }
        })
    }
}

/// What a message's targets came to in one wake.
#[derive(Default)]
struct Tally {
    retrying: bool,
    failed: bool,
    retry_after: Option<Duration>,
}

/// Backoff before retry `attempt` (1-based): base * 2^(attempt-1), +-20 % jitter, capped.
pub fn backoff(settings: &crate::config::DeliverySettings, attempt: i32) -> Duration {
    let exp = (attempt.max(1) - 1).min(30) as u32;
    let secs = (settings.backoff_base_secs as f64) * 2f64.powi(exp as i32);
    let secs = secs.min(settings.backoff_max_secs as f64);
    let jitter = 0.8 + fastrand::f64() * 0.4;
    Duration::from_secs_f64((secs * jitter).max(0.0))
}

/// One wake of a group: claim, expire, deliver, record. Returns how many messages it claimed.
pub async fn wake(deps: &Deps, spec: &PigeonSpec, hand: &Hand) -> Result<usize, TickError> {
    let engine = &deps.engine;
    let group_id = spec.group_id;
    let now = Utc::now();
    let lease = deps.settings.engine.claim_lease().as_millis() as i64;
    let ids = engine
        .claim(group_id, spec.batch_count, now.timestamp_millis(), lease)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    hand.hold(&ids);
    let mut conn = store::conn(&deps.pool).await?;

    let Some((group, level)) = Group::find_live(&mut conn, group_id).await? else {
        // Deleted meanwhile: its messages were cancelled with it.
        engine.ack(group_id, &ids).await?;
        return Ok(ids.len());
    };
    let messages = Message::activate(&mut conn, group_id, &ids, now).await?;
    let live: HashSet<Uuid> = messages.iter().map(|m| m.id).collect();
    let stale: Vec<Uuid> = ids
        .iter()
        .filter(|id| !live.contains(id))
        .copied()
        .collect();
    if !stale.is_empty() {
        // Finished or cancelled: forget them. Pending but not due yet (an engine entry that
        // ran ahead of the store): back to the queue at their time.
        let waiting = Message::pending_due(&mut conn, &stale).await?;
        let later: HashSet<Uuid> = waiting.iter().map(|(id, _)| *id).collect();
        let done: Vec<Uuid> = stale
            .iter()
            .filter(|id| !later.contains(id))
            .copied()
            .collect();
        engine.ack(group_id, &done).await?;
        let items: Vec<_> = waiting
            .iter()
            .map(|(id, due)| (*id, due.timestamp_millis()))
            .collect();
        engine.release(group_id, &items).await?;
    }

    let mut again: Vec<Reschedule> = Vec::new();
    // The level as it is now, not as it was when the pigeon was armed.
    let expiry = PigeonSpec::from_rows(&group, &level).map_or(spec.expiry, |s| s.expiry);
    let (expired, due): (Vec<Message>, Vec<Message>) = messages.into_iter().partition(|m| {
        expiry.is_some_and(|exp| {
            chrono::Duration::from_std(exp)
                .ok()
                .and_then(|exp| m.run_at.checked_add_signed(exp))
                .is_some_and(|deadline| now > deadline)
        })
    });
    let mut expired_done = Vec::new();
    for m in &expired {
        // An expired run of a recurring message skips to the next run.
        match next_run(m, now) {
            Some(next) => again.push(Reschedule {
                id: m.id,
                due_at: next,
                run_at: next,
                run: m.run + 1,
                attempts: 0,
            }),
            None => expired_done.push(m.id),
        }
    }
    if !expired.is_empty() {
        tracing::info!(group = %group_id, count = expired.len(), "runs expired unsent");
    }

    // Targets already settled in this run (a retry) are not sent again.
    let due_ids: Vec<Uuid> = due.iter().map(|m| m.id).collect();
    let runs: Vec<i32> = due
        .iter()
        .map(|m| m.run)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let prior: HashMap<(Uuid, i32, i32), Delivery> = Delivery::for_runs(&mut conn, &due_ids, &runs)
        .await?
        .into_iter()
        .map(|d| ((d.message_id, d.run, d.target_index), d))
        .collect();

    let empty = Map::new();
    let config = group.config.as_object().unwrap_or(&empty);
    let default_timeout = Duration::from_secs(deps.settings.delivery.http_timeout_secs);
    let max_attempts = deps.settings.delivery.max_attempts.max(1) as i32;
    let mut jobs = Vec::new();
    // Per job: (message index, attempt record without outcome).
    let mut pending: Vec<(usize, Attempt, i32)> = Vec::new();
    let mut settled: Vec<Attempt> = Vec::new();
    let mut tallies: Vec<Tally> = due.iter().map(|_| Tally::default()).collect();

    for (mi, m) in due.iter().enumerate() {
        let targets = m
            .send_list
            .as_ref()
            .unwrap_or(&group.send_list)
            .as_array()
            .cloned()
            .unwrap_or_default();
        if targets.is_empty() {
            // The group's list was emptied after the send was accepted: nobody to deliver to.
            tallies[mi].failed = true;
        }
        let variables = m.variables.as_object().unwrap_or(&empty);
        let content = Content {
            tenant: m.tenant_id,
            group_id: Some(group.id),
            data: m.data.as_ref(),
            subject: &m.subject,
            message: m.body.as_deref(),
            use_template: m.use_template,
            variables,
            config,
        };
        for (ti, target) in targets.iter().enumerate() {
            let previous = prior.get(&(m.id, m.run, ti as i32));
            match previous.map(|d| d.status.as_str()) {
                Some("delivered") | Some("queued-offline") => continue,
                Some("failed") => {
                    tallies[mi].failed = true;
                    continue;
                }
                _ => {}
            }
            let attempts_before = previous.map(|d| d.attempts).unwrap_or(0);
            let record = Attempt {
                id: delivery_id(m.id, m.run, ti),
                message_id: m.id,
                run: m.run,
                target_index: ti as i32,
                target: target
                    .as_object()
                    .map(channels::target_label)
                    .unwrap_or_default(),
                status: DeliveryStatus::Failed,
                response_code: None,
                response: None,
                error: None,
            };
            match channels::prepare(spec.channel, target, &content, default_timeout) {
                Ok(request) => {
                    jobs.push(Job {
                        delivery_id: record.id,
                        request,
                    });
                    pending.push((mi, record, attempts_before + 1));
                }
                Err(e) => {
                    // The group or its targets changed since the send was accepted.
                    tallies[mi].failed = true;
                    settled.push(Attempt {
                        error: Some(e.to_string()),
                        ..record
                    });
                }
            }
        }
    }

    let outcomes = deps.channels.deliver(jobs).await;
    for ((mi, mut record, attempt_no), outcome) in pending.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Delivered { code, response } => {
                record.status = DeliveryStatus::Delivered;
                record.response_code = code.map(i32::from);
                record.response = response;
            }
            Outcome::Kept => record.status = DeliveryStatus::QueuedOffline,
            Outcome::Failed {
                transient,
                code,
                error,
                retry_after,
            } => {
                record.response_code = code.map(i32::from);
                record.error = Some(error);
                if transient && attempt_no < max_attempts {
                    record.status = DeliveryStatus::Retrying;
                    let t = &mut tallies[mi];
                    t.retrying = true;
                    // A receiver's Retry-After counts, up to the configured longest backoff.
                    let cap = Duration::from_secs(deps.settings.delivery.backoff_max_secs);
                    t.retry_after = t.retry_after.max(retry_after.map(|r| r.min(cap)));
                } else {
                    record.status = DeliveryStatus::Failed;
                    tallies[mi].failed = true;
                }
            }
        }
        settled.push(record);
    }

    let mut delivered = Vec::new();
    let mut failed = Vec::new();
    for (m, t) in due.iter().zip(&tallies) {
        if t.retrying {
            let wait = backoff(&deps.settings.delivery, m.attempts + 1)
                .max(t.retry_after.unwrap_or_default());
            again.push(Reschedule {
                id: m.id,
                due_at: now + chrono::Duration::from_std(wait).unwrap_or_default(),
                run_at: m.run_at,
                run: m.run,
                attempts: m.attempts + 1,
            });
        } else if let Some(next) = next_run(m, now) {
            again.push(Reschedule {
                id: m.id,
                due_at: next,
                run_at: next,
                run: m.run + 1,
                attempts: 0,
            });
        } else if t.failed {
            failed.push(m.id);
        } else {
            delivered.push(m.id);
        }
    }

    use diesel_async::AsyncConnection;
    conn.transaction::<_, StoreError, _>(async |conn| {
        Delivery::record(conn, &settled).await?;
        Message::finish(conn, &delivered, MessageState::Delivered).await?;
        Message::finish(conn, &failed, MessageState::Failed).await?;
        Message::finish(conn, &expired_done, MessageState::Expired).await?;
        Message::reschedule(conn, &again).await?;
        Ok(())
    })
    .await?;

    // Settled in the store: from here nothing is handed back on a restart, and an engine
    // that misses the news is rebuilt from the store rather than the wake failing.
    hand.take();
    let finished: Vec<Uuid> = delivered
        .iter()
        .chain(&failed)
        .chain(&expired_done)
        .copied()
        .collect();
    let items: Vec<_> = again
        .iter()
        .map(|r| (r.id, r.due_at.timestamp_millis()))
        .collect();
    let (acked, released) = futures::join!(
        engine.ack(group_id, &finished),
        engine.release(group_id, &items)
    );
    if let Err(e) = acked.and(released) {
        tracing::warn!(group = %group_id, error = %e, "engine missed a wake's outcome; it will be rebuilt");
        deps.engine_dirty
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    tracing::debug!(
        group = %group_id,
        claimed = ids.len(),
        delivered = delivered.len(),
        failed = failed.len(),
        rescheduled = again.len(),
        "pigeon wake"
    );
    Ok(ids.len())
}

/// The next run of a recurring message, if its rule has one.
fn next_run(m: &Message, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let rule: Repeat = serde_json::from_value(m.repeat.clone()?).ok()?;
    rule.next_after(m.run, m.run_at, now)
}
