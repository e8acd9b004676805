//! Sending: `send` queues messages to groups (answered 202 only once they are committed),
//! `test` sends at once through a group's channel and template, `directsend` sends at once
//! with no group at all. Every template is rendered when the request is accepted, so a missing
//! variable is a 400 naming it, never a failure later.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::actors::channels::{self, Content, Job, Outcome, PrepareError, Prepared};
use crate::auth::{Caller, Role};
use crate::domain::{Channel, MessageState};
use crate::error::AppError;
use crate::schedule::{Repeat, Schedule};
use crate::state::AppState;
use crate::store::groups::Group;
use crate::store::levels::Level;
use crate::store::messages::{IdempotencyKey, Message};
use crate::store::{self, StoreError};

/// Requests with fewer sends than this go through group commit.
const GROUP_COMMIT_BELOW: usize = 50;

/// Most objects one request may carry: a send request is always one INSERT statement.
const MAX_SENDS: usize = 1_000;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SendItem {
    group_id: Uuid,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    use_template: bool,
    #[serde(default)]
    variables: Map<String, Value>,
    #[serde(default)]
    send_list: Option<Vec<Value>>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    schedule: Option<Schedule>,
    #[serde(default)]
    repeat: Option<Repeat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestItem {
    group_id: Uuid,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    use_template: bool,
    #[serde(default)]
    variables: Map<String, Value>,
    #[serde(default)]
    send_list: Option<Vec<Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectItem {
    #[serde(rename = "type")]
    channel: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    variables: Map<String, Value>,
    send_list: Vec<Value>,
    /// Provider settings (and a `template`, with `useTemplate`).
    #[serde(default)]
    config: Map<String, Value>,
    #[serde(default)]
    use_template: bool,
    #[serde(default)]
    data: Option<Value>,
}

fn bad(code: &'static str, msg: String) -> AppError {
    AppError::bad_request(code, msg)
}

fn prepare_error(at: String, e: PrepareError) -> AppError {
    match e {
        PrepareError::Missing(m) => bad(
            "missing_variable",
            format!("{at}: template variable '{}' has no value", m.0),
        ),
        PrepareError::InvalidTarget(m) => bad("invalid_target", format!("{at}: {m}")),
        PrepareError::Unavailable(c) => bad(
            "unsupported_type",
            format!("{at}: channel type '{c}' is not available in this build yet"),
        ),
    }
}

fn non_empty(list: &[Value], at: &str) -> Result<(), AppError> {
    if list.is_empty() {
        return Err(bad(
            "no_targets",
            format!("{at}: no targets (the send and its group have empty sendLists)"),
        ));
    }
    Ok(())
}

fn check_count(n: usize) -> Result<(), AppError> {
    if n == 0 {
        return Err(bad("empty_request", "the request holds no sends".into()));
    }
    if n > MAX_SENDS {
        return Err(bad(
            "too_many_sends",
            format!("at most {MAX_SENDS} sends per request, got {n}"),
        ));
    }
    Ok(())
}

/// Renders every target of one send; the first problem is the error.
fn prepare_all(
    channel: Channel,
    targets: &[Value],
    content: &Content<'_>,
    timeout: Duration,
    at: &str,
) -> Result<Vec<Prepared>, AppError> {
    targets
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            channels::prepare(channel, t, content, timeout)
                .map_err(|e| prepare_error(format!("{at}.sendList[{ti}]"), e))
        })
        .collect()
}

/// The parts of a send or test through a group that say what to deliver.
struct GroupSend<'a> {
    group_id: Uuid,
    subject: &'a str,
    message: Option<&'a str>,
    use_template: bool,
    variables: &'a Map<String, Value>,
    send_list: Option<&'a Vec<Value>>,
    data: Option<&'a Value>,
}

impl SendItem {
    fn view(&self) -> GroupSend<'_> {
        GroupSend {
            group_id: self.group_id,
            subject: &self.subject,
            message: self.message.as_deref(),
            use_template: self.use_template,
            variables: &self.variables,
            send_list: self.send_list.as_ref(),
            data: self.data.as_ref(),
        }
    }
}

impl TestItem {
    fn view(&self) -> GroupSend<'_> {
        GroupSend {
            group_id: self.group_id,
            subject: &self.subject,
            message: self.message.as_deref(),
            use_template: self.use_template,
            variables: &self.variables,
            send_list: self.send_list.as_ref(),
            data: self.data.as_ref(),
        }
    }
}

/// Checks and renders one send through `group`: its targets (the send's own list, else the
/// group's), each prepared for the group's channel. The first problem is the error.
fn through_group<'a>(
    tenant: Uuid,
    group: &'a Group,
    send: &GroupSend<'a>,
    timeout: Duration,
    at: &str,
) -> Result<(&'a [Value], Vec<Prepared>), AppError> {
    let channel = super::groups::channel(&group.channel)?;
    if let Some(list) = send.send_list {
        super::groups::check_send_list(channel, list, &format!("{at}.sendList"))?;
    }
    let targets: &[Value] = match send.send_list {
        Some(list) => list,
        None => group.send_list.as_array().map(Vec::as_slice).unwrap_or(&[]),
    };
    non_empty(targets, at)?;
    let empty = Map::new();
    let content = Content {
        tenant,
        group_id: Some(send.group_id),
        data: send.data,
        subject: send.subject,
        message: send.message,
        use_template: send.use_template,
        variables: send.variables,
        config: group.config.as_object().unwrap_or(&empty),
    };
    Ok((
        targets,
        prepare_all(channel, targets, &content, timeout, at)?,
    ))
}

