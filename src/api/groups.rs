//! Groups: CRUD of a tenant's target lists. Creating, changing or deleting a group starts,
//! updates or stops its pigeon at once.

use actix_web::{web, HttpResponse};
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::actors::messages::GroupChanged;
use crate::auth::{Caller, Role};
use crate::domain::Channel;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::groups::{Group, GroupFields};
use crate::store::levels::Level;
use crate::store::messages::Message;
use crate::store::{self, StoreError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupBody {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "type")]
    channel: String,
    level_name: Option<String>,
    level_id: Option<Uuid>,
    #[serde(default)]
    config: Map<String, Value>,
    #[serde(default)]
    send_list: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupPatch {
    name: Option<String>,
    description: Option<String>,
    #[serde(rename = "type")]
    channel: Option<String>,
    level_name: Option<String>,
    level_id: Option<Uuid>,
    config: Option<Map<String, Value>>,
    send_list: Option<Vec<Value>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    id: Uuid,
    name: String,
    description: String,
    #[serde(rename = "type")]
    channel: String,
    level_id: Option<Uuid>,
    level_name: Option<String>,
    config: Value,
    send_list: Value,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

fn view(g: Group, level: Option<Level>) -> GroupView {
    GroupView {
        id: g.id,
        name: g.name,
        description: g.description,
        channel: g.channel,
        level_id: g.level_id,
        level_name: level.map(|l| l.name),
        config: g.config,
        send_list: g.send_list,
        created_at: g.created_at,
        updated_at: g.updated_at,
    }
}

/// Checks a target list's shape for a channel (templates are checked when a send names them).
pub fn check_send_list(channel: Channel, list: &[Value], field: &str) -> Result<(), AppError> {
    for (i, t) in list.iter().enumerate() {
        let Some(obj) = t.as_object() else {
            return Err(AppError::bad_request(
                "invalid_target",
                format!("{field}[{i}] must be an object"),
            ));
        };
        if channel == Channel::Webhook && !obj.get("url").is_some_and(Value::is_string) {
            return Err(AppError::bad_request(
                "invalid_target",
                format!("{field}[{i}] needs a string \"url\" for a webhook group"),
            ));
        }
    }
    Ok(())
}

/// A channel type a group may have in this build.
pub fn channel(value: &str) -> Result<Channel, AppError> {
    let c = Channel::parse(value).ok_or_else(|| {
        AppError::bad_request(
            "invalid_type",
            format!("type '{value}' is not one of email, sms, webhook, line, websocket, app"),
        )
    })?;
    if !c.available() {
        return Err(AppError::bad_request(
            "unsupported_type",
            format!("channel type '{value}' is not available in this build yet"),
        ));
    }
    Ok(c)
}

async fn resolve_level(
    conn: &mut diesel_async::AsyncPgConnection,
    tenant: Uuid,
    name: Option<&str>,
    id: Option<Uuid>,
) -> Result<Level, AppError> {
    let level = match (name, id) {
        (Some(name), _) => Level::find_by_name(conn, tenant, name).await?,
        (None, Some(id)) => Level::find(conn, tenant, &id.to_string()).await.ok(),
        (None, None) => {
            return Err(AppError::bad_request(
                "missing_level",
                "a group needs \"levelName\" (or \"levelId\")",
            ))
        }
    };
    let level = level.ok_or_else(|| {
        AppError::bad_request(
            "unknown_level",
            format!(
                "no level '{}' in this tenant",
                name.map(str::to_string)
                    .or(id.map(|i| i.to_string()))
                    .unwrap_or_default()
            ),
        )
    })?;
    if let (Some(_), Some(id)) = (name, id) {
        if id != level.id {
            return Err(AppError::bad_request(
                "level_mismatch",
                "levelName and levelId name different levels",
            ));
        }
    }
    Ok(level)
}

async fn fields(
    conn: &mut diesel_async::AsyncPgConnection,
    tenant: Uuid,
    b: GroupBody,
) -> Result<(GroupFields, Level), AppError> {
    super::check_name(&b.name, "group")?;
    let c = channel(&b.channel)?;
    check_send_list(c, &b.send_list, "sendList")?;
    let level = resolve_level(conn, tenant, b.level_name.as_deref(), b.level_id).await?;
    Ok((
        GroupFields {
            name: b.name.trim().to_string(),
            description: b.description,
            channel: c.as_str().to_string(),
            level_id: Some(level.id),
            config: Value::Object(b.config),
            send_list: Value::Array(b.send_list),
        },
        level,
    ))
}

fn duplicate_name(e: StoreError) -> AppError {
    match e {
        StoreError::Duplicate(_) => {
            AppError::conflict("duplicate", "a group with this name already exists")
        }
        other => other.into(),
    }
}

pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<GroupBody>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Admin)?;
    let mut conn = store::conn(&state.pool).await?;
    let (f, level) = fields(&mut conn, tenant, body.into_inner()).await?;
    let group = Group::create(&mut conn, tenant, f)
        .await
        .map_err(duplicate_name)?;
    state.breeder.do_send(GroupChanged(group.id));
    Ok(HttpResponse::Created().json(view(group, Some(level))))
}

pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Sender)?;
    let mut conn = store::conn(&state.pool).await?;
    let groups = Group::list(&mut conn, tenant).await?;
    Ok(HttpResponse::Ok().json(
        groups
            .into_iter()
            .map(|(g, l)| view(g, l))
            .collect::<Vec<_>>(),
    ))
}

pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Sender)?;
    let id = super::path_id(&path, "group")?;
    let mut conn = store::conn(&state.pool).await?;
    let (g, l) = Group::find(&mut conn, tenant, id).await?;
    drop(conn);
    // How much waits for the group's pigeon: ids in its queue (due or scheduled) and claimed.
    let queue = state.engine().depth(id).await?;
    let mut body = serde_json::to_value(view(g, l)).map_err(AppError::internal)?;
    body["queue"] = serde_json::to_value(queue).map_err(AppError::internal)?;
    Ok(HttpResponse::Ok().json(body))
}

async fn update(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
    body: impl FnOnce(Group, Option<Level>) -> GroupBody,
) -> Result<HttpResponse, AppError> {
    let mut conn = store::conn(&state.pool).await?;
    let (current, level) = Group::find(&mut conn, tenant, id).await?;
    let (f, level) = fields(&mut conn, tenant, body(current, level)).await?;
    let group = Group::update(&mut conn, tenant, id, &f)
        .await
        .map_err(duplicate_name)?;
    state.breeder.do_send(GroupChanged(id));
    Ok(HttpResponse::Ok().json(view(group, Some(level))))
}

pub async fn replace(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<GroupBody>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Admin)?;
    let id = super::path_id(&path, "group")?;
    update(&state, tenant, id, |_, _| body.into_inner()).await
}

pub async fn patch(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<GroupPatch>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Admin)?;
    let id = super::path_id(&path, "group")?;
    let p = body.into_inner();
    update(&state, tenant, id, |g, l| {
        // A new levelName or levelId replaces the level; otherwise it stays.
        let (level_name, level_id) = match (p.level_name, p.level_id) {
            (None, None) => (None, g.level_id.or(l.map(|l| l.id))),
            other => other,
        };
        GroupBody {
            name: p.name.unwrap_or(g.name),
            description: p.description.unwrap_or(g.description),
            channel: p.channel.unwrap_or(g.channel),
            level_name,
            level_id,
            config: p
                .config
                .unwrap_or_else(|| g.config.as_object().cloned().unwrap_or_default()),
            send_list: p
                .send_list
                .unwrap_or_else(|| g.send_list.as_array().cloned().unwrap_or_default()),
        }
    })
    .await
}

/// Deletes the group and cancels its unfinished messages, in one transaction; its pigeon
/// stops and its queue is dropped.
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Admin)?;
    let id = super::path_id(&path, "group")?;
    let mut conn = store::conn(&state.pool).await?;
    conn.transaction::<_, StoreError, _>(async |conn| {
        Group::soft_delete(conn, tenant, id).await?;
        Message::cancel_group(conn, id).await?;
        Ok(())
    })
    .await?;
    state.breeder.do_send(GroupChanged(id));
    if let Err(e) = state.engine().drop_group(id).await {
        // The cancelled rows are the truth; stale ids are dropped when claimed.
        tracing::warn!(group = %id, error = %e, "could not drop the group's queue");
    }
    Ok(HttpResponse::NoContent().finish())
}
