//! The vocabulary shared by the API, the store and the actors: time units, channel types,
//! message states and delivery statuses, with their text forms (the same in JSON and in the
//! database).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A level's time unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    pub const ALL: [Unit; 4] = [Unit::Second, Unit::Minute, Unit::Hour, Unit::Day];

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.as_str() == s)
    }

    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
        }
    }

    pub fn times(self, n: i32) -> Duration {
        Duration::from_secs(self.seconds() * n.max(0) as u64)
    }
}

/// A group's channel type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Webhook,
    Line,
    Websocket,
    App,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Email,
        Channel::Sms,
        Channel::Webhook,
        Channel::Line,
        Channel::Websocket,
        Channel::App,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
            Channel::Line => "line",
            Channel::Websocket => "websocket",
            Channel::App => "app",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether this build has a channel actor for the type. Groups of other types are refused
    /// when created rather than accepted and never delivered.
    pub fn available(self) -> bool {
        matches!(self, Channel::Webhook | Channel::Websocket)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message's state (DESIGN.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    Scheduled,
    Queued,
    Active,
    Delivered,
    Failed,
    Expired,
    Cancelled,
}

impl MessageState {
    pub const ALL: [MessageState; 7] = [
        MessageState::Scheduled,
        MessageState::Queued,
        MessageState::Active,
        MessageState::Delivered,
        MessageState::Failed,
        MessageState::Expired,
        MessageState::Cancelled,
    ];
    /// States in which a message still has work to do (and so belongs in the engine).
    pub const PENDING: [&'static str; 3] = ["scheduled", "queued", "active"];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Scheduled => "scheduled",
            MessageState::Queued => "queued",
            MessageState::Active => "active",
            MessageState::Delivered => "delivered",
            MessageState::Failed => "failed",
            MessageState::Expired => "expired",
            MessageState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<MessageState> {
        MessageState::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// The outcome of one delivery so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Failed transiently; the message will try this target again.
    Retrying,
    Delivered,
    /// A WebSocket push with no session online: kept in the catch-up stream for when the
    /// user reconnects.
    #[serde(rename = "queued-offline")]
    QueuedOffline,
    /// Failed for good (permanent error, or every attempt spent).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::QueuedOffline => "queued-offline",
            DeliveryStatus::Failed => "failed",
        }
    }
}