/// The tenant's live groups named by a request, or 400 naming the first unknown one.
async fn load_groups(
    conn: &mut diesel_async::AsyncPgConnection,
    tenant: Uuid,
    ids: impl Iterator<Item = Uuid>,
) -> Result<HashMap<Uuid, (Group, Level)>, AppError> {
    let wanted: Vec<Uuid> = ids.collect::<HashSet<_>>().into_iter().collect();
    let found: HashMap<Uuid, (Group, Level)> = Group::find_many(conn, tenant, &wanted)
        .await?
        .into_iter()
        .map(|(g, l)| (g.id, (g, l)))
        .collect();
    if let Some(missing) = wanted.iter().find(|id| !found.contains_key(id)) {
        return Err(bad(
            "unknown_group",
            format!("no group {missing} in this tenant"),
        ));
    }
    Ok(found)
}

fn hash_request(items: &[SendItem]) -> String {
    let text = serde_json::to_string(items).unwrap_or_default();
    // FNV-1a: enough to tell a reused key with a different body.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, AppError> {
    let Some(v) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = v.to_str().map_err(|_| {
        bad(
            "invalid_idempotency_key",
            "Idempotency-Key must be text".into(),
        )
    })?;
    if key.is_empty() || key.len() > 255 {
        return Err(bad(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 characters".into(),
        ));
    }
    Ok(Some(key.to_string()))
}

fn replay(stored: IdempotencyKey, hash: &str) -> Result<HttpResponse, AppError> {
    if stored.request_hash != hash {
        return Err(AppError::conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        ));
    }
    Ok(HttpResponse::Accepted()
        .insert_header(("Idempotent-Replayed", "true"))
        .json(stored.response))
}

/// The engine entries of new messages, per group.
fn pending_by_group(rows: &[Message]) -> HashMap<Uuid, Vec<(Uuid, i64)>> {
    let mut by_group: HashMap<Uuid, Vec<(Uuid, i64)>> = HashMap::new();
    for m in rows {
        by_group
            .entry(m.group_id)
            .or_default()
            .push((m.id, m.due_at.timestamp_millis()));
    }
    by_group
}

/// `POST /api/v1/groups/send`: queue messages; 202 once they are committed.
pub async fn send(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Vec<SendItem>>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Sender)?;
    let items = body.into_inner();
    check_count(items.len())?;
    let key = idempotency_key(&req)?;
    let hash = key
        .as_ref()
        .map(|_| hash_request(&items))
        .unwrap_or_default();

    let mut conn = store::conn(&state.pool).await?;
    if let Some(key) = &key {
        if let Some(stored) = IdempotencyKey::find(&mut conn, tenant, key).await? {
            return replay(stored, &hash);
        }
    }
    let groups = load_groups(&mut conn, tenant, items.iter().map(|i| i.group_id)).await?;
    let timeout = Duration::from_secs(state.settings().delivery.http_timeout_secs);
    let now = Utc::now();

    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("[{i}]");
        let (group, _) = &groups[&item.group_id];
        through_group(tenant, group, &item.view(), timeout, &at)?;

        let mut due = match &item.schedule {
            Some(s) => s
                .first_due(now)
                .map_err(|e| bad("invalid_schedule", format!("{at}.schedule: {e}")))?,
            None => now,
        };
        if let Some(r) = &item.repeat {
            due = r
                .validate(due)
                .map_err(|e| bad("invalid_repeat", format!("{at}.repeat: {e}")))?;
        }
        let state = if due > now {
            MessageState::Scheduled
        } else {
            MessageState::Queued
        };
        rows.push(Message {
            id: Uuid::now_v7(),
            tenant_id: tenant,
            group_id: item.group_id,
            state: state.as_str().to_string(),
            subject: item.subject,
            body: item.message,
            use_template: item.use_template,
            variables: Value::Object(item.variables),
            send_list: item.send_list.map(Value::Array),
            data: item.data,
            repeat: item
                .repeat
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null)),
            run: 0,
            attempts: 0,
            due_at: due,
            run_at: due,
            finished_at: None,
            created_at: now,
            updated_at: now,
        });
    }

    let answer = Value::Array(
        rows.iter()
            .map(|m| {
                json!({"messageId": m.id, "groupId": m.group_id, "state": m.state, "dueAt": m.due_at})
            })
            .collect(),
    );
    let record = key.map(|key| IdempotencyKey {
        tenant_id: tenant,
        key,
        request_hash: hash.clone(),
        response: answer.clone(),
        created_at: now,
    });
    let enqueue = pending_by_group(&rows);
    let committed = match &record {
        // The key and the messages commit together, so a retry finds one or the other whole.
        Some(r) => {
            conn.transaction::<_, StoreError, _>(async |conn| {
                Message::insert_all(conn, &rows).await?;
                IdempotencyKey::insert(conn, r).await
            })
            .await
        }
        // A large request is a good statement on its own; small ones share one.
        None if rows.len() >= GROUP_COMMIT_BELOW => Message::insert_all(&mut conn, &rows).await,
        None => {
            drop(conn);
            state.commits.insert(rows).await
        }
    };
    match committed {
        Ok(()) => {}
        // The same key won a race with this request: answer as the winner did.
        Err(StoreError::Duplicate(_)) if record.is_some() => {
            let key = record.as_ref().map(|r| r.key.as_str()).unwrap_or_default();
            let mut conn = store::conn(&state.pool).await?;
            if let Some(stored) = IdempotencyKey::find(&mut conn, tenant, key).await? {
                return replay(stored, &hash);
            }
            return Err(AppError::internal("idempotency key vanished"));
        }
        Err(e) => return Err(e.into()),
    }

    // Committed: from here the messages are accepted whatever the engine says.
    for (group, ids) in enqueue {
        if let Err(e) = state.engine().enqueue(group, &ids).await {
            tracing::error!(%group, error = %e, "enqueue failed after commit; the engine will be rebuilt");
            state.deps.engine_dirty.store(true, Ordering::SeqCst);
        }
    }
    Ok(HttpResponse::Accepted().json(answer))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Result_ {
    target: String,
    delivery_id: Uuid,
    status: &'static str,
    response_code: Option<u16>,
    error: Option<String>,
}

