//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::AppError;
use crate::state::AppState;
use crate::store;

/// Alive: the server answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready: the store and the engine answer.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let mut conn = store::conn(&state.pool).await?;
    diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), &mut conn)
        .await
        .map_err(AppError::unavailable)?;
    state.engine().ping().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready", "engine": state.engine().kind()})))
}
