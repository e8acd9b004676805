//! Tenants: created and listed by root.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Caller, Role};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{self, tenants::Tenant};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    name: String,
}

fn view(t: &Tenant) -> serde_json::Value {
    json!({"id": t.id, "name": t.name, "createdAt": t.created_at})
}

pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<NewTenant>,
) -> Result<HttpResponse, AppError> {
    caller.require(Role::Root)?;
    super::check_name(&body.name, "tenant")?;
    let mut conn = store::conn(&state.pool).await?;
    let tenant = Tenant::create(&mut conn, body.name.trim()).await?;
    Ok(HttpResponse::Created().json(view(&tenant)))
}

pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    caller.require(Role::Root)?;
    let mut conn = store::conn(&state.pool).await?;
    let all = Tenant::list(&mut conn).await?;
    Ok(HttpResponse::Ok().json(all.iter().map(view).collect::<Vec<_>>()))
}
