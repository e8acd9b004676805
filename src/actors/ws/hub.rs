//! The hub: this node's registry of WebSocket sessions by key (user or topic), fed by the
//! engine's pub/sub.
//!
//! Every push, whichever node published it, arrives here once as an [`Envelope`]; the hub
//! hands the same frame bytes to each local session of its key. The hub also keeps this
//! node's presence marks in the engine (a key has sessions here), which is how a delivery
//! knows whether anyone, on any node, received it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytestring::ByteString;
use futures::StreamExt;

use super::protocol::Envelope;
use super::session::WsSession;
use crate::actors::Deps;

/// How often the hub renews its presence marks; they live three times as long.
const PRESENCE_REFRESH: Duration = Duration::from_secs(10);
/// Wait before subscribing again after the engine's subscription ended.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// How far before the last publication received a lost subscription's gap is assumed to
/// start: offsets come from the publishing node's clock.
const GAP_MARGIN_MS: i64 = 2_000;

pub type SessionId = u64;

/// Session: a push for it.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Push {
    pub key: Arc<str>,
    pub offset: Arc<str>,
    pub frame: ByteString,
}

/// Hub: a session opened, for these keys (its user's key first).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub id: SessionId,
    pub keys: Vec<String>,
    pub session: Addr<WsSession>,
}

/// Session (from the hub): the hub's subscription was lost and is back; pushes published
/// meanwhile never reached this node, so replay every key from the last push seen (or, for a
/// key with none seen, from `since_ms`).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Resync {
    pub since_ms: i64,
}

/// Hub: a session closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub id: SessionId,
}

/// Hub: a session joins (`join`) or leaves keys.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Keys {
    pub id: SessionId,
    pub keys: Vec<String>,
    pub join: bool,
}

/// Hub (from its subscription): a publication from some node.
#[derive(Message)]
#[rtype(result = "()")]
struct Incoming(Vec<u8>);

/// Hub: how many sessions this node holds.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Count;

pub struct Hub {
    deps: Arc<Deps>,
    sessions: HashMap<SessionId, (Addr<WsSession>, HashSet<String>)>,
    by_key: HashMap<String, HashSet<SessionId>>,
}

impl Hub {
    pub fn new(deps: Arc<Deps>) -> Self {
        Hub {
            deps,
            sessions: HashMap::new(),
            by_key: HashMap::new(),
        }
    }

    fn ttl() -> i64 {
        (PRESENCE_REFRESH * 3).as_millis() as i64
    }

    fn touch(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let deps = self.deps.clone();
        actix_rt::spawn(async move {
            let now = chrono::Utc::now().timestamp_millis();
            if let Err(e) = deps
                .engine
                .presence_touch(&keys, &deps.node_id, now, Hub::ttl())
                .await
            {
                tracing::warn!(error = %e, "could not mark presence");
            }
        });
    }

    fn join(&mut self, id: SessionId, keys: Vec<String>) {
        let mut fresh = Vec::new();
        for key in keys {
            let members = self.by_key.entry(key.clone()).or_default();
            if members.is_empty() {
                fresh.push(key.clone());
            }
            members.insert(id);
            if let Some((_, own)) = self.sessions.get_mut(&id) {
                own.insert(key);
            }
        }
        self.touch(fresh);
    }

    fn leave(&mut self, id: SessionId, keys: Vec<String>) {
        for key in keys {
            if let Some((_, own)) = self.sessions.get_mut(&id) {
                own.remove(&key);
            }
            self.unindex(id, key);
        }
    }

    /// Takes a session off a key; the last one off drops this node's presence mark.
    fn unindex(&mut self, id: SessionId, key: String) {
        let Some(members) = self.by_key.get_mut(&key) else {
            return;
        };
        members.remove(&id);
        if members.is_empty() {
            self.by_key.remove(&key);
            let deps = self.deps.clone();
            actix_rt::spawn(async move {
                let _ = deps.engine.presence_drop(&key, &deps.node_id).await;
            });
        }
    }

    fn subscribe(&self, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let now = || chrono::Utc::now().timestamp_millis();
            let mut last_heard = now();
            // Where the current gap began, while the subscription is down.
            let mut gap_from: Option<i64> = None;
            loop {
                match deps.engine.subscribe().await {
                    Ok(mut stream) => {
                        tracing::debug!("hub subscribed to pushes");
                        if let Some(since_ms) = gap_from.take() {
                            me.do_send(Resynced { since_ms });
                        }
                        while let Some(payload) = stream.next().await {
                            if !me.connected() {
                                return;
                            }
                            last_heard = now();
                            // do_send ignores the mailbox bound: a burst of pushes waits in
                            // the hub's mailbox rather than being dropped.
                            me.do_send(Incoming(payload));
                        }
                        tracing::warn!("push subscription ended; subscribing again");
                    }
                    Err(e) => tracing::warn!(error = %e, "could not subscribe to pushes"),
                }
                gap_from.get_or_insert(last_heard - GAP_MARGIN_MS);
                if !me.connected() {
                    return;
                }
                tokio::time::sleep(RESUBSCRIBE_AFTER).await;
            }
        });
    }
}

/// Hub (from its subscription): subscribed again after a gap that began at `since_ms`.
#[derive(Message)]
#[rtype(result = "()")]
struct Resynced {
    since_ms: i64,
}

impl Handler<Resynced> for Hub {
    type Result = ();
    fn handle(&mut self, msg: Resynced, _: &mut Context<Self>) {
        tracing::info!(
            sessions = self.sessions.len(),
            "push subscription back; sessions catch up"
        );
        for (session, _) in self.sessions.values() {
            session.do_send(Resync {
                since_ms: msg.since_ms,
            });
        }
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.subscribe(ctx);
        ctx.run_interval(PRESENCE_REFRESH, |act, _| {
            let keys: Vec<String> = act.by_key.keys().cloned().collect();
            act.touch(keys);
        });
    }
}

impl Handler<Connect> for Hub {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        self.sessions.insert(msg.id, (msg.session, HashSet::new()));
        self.join(msg.id, msg.keys);
        metrics::gauge!("pigeon_ws_sessions").set(self.sessions.len() as f64);
    }
}

impl Handler<Disconnect> for Hub {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        if let Some((_, keys)) = self.sessions.remove(&msg.id) {
            for key in keys {
                self.unindex(msg.id, key);
            }
        }
        metrics::gauge!("pigeon_ws_sessions").set(self.sessions.len() as f64);
    }
}

impl Handler<Keys> for Hub {
    type Result = ();
    fn handle(&mut self, msg: Keys, _: &mut Context<Self>) {
        if !self.sessions.contains_key(&msg.id) {
            return;
        }
        if msg.join {
            self.join(msg.id, msg.keys);
        } else {
            self.leave(msg.id, msg.keys);
        }
    }
}

impl Handler<Incoming> for Hub {
    type Result = ();
    fn handle(&mut self, msg: Incoming, _: &mut Context<Self>) {
        let envelope: Envelope = match serde_json::from_slice(&msg.0) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable push envelope");
                return;
            }
        };
        let Some(members) = self.by_key.get(&envelope.key) else {
            return;
        };
        let push = Push {
            key: Arc::from(envelope.key.as_str()),
            offset: Arc::from(envelope.offset.as_str()),
            frame: ByteString::from(envelope.frame),
        };
        for id in members {
            if let Some((session, _)) = self.sessions.get(id) {
                session.do_send(push.clone());
            }
        }
    }
}

impl Handler<Count> for Hub {
    type Result = usize;
    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> usize {
        self.sessions.len()
    }
}
