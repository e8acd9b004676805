//! The WebSocket channel: a target is a user (`{"target": "<user id>"}`, every session of that
//! user in the tenant) or a topic (`{"topic": "<name>"}`, every session subscribed to it).
//!
//! Each push is appended to its key's catch-up stream (which gives it its offset), published
//! to every node's hub, and counted `delivered` when a session of the key is online on some
//! node, `queued-offline` otherwise (the stream keeps it for when the user reconnects).

use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Content, Outcome, PrepareError};
use crate::actors::ws::protocol::{self, Envelope};
use crate::config::WebsocketSettings;
use crate::engine::Engine;

/// One rendered push.
#[derive(Debug, Clone)]
pub struct WsPush {
    /// The stream and presence key (user or topic, within the tenant).
    pub key: String,
    /// The topic, for a push to a topic.
    pub topic: Option<String>,
    pub group_id: Option<Uuid>,
    pub subject: String,
    pub body: String,
    pub data: Option<Value>,
}

/// Renders a websocket target: `target` (a user id) or `topic`, not both.
pub fn prepare(target: &Map<String, Value>, content: &Content<'_>) -> Result<WsPush, PrepareError> {
    let invalid = |m: String| PrepareError::InvalidTarget(m);
    let name = |field: &str| -> Result<Option<String>, PrepareError> {
        match target.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if protocol::valid_name(s) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(format!(
                "\"{field}\" must be 1 to 256 characters without braces, got {other}"
            ))),
        }
    };
    let (key, topic) = match (name("target")?, name("topic")?) {
        (Some(user), None) => (protocol::user_key(content.tenant, &user), None),
        (None, Some(topic)) => (protocol::topic_key(content.tenant, &topic), Some(topic)),
        _ => {
            return Err(invalid(
                "a websocket target needs exactly one of \"target\" (a user id) or \"topic\""
                    .into(),
            ))
        }
    };
    Ok(WsPush {
        key,
        topic,
        group_id: content.group_id,
        subject: content.subject.to_string(),
        body: content.text(target)?,
        data: content.data.cloned(),
    })
}

/// Push these; answers one outcome per push, in order.
#[derive(Message)]
#[rtype(result = "Vec<Outcome>")]
pub struct Deliver(pub Vec<(Uuid, WsPush)>);

/// Owns the engine handle pushes go through.
pub struct WsChannel {
    engine: Arc<dyn Engine>,
    settings: WebsocketSettings,
}

impl WsChannel {
    pub fn start_with(engine: Arc<dyn Engine>, settings: WebsocketSettings) -> Addr<Self> {
        WsChannel { engine, settings }.start()
    }
}

impl Actor for WsChannel {
    type Context = Context<Self>;
}

impl Handler<Deliver> for WsChannel {
    type Result = ResponseFuture<Vec<Outcome>>;

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) -> Self::Result {
        let engine = self.engine.clone();
        let keep = self.settings.retention_count.max(1);
        let max_age = self.settings.retention_ms();
        Box::pin(async move {
            let mut out = Vec::with_capacity(msg.0.len());
            // In order: pushes to one key keep their order in its stream.
            for (id, push) in msg.0 {
                out.push(
                    match push_one(engine.as_ref(), id, push, keep, max_age).await {
                        Ok(o) => o,
                        Err(e) => Outcome::Failed {
                            transient: true,
                            code: None,
                            error: format!("push: {e}"),
                            retry_after: None,
                        },
                    },
                );
            }
            out
        })
    }
}

async fn push_one(
    engine: &dyn Engine,
    id: Uuid,
    push: WsPush,
    keep: usize,
    max_age: i64,
) -> Result<Outcome, crate::engine::EngineError> {
    let now = Utc::now();
    let stored = protocol::push_body(
        id,
        push.group_id,
        push.topic.as_deref(),
        &push.subject,
        &push.body,
        push.data.as_ref(),
        now,
    );
    let offset = engine
        .stream_append(&push.key, &stored, keep, max_age, now.timestamp_millis())
        .await?;
    let frame = protocol::push_frame(&offset, &stored);
    let envelope = Envelope {
        key: push.key.clone(),
        offset,
        frame: frame.to_string(),
    };
    let payload = serde_json::to_vec(&envelope)
        .map_err(|e| crate::engine::EngineError::Other(e.to_string()))?;
    // Both after the append (the frame carries its offset); neither waits for the other.
    let (published, online) = futures::join!(
        engine.publish(&payload),
        engine.presence_any(&push.key, now.timestamp_millis())
    );
    published?;
    Ok(if online? {
        Outcome::Delivered {
            code: None,
            response: Some("pushed to online sessions".into()),
        }
    } else {
        Outcome::Kept
    })
}