/// Sends prepared requests now and reports each outcome.
async fn deliver_now(state: &AppState, targets: &[Value], prepared: Vec<Prepared>) -> Vec<Result_> {
    let jobs: Vec<Job> = prepared
        .into_iter()
        .map(|request| Job {
            delivery_id: Uuid::now_v7(),
            request,
        })
        .collect();
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.delivery_id).collect();
    let outcomes = state.deps.channels.deliver(jobs).await;
    targets
        .iter()
        .zip(ids)
        .zip(outcomes)
        .map(|((t, id), o)| {
            let target = t
                .as_object()
                .map(channels::target_label)
                .unwrap_or_default();
            match o {
                Outcome::Delivered { code, .. } => Result_ {
                    target,
                    delivery_id: id,
                    status: "delivered",
                    response_code: code,
                    error: None,
                },
                Outcome::Kept => Result_ {
                    target,
                    delivery_id: id,
                    status: "queued-offline",
                    response_code: None,
                    error: None,
                },
                Outcome::Failed { code, error, .. } => Result_ {
                    target,
                    delivery_id: id,
                    status: "failed",
                    response_code: code,
                    error: Some(error),
                },
            }
        })
        .collect()
}

/// `POST /api/v1/groups/test`: send now through each group's channel and template.
pub async fn test(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Vec<TestItem>>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Sender)?;
    let items = body.into_inner();
    check_count(items.len())?;
    let mut conn = store::conn(&state.pool).await?;
    let groups = load_groups(&mut conn, tenant, items.iter().map(|i| i.group_id)).await?;
    drop(conn);
    let timeout = Duration::from_secs(state.settings().delivery.http_timeout_secs);

    let mut work = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("[{i}]");
        let (group, _) = &groups[&item.group_id];
        let (targets, prepared) = through_group(tenant, group, &item.view(), timeout, &at)?;
        work.push((item.group_id, targets, prepared));
    }
    let mut out = Vec::with_capacity(work.len());
    for (group_id, targets, prepared) in work {
        let results = deliver_now(&state, targets, prepared).await;
        out.push(json!({"groupId": group_id, "results": results}));
    }
    Ok(HttpResponse::Ok().json(out))
}

/// `POST /api/v1/groups/directsend`: send now, no group, no queue.
pub async fn directsend(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Vec<DirectItem>>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Sender)?;
    let items = body.into_inner();
    check_count(items.len())?;
    let timeout = Duration::from_secs(state.settings().delivery.http_timeout_secs);
    let mut work = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("[{i}]");
        let channel = super::groups::channel(&item.channel)?;
        super::groups::check_send_list(channel, &item.send_list, &format!("{at}.sendList"))?;
        non_empty(&item.send_list, &at)?;
        let content = Content {
            tenant,
            group_id: None,
            data: item.data.as_ref(),
            subject: &item.subject,
            message: item.message.as_deref(),
            use_template: item.use_template,
            variables: &item.variables,
            config: &item.config,
        };
        work.push(prepare_all(
            channel,
            &item.send_list,
            &content,
            timeout,
            &at,
        )?);
    }
    let mut out = Vec::with_capacity(work.len());
    for (item, prepared) in items.iter().zip(work) {
        let results = deliver_now(&state, &item.send_list, prepared).await;
        out.push(json!({"type": item.channel, "results": results}));
    }
    Ok(HttpResponse::Ok().json(out))
}
