//! The WebSocket wire format and the keys pushes travel under.
//!
//! Server frames: `{"type":"push","offset","id","groupId","topic","subject","body","data",
//! "sentAt"}` (`topic` is null for a push to the user),
//! `subscribed`, `unsubscribed`, `reset` and `error`. Client frames: `subscribe`,
//! `unsubscribe`, `ack`. A push is serialized once: its JSON without the offset is stored in
//! the catch-up stream, and the frame is that text with the offset spliced in front, built
//! once per push and shared (as `ByteString`, reference-counted) by every session.
//!
//! Keys name a catch-up stream and a presence entry: `t:<tenant>:u:<user>` for a user,
//! `t:<tenant>:topic:<name>` for a topic. The tenant in every key keeps tenants apart even for
//! equal user ids and topic names.

use bytestring::ByteString;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

/// Longest user id or topic name.
const MAX_NAME: usize = 256;

/// A user id or topic name usable in a key: 1 to 256 characters, no braces (they would break
/// the Redis Cluster hash tag) and no control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.chars().any(|c| c == '{' || c == '}' || c.is_control())
}

pub fn user_key(tenant: Uuid, user: &str) -> String {
    format!("t:{tenant}:u:{user}")
}

pub fn topic_key(tenant: Uuid, topic: &str) -> String {
    format!("t:{tenant}:topic:{topic}")
}

/// The stored part of a push: its JSON object without the leading `{` (the offset is spliced
/// in front when it is known).
pub fn push_body(
    id: Uuid,
    group_id: Option<Uuid>,
    topic: Option<&str>,
    subject: &str,
    body: &str,
    data: Option<&Value>,
    sent_at: DateTime<Utc>,
) -> String {
    let object = json!({
        "id": id,
        "groupId": group_id,
        "topic": topic,
        "subject": subject,
        "body": body,
        "data": data,
        "sentAt": sent_at,
    })
    .to_string();
    object[1..].to_string()
}

/// The frame of a stored push at `offset`.
pub fn push_frame(offset: &str, stored: &str) -> ByteString {
    ByteString::from(format!(
        "{{\"type\":\"push\",\"offset\":{},{stored}",
        Value::String(offset.to_string())
    ))
}

/// What travels between nodes: the key of the sessions it is for, the offset, the frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "o")]
    pub offset: String,
    #[serde(rename = "f")]
    pub frame: String,
}

/// Frames a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    Subscribe {
        topics: Vec<String>,
        /// Replay each topic's pushes after this offset first.
        #[serde(default)]
        since: Option<String>,
    },
    Unsubscribe {
        topics: Vec<String>,
    },
    Ack {
        id: String,
    },
}

pub fn error_frame(code: &str, message: &str) -> ByteString {
    ByteString::from(json!({"type": "error", "code": code, "message": message}).to_string())
}

pub fn subscribed_frame(kind: &str, topics: &[String]) -> ByteString {
    ByteString::from(json!({"type": kind, "topics": topics}).to_string())
}

pub fn reset_frame(key_kind: &str, name: &str, since: &str) -> ByteString {
    ByteString::from(
        json!({
            "type": "reset",
            "stream": key_kind,
            "name": name,
            "since": since,
            "message": "pushes after this offset are past retention and were lost; what is still kept follows",
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_valid_json_with_the_offset_first() {
        let id = Uuid::now_v7();
        let stored = push_body(
            id,
            None,
            Some("news"),
            "S",
            "B \"q\"",
            Some(&json!({"k": 1})),
            Utc::now(),
        );
        let frame = push_frame("12-3", &stored);
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "push");
        assert_eq!(v["offset"], "12-3");
        assert_eq!(v["id"], id.to_string());
        assert_eq!(v["body"], "B \"q\"");
        assert_eq!(v["data"]["k"], 1);
        assert_eq!(v["topic"], "news");
        assert!(frame.starts_with("{\"type\":\"push\",\"offset\":\"12-3\","));
    }

    #[test]
    fn names() {
        assert!(valid_name("user-1@example.com"));
        assert!(!valid_name(""));
        assert!(!valid_name("a{b}"));
        assert!(!valid_name("a\nb"));
    }
}
