//! Channels: turning one message for one target into a provider call, and the actors that
//! make those calls.
//!
//! [`prepare`] renders a target into a ready-to-send [`Prepared`] request; the API calls it
//! when a send is accepted (so a missing variable is a 400 then, not a failure later) and the
//! pigeon calls it again when it delivers. [`Channels`] holds the channel actors (each owns its
//! client pool) and hands them batches.

pub mod webhook;

use std::time::Duration;

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
    pub subject: &'a str,
    /// The send's `message` text.
    pub message: Option<&'a str>,
    pub use_template: bool,
    pub variables: &'a Map<String, Value>,
    /// The group's `config` (templates, provider settings); empty for direct sends.
    pub config: &'a Map<String, Value>,
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
        other => Err(PrepareError::Unavailable(other)),
    }
}

/// The channel actors of this node.
#[derive(Clone)]
pub struct Channels {
    pub webhook: Addr<webhook::WebhookChannel>,
}

impl Channels {
    /// Starts every channel actor.
    pub fn start(settings: &crate::config::DeliverySettings) -> Result<Self, ChannelError> {
        Ok(Channels {
            webhook: webhook::WebhookChannel::start_with(settings)?,
        })
    }

    /// Delivers a batch; the outcomes come back in the order of `jobs`.
    pub async fn deliver(&self, jobs: Vec<Job>) -> Vec<Outcome> {
        let n = jobs.len();
        let mut webhook_jobs = Vec::with_capacity(n);
        for job in jobs {
            match job.request {
                Prepared::Webhook(req) => webhook_jobs.push((job.delivery_id, req)),
            }
        }
        match self.webhook.send(webhook::Deliver(webhook_jobs)).await {
            Ok(outcomes) => outcomes,
            Err(e) => (0..n)
                .map(|_| Outcome::Failed {
                    transient: true,
                    code: None,
                    error: format!("webhook channel unavailable: {e}"),
                    retry_after: None,
                })
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}
