//! One WebSocket session: a browser or app client of one user in one tenant.
//!
//! It registers with the hub under its user's key, joins topic keys on `subscribe` (only the
//! topics its token allows), answers heartbeats and drops a client silent for longer than the
//! client timeout. Catch-up: with `?since=` (or `since` in a `subscribe`) it first replays the
//! stream after that offset, holding live pushes for that key meanwhile, then sends the held
//! ones it had not replayed: no gap, no duplicate. A client that lets more than its outbound
//! budget pile up unread is closed with 1008 so it never slows the others.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;
use bytestring::ByteString;
use uuid::Uuid;

use super::hub::{Connect, Count, Disconnect, Hub, Keys, Push, Resync, SessionId};
use super::protocol::{self, ClientFrame};
use crate::actors::Deps;
use crate::engine::{offset_key, Replay};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How often the server pings each client (config may override).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// A client silent (no pong, no frame) this long is dropped (config may override).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Bytes a text frame of `len` payload bytes takes on the wire (server frames are unmasked).
pub fn wire_size(len: usize) -> usize {
    len + match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Who the session is for, from its token.
pub struct Identity {
    pub tenant: Uuid,
    pub user: String,
    /// Topics the token allows; None means any topic of the tenant.
    pub topics: Option<HashSet<String>>,
}

pub struct WsSession {
    id: SessionId,
    who: Identity,
    user_key: String,
    since: Option<String>,
    deps: Arc<Deps>,
    hub: Addr<Hub>,
    last_heard: Instant,
    /// Bytes written to the context and not yet taken by the connection (see `api::ws`).
    outbound: Arc<AtomicUsize>,
    closing: bool,
    /// Keys being replayed, with the live pushes held for them meanwhile.
    holding: HashMap<String, Vec<Push>>,
    /// Per replayed key, the newest offset the replay sent. A push at or below it was appended
    /// before the replay read the stream, so the replay already sent it: its live copy (which
    /// may arrive after the replay, pub/sub being slower than the read) is dropped.
    floor: HashMap<String, Option<(u64, u64)>>,
    /// Per key, the newest offset sent: where a catch-up after a lost subscription resumes.
    seen: HashMap<String, (u64, u64)>,
    topics: HashSet<String>,
}

impl WsSession {
    pub fn new(
        who: Identity,
        since: Option<String>,
        deps: Arc<Deps>,
        hub: Addr<Hub>,
        outbound: Arc<AtomicUsize>,
    ) -> Self {
        let user_key = protocol::user_key(who.tenant, &who.user);
        WsSession {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            who,
            user_key,
            since,
            deps,
            hub,
            last_heard: Instant::now(),
            outbound,
            closing: false,
            holding: HashMap::new(),
            floor: HashMap::new(),
            seen: HashMap::new(),
            topics: HashSet::new(),
        }
    }

    /// Sends a text frame unless the client has let too much pile up.
    fn write(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: ByteString) {
        if self.closing {
            return;
        }
        let size = wire_size(frame.len());
        let pending = self.outbound.fetch_add(size, Ordering::Relaxed) + size;
        if pending > self.deps.settings.websocket.outbound_buffer_bytes {
            self.closing = true;
            metrics::counter!("pigeon_ws_slow_client_closed_total").increment(1);
            tracing::warn!(session = self.id, user = %self.who.user, pending, "client too slow; closing");
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Policy,
                description: Some(
                    "outbound buffer full: the client does not read fast enough".into(),
                ),
            }));
            ctx.stop();
            return;
        }
        metrics::counter!("pigeon_ws_frames_sent_total").increment(1);
        ctx.text(frame);
    }

    /// Sends a push of `key` at `offset`, remembering the newest offset sent per key.
    fn send_push(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        key: &str,
        offset: &str,
        frame: ByteString,
    ) {
        if let Some(at) = offset_key(offset) {
            let seen = self.seen.entry(key.to_string()).or_insert(at);
            *seen = (*seen).max(at);
        }
        self.write(ctx, frame);
    }

    fn error(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: &str, message: &str) {
        self.write(ctx, protocol::error_frame(code, message));
    }

    /// Replays `key` after `since`, holding its live pushes until done.
    fn replay(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        key: String,
        kind: &'static str,
        name: String,
        since: String,
    ) {
        if self.holding.contains_key(&key) {
            // One replay per key at a time: the one running already covers what follows.
            return;
        }
        self.holding.insert(key.clone(), Vec::new());
        let deps = self.deps.clone();
        let hub = self.hub.clone();
        let stream = key.clone();
        let fut = async move {
            // The hub handles messages in order: once it answers, it has registered this
            // session for `key`, so every push appended after the read below reaches us live.
            let _ = hub.send(Count).await;
            let ws = &deps.settings.websocket;
            let now = chrono::Utc::now().timestamp_millis();
            deps.engine
                .stream_since(
                    &stream,
                    &since,
                    ws.retention_count.max(1),
                    now,
                    ws.retention_ms(),
                )
                .await
                .map(|replay| (replay, since))
        };
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(fut).map(move |res, act, ctx| {
                let held = act.holding.remove(&key).unwrap_or_default();
                let (replay, since) = match res {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "catch-up read failed");
                        act.error(
                            ctx,
                            "catch_up_failed",
                            "could not read missed pushes; reconnect to retry",
                        );
                        (Replay::default(), String::new())
                    }
                };
                if replay.lost {
                    act.write(ctx, protocol::reset_frame(kind, &name, &since));
                }
                let mut last = offset_key(&since);
                for (offset, stored) in replay.entries {
                    act.send_push(ctx, &key, &offset, protocol::push_frame(&offset, &stored));
                    last = offset_key(&offset).max(last);
                }
                act.floor.insert(key.clone(), last);
                for push in held {
                    if offset_key(&push.offset) > last {
                        act.send_push(ctx, &key, &push.offset, push.frame);
                    }
                }
            }),
        );
    }

    fn on_frame(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => return self.error(ctx, "bad_frame", &e.to_string()),
        };
        match frame {
            ClientFrame::Subscribe { topics, since } => {
                if let Some(bad) = topics.iter().find(|t| !protocol::valid_name(t)) {
                    return self.error(
                        ctx,
                        "invalid_topic",
                        &format!("'{bad}' is not a topic name"),
                    );
                }
                if let Some(allowed) = &self.who.topics {
                    if let Some(denied) = topics.iter().find(|t| !allowed.contains(*t)) {
                        return self.error(
                            ctx,
                            "forbidden_topic",
                            &format!("the token does not allow topic '{denied}'"),
                        );
                    }
                }
                if let Some(s) = &since {
                    if offset_key(s).is_none() {
                        return self.error(
                            ctx,
                            "invalid_since",
                            &format!("'{s}' is not an offset"),
                        );
                    }
                }
                let keys: Vec<String> = topics
                    .iter()
                    .map(|t| protocol::topic_key(self.who.tenant, t))
                    .collect();
                self.topics.extend(topics.iter().cloned());
                self.hub.do_send(Keys {
                    id: self.id,
                    keys: keys.clone(),
                    join: true,
                });
                self.write(ctx, protocol::subscribed_frame("subscribed", &topics));
                if let Some(since) = since {
                    for (key, topic) in keys.into_iter().zip(topics) {
                        self.replay(ctx, key, "topic", topic, since.clone());
                    }
                }
            }
            ClientFrame::Unsubscribe { topics } => {
                let keys = topics
                    .iter()
                    .map(|t| protocol::topic_key(self.who.tenant, t))
                    .collect();
                for t in &topics {
                    self.topics.remove(t);
                }
                self.hub.do_send(Keys {
                    id: self.id,
                    keys,
                    join: false,
                });
                self.write(ctx, protocol::subscribed_frame("unsubscribed", &topics));
            }
            ClientFrame::Ack { id } => {
                tracing::trace!(session = self.id, push = %id, "ack");
                metrics::counter!("pigeon_ws_acks_total").increment(1);
            }
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.hub.do_send(Connect {
            id: self.id,
            keys: vec![self.user_key.clone()],
            session: ctx.address(),
        });
        let ws = &self.deps.settings.websocket;
        let (every, timeout) = (ws.heartbeat_interval(), ws.client_timeout());
        ctx.run_interval(every, move |act, ctx| {
            if act.last_heard.elapsed() > timeout {
                tracing::info!(session = act.id, user = %act.who.user, "client silent; dropping");
                metrics::counter!("pigeon_ws_silent_client_dropped_total").increment(1);
                ctx.stop();
                return;
            }
            act.outbound.fetch_add(wire_size(0), Ordering::Relaxed);
            ctx.ping(b"");
        });
        if let Some(since) = self.since.take() {
            let (key, user) = (self.user_key.clone(), self.who.user.clone());
            self.replay(ctx, key, "user", user, since);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.hub.do_send(Disconnect { id: self.id });
    }
}

