//! Liveness, readiness and the status page.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::AppError;
use crate::state::AppState;
use crate::store;

/// The bundled status page (static/index.html, compiled in).
pub async fn status_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../../static/index.html"))
}

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
