//! Messages: their state and deliveries, and cancelling one that has not finished.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::domain::MessageState;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::deliveries::Delivery;
use crate::store::messages::Message;
use crate::store::{self};

/// A scheduled message whose time has come is waiting for its pigeon: `queued`.
fn shown_state(m: &Message) -> &str {
    if m.state == MessageState::Scheduled.as_str() && m.due_at <= Utc::now() {
        MessageState::Queued.as_str()
    } else {
        &m.state
    }
}

fn view(m: &Message, deliveries: &[Delivery]) -> Value {
    json!({
        "id": m.id,
        "groupId": m.group_id,
        "state": shown_state(m),
        "subject": m.subject,
        "message": m.body,
        "useTemplate": m.use_template,
        "variables": m.variables,
        "sendList": m.send_list,
        "data": m.data,
        "repeat": m.repeat,
        "run": m.run,
        "attempts": m.attempts,
        "dueAt": m.due_at,
        "createdAt": m.created_at,
        "updatedAt": m.updated_at,
        "finishedAt": m.finished_at,
        "deliveries": deliveries.iter().map(|d| json!({
            "id": d.id,
            "run": d.run,
            "target": d.target,
            "status": d.status,
            "attempts": d.attempts,
            "responseCode": d.response_code,
            "response": d.response,
            "lastError": d.last_error,
            "createdAt": d.created_at,
            "updatedAt": d.updated_at,
            "deliveredAt": d.delivered_at,
        })).collect::<Vec<_>>(),
    })
}

pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Sender)?;
    let id = super::path_id(&path, "message")?;
    let mut conn = store::conn(&state.pool).await?;
    let m = Message::find(&mut conn, tenant, id).await?;
    let deliveries = Delivery::for_messages(&mut conn, &[id]).await?;
    Ok(HttpResponse::Ok().json(view(&m, &deliveries)))
}

/// Cancels a message that has not finished; 409 when it already has.
pub async fn cancel(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Sender)?;
    let id = super::path_id(&path, "message")?;
    let mut conn = store::conn(&state.pool).await?;
    let Some(group) = Message::cancel(&mut conn, tenant, id).await? else {
        let m = Message::find(&mut conn, tenant, id).await?;
        return Err(AppError::conflict(
            "already_finished",
            format!("message is already {}", m.state),
        ));
    };
    if let Err(e) = state.engine().remove(group, &[id]).await {
        // The row says cancelled; a stale id is dropped when claimed.
        tracing::warn!(%group, error = %e, "could not remove the message from its queue");
    }
    let m = Message::find(&mut conn, tenant, id).await?;
    let deliveries = Delivery::for_messages(&mut conn, &[id]).await?;
    Ok(HttpResponse::Ok().json(view(&m, &deliveries)))
}