impl Handler<Push> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        if let Some(held) = self.holding.get_mut(&*msg.key) {
            held.push(msg);
        } else if self
            .floor
            .get(&*msg.key)
            .is_some_and(|floor| offset_key(&msg.offset) <= *floor)
        {
            // Already sent by the replay.
        } else {
            self.send_push(ctx, &msg.key, &msg.offset, msg.frame);
        }
    }
}

impl Handler<Resync> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: Resync, ctx: &mut Self::Context) {
        let mut keys = vec![(self.user_key.clone(), "user", self.who.user.clone())];
        for topic in &self.topics {
            keys.push((
                protocol::topic_key(self.who.tenant, topic),
                "topic",
                topic.clone(),
            ));
        }
        for (key, kind, name) in keys {
            let since = match self.seen.get(&key) {
                Some((ms, seq)) => format!("{ms}-{seq}"),
                None => format!("{}-0", msg.since_ms.max(0)),
            };
            self.replay(ctx, key, kind, name, since);
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => self.on_frame(ctx, &text),
            Ok(ws::Message::Ping(data)) => {
                self.outbound
                    .fetch_add(wire_size(data.len()), Ordering::Relaxed);
                ctx.pong(&data);
            }
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Binary(_)) | Ok(ws::Message::Continuation(_)) => {
                self.error(ctx, "bad_frame", "frames are JSON text");
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(e) => {
                tracing::debug!(session = self.id, error = %e, "websocket protocol error");
                ctx.stop();
            }
        }
    }
}
