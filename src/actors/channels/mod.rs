//! Channels: turning one message for one target into a provider call, and the actors that
//! make those calls.
//!
//! [`prepare`] renders a target into a ready-to-send [`Prepared`] request; the API calls it
//! when a send is accepted (so a missing variable is a 400 then, not a failure later) and the
//! pigeon calls it again when it delivers. [`Channels`] holds the channel actors (each owns its
//! client pool) and hands them batches.

pub mod webhook;
pub mod websocket;

use std::time::Duration;

use std::sync::Arc;

use actix::Addr;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::Channel;
use crate::templates::{self, MissingVariable, Vars};

/// Why a target cannot be prepared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrepareError {
    #[error("{0}")]
    Missing(#[from] MissingVariable),
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    #[error("channel type '{0}' is not available in this build")]
    Unavailable(Channel),
}

/// A delivery ready for its channel.
#[derive(Debug, Clone)]
pub enum Prepared {
    Webhook(webhook::WebhookRequest),
    Websocket(websocket::WsPush),
}

/// One delivery handed to a channel.
#[derive(Debug, Clone)]
pub struct Job {
    /// Stable across attempts: receivers dedupe on it.
    pub delivery_id: Uuid,
    pub request: Prepared,
}

/// What a provider made of one delivery.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered {
        code: Option<u16>,
        response: Option<String>,
    },
    /// Nobody could take it now; it is kept for later (a WebSocket push to an offline user
    /// stays in the catch-up stream).
    Kept,
    Failed {
        /// Worth retrying (timeout, connection error, HTTP 429/5xx).
        transient: bool,
        code: Option<u16>,
        error: String,
        /// The provider's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
}

/// Everything a message gives its templates, besides the target.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    pub tenant: Uuid,
    /// The group, for sends through one.
    pub group_id: Option<Uuid>,
    pub subject: &'a str,
    /// The send's `message` text.
    pub message: Option<&'a str>,
    pub use_template: bool,
    pub variables: &'a Map<String, Value>,
    /// The group's `config` (templates, provider settings); empty for direct sends.
    pub config: &'a Map<String, Value>,
    /// Free data travelling with the message (WebSocket frames carry it).
    pub data: Option<&'a Value>,
}

impl<'a> Content<'a> {
    fn vars(&self, target: &'a Map<String, Value>) -> Vars<'a> {
        Vars {
            variables: self.variables,
            target,
            subject: self.subject,
            message: self.message,
        }
    }

    /// The notification text: the group's `template` rendered when `useTemplate` is set,
    /// otherwise the send's `message`.
    pub fn text(&self, target: &Map<String, Value>) -> Result<String, PrepareError> {
        if self.use_template {
            let template = self
                .config
                .get("template")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    PrepareError::InvalidTarget(
                        "useTemplate is set but the group's config has no \"template\"".into(),
                    )
                })?;
            Ok(templates::render(template, &self.vars(target))?)
        } else {
            Ok(self.message.unwrap_or_default().to_string())
        }
    }
}

/// A short label of a target for delivery records: its `target` field, else its `url`.
pub fn target_label(target: &Map<String, Value>) -> String {
    ["target", "url", "topic"]
        .iter()
        .find_map(|k| target.get(*k).map(templates::value_text))
        .unwrap_or_default()
}

/// Renders one target of a message for its channel.
pub fn prepare(
    channel: Channel,
    target: &Value,
    content: &Content<'_>,
    default_timeout: Duration,
) -> Result<Prepared, PrepareError> {
    let target = target
        .as_object()
        .ok_or_else(|| PrepareError::InvalidTarget("each target must be a JSON object".into()))?;
    match channel {
        Channel::Webhook => Ok(Prepared::Webhook(webhook::prepare(
            target,
            content,
            default_timeout,
        )?)),
        Channel::Websocket => Ok(Prepared::Websocket(websocket::prepare(target, content)?)),
        other => Err(PrepareError::Unavailable(other)),
    }
}

/// The channel actors of this node.
#[derive(Clone)]
pub struct Channels {
    pub webhook: Addr<webhook::WebhookChannel>,
    pub websocket: Addr<websocket::WsChannel>,
}

impl Channels {
    /// Starts every channel actor.
    pub fn start(
        settings: &crate::config::Settings,
        engine: Arc<dyn crate::engine::Engine>,
    ) -> Result<Self, ChannelError> {
        Ok(Channels {
            webhook: webhook::WebhookChannel::start_with(&settings.delivery)?,
            websocket: websocket::WsChannel::start_with(engine, settings.websocket.clone()),
        })
    }

    /// Delivers a batch; the outcomes come back in the order of `jobs`.
    pub async fn deliver(&self, jobs: Vec<Job>) -> Vec<Outcome> {
        let n = jobs.len();
        let mut hooks = Vec::new();
        let mut pushes = Vec::new();
        // Where each job's outcome sits in its channel's answer.
        let mut order = Vec::with_capacity(n);
        for job in jobs {
            match job.request {
                Prepared::Webhook(req) => {
                    order.push((Channel::Webhook, hooks.len()));
                    hooks.push((job.delivery_id, req));
                }
                Prepared::Websocket(push) => {
                    order.push((Channel::Websocket, pushes.len()));
                    pushes.push((job.delivery_id, push));
                }
            }
        }
        let (hooks_n, pushes_n) = (hooks.len(), pushes.len());
        let (hook_out, push_out) = futures::join!(
            async {
                if hooks.is_empty() {
                    return Vec::new();
                }
                self.webhook
                    .send(webhook::Deliver(hooks))
                    .await
                    .unwrap_or_else(|e| unavailable("webhook", hooks_n, e))
            },
            async {
                if pushes.is_empty() {
                    return Vec::new();
                }
                self.websocket
                    .send(websocket::Deliver(pushes))
                    .await
                    .unwrap_or_else(|e| unavailable("websocket", pushes_n, e))
            }
        );
        order
            .into_iter()
            .map(|(channel, i)| {
                let list = if channel == Channel::Webhook {
                    &hook_out
                } else {
                    &push_out
                };
                list.get(i).cloned().unwrap_or(Outcome::Failed {
                    transient: true,
                    code: None,
                    error: "channel gave no answer".into(),
                    retry_after: None,
                })
            })
            .collect()
    }
}

fn unavailable(channel: &str, n: usize, e: actix::MailboxError) -> Vec<Outcome> {
    (0..n)
        .map(|_| Outcome::Failed {
            transient: true,
            code: None,
            error: format!("{channel} channel unavailable: {e}"),
            retry_after: None,
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}
