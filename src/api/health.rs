//! Liveness, readiness, metrics, the status page and the browser client.

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

/// The browser client (static/pigeon-client.js, compiled in).
pub async fn client_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("../../static/pigeon-client.js"))
}

/// Prometheus metrics of this node.
pub async fn metrics() -> HttpResponse {
    match crate::metrics::handle() {
        Some(h) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(h.render()),
        None => HttpResponse::ServiceUnavailable().finish(),
    }
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
