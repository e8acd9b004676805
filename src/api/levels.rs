//! Levels: CRUD of a tenant's delivery policies. A change reaches the pigeons of every group
//! using the level at once.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::actors::messages::GroupChanged;
use crate::auth::{Caller, Role};
use crate::domain::Unit;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{self, groups::Group, levels::Level, levels::LevelFields};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LevelBody {
    name: String,
    interval_time: i64,
    unit: String,
    #[serde(default)]
    exp_time: i64,
    #[serde(default)]
    exp_unit: Option<String>,
    batch_count: i64,
}

/// PATCH: any subset of the fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LevelPatch {
    name: Option<String>,
    interval_time: Option<i64>,
    unit: Option<String>,
    exp_time: Option<i64>,
    exp_unit: Option<String>,
    batch_count: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LevelView {
    id: Uuid,
    name: String,
    interval_time: i32,
    unit: String,
    exp_time: i32,
    exp_unit: String,
    batch_count: i32,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Level> for LevelView {
    fn from(l: Level) -> Self {
        LevelView {
            id: l.id,
            name: l.name,
            interval_time: l.interval_time,
            unit: l.unit,
            exp_time: l.exp_time,
            exp_unit: l.exp_unit,
            batch_count: l.batch_count,
            created_at: l.created_at,
            updated_at: l.updated_at,
        }
    }
}

fn unit(field: &str, value: &str) -> Result<String, AppError> {
    Unit::parse(value)
        .map(|u| u.as_str().to_string())
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_unit",
                format!("{field} '{value}' is not one of second, minute, hour, day"),
            )
        })
}

fn bounded(field: &str, value: i64, min: i64) -> Result<i32, AppError> {
    if value < min || value > i32::MAX as i64 {
        return Err(AppError::bad_request(
            "invalid_field",
            format!("{field} must be an integer of at least {min}, got {value}"),
        ));
    }
    Ok(value as i32)
}

impl LevelBody {
    fn fields(self) -> Result<LevelFields, AppError> {
        super::check_name(&self.name, "level")?;
        Ok(LevelFields {
            name: self.name.trim().to_string(),
            interval_time: bounded("intervalTime", self.interval_time, 1)?,
            unit: unit("unit", &self.unit)?,
            exp_time: bounded("expTime", self.exp_time, 0)?,
            exp_unit: unit("expUnit", self.exp_unit.as_deref().unwrap_or("day"))?,
            batch_count: bounded("batchCount", self.batch_count, 1)?,
        })
    }
}

pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<LevelBody>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Admin)?;
    let fields = body.into_inner().fields()?;
    let mut conn = store::conn(&state.pool).await?;
    let level = Level::create(&mut conn, tenant, fields).await?;
    Ok(HttpResponse::Created().json(LevelView::from(level)))
}

pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Sender)?;
    let mut conn = store::conn(&state.pool).await?;
    let levels = Level::list(&mut conn, tenant).await?;
    Ok(HttpResponse::Ok().json(levels.into_iter().map(LevelView::from).collect::<Vec<_>>()))
}

/// By id, or by name.
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Sender)?;
    let mut conn = store::conn(&state.pool).await?;
    let level = Level::find(&mut conn, tenant, &path).await?;
    Ok(HttpResponse::Ok().json(LevelView::from(level)))
}

async fn update(
    state: &AppState,
    tenant: Uuid,
    key: &str,
    make: impl FnOnce(Level) -> Result<LevelFields, AppError>,
) -> Result<HttpResponse, AppError> {
    let mut conn = store::conn(&state.pool).await?;
    let current = Level::find(&mut conn, tenant, key).await?;
    let id = current.id;
    let fields = make(current)?;
    let level = Level::update(&mut conn, tenant, id, &fields).await?;
    for group in Group::using_level(&mut conn, tenant, id).await? {
        state.breeder.do_send(GroupChanged(group));
    }
    Ok(HttpResponse::Ok().json(LevelView::from(level)))
}

pub async fn replace(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<LevelBody>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Admin)?;
    let fields = body.into_inner().fields()?;
    update(&state, tenant, &path, |_| Ok(fields)).await
}

pub async fn patch(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<LevelPatch>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Admin)?;
    let p = body.into_inner();
    update(&state, tenant, &path, |l| {
        LevelBody {
            name: p.name.unwrap_or(l.name),
            interval_time: p.interval_time.unwrap_or(l.interval_time as i64),
            unit: p.unit.unwrap_or(l.unit),
            exp_time: p.exp_time.unwrap_or(l.exp_time as i64),
            exp_unit: Some(p.exp_unit.unwrap_or(l.exp_unit)),
            batch_count: p.batch_count.unwrap_or(l.batch_count as i64),
        }
        .fields()
    })
    .await
}

pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let tenant = caller.tenant(Role::Admin)?;
    let mut conn = store::conn(&state.pool).await?;
    let level = Level::find(&mut conn, tenant, &path).await?;
    Level::delete(&mut conn, tenant, level.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
