//! The HTTP API: one route table ([`routes`]), handlers one file per resource, and the JSON
//! error handling shared by all of them.
//!
//! Paths follow DESIGN.md section 5; the original system's `/api/v1.5/...` paths are aliases.

mod groups;
mod health;
mod levels;
mod messages;
pub mod request_id;
mod send;
mod tenants;
mod ws;

use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use crate::error::{json_error, AppError, ErrorKind};

/// Every route of the service.
pub fn routes(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body)
            .error_handler(|e, _| json_error(e).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| AppError::bad_request("invalid_path", e.to_string()).into()),
    )
    .route("/", web::get().to(health::status_page))
    .route("/static/pigeon-client.js", web::get().to(health::client_js))
    .route("/metrics", web::get().to(health::metrics))
    .route("/ws", web::get().to(ws::upgrade))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .service(
        web::scope("/api/v1")
            .route("/tenants", web::post().to(tenants::create))
            .route("/tenants", web::get().to(tenants::list))
            .configure(resources),
    )
    .service(web::scope("/api/v1.5").configure(legacy))
    .default_service(web::to(not_found));
}

fn resources(cfg: &mut web::ServiceConfig) {
    cfg.route("/levels", web::post().to(levels::create))
        .route("/levels", web::get().to(levels::list))
        .route("/levels/{id}", web::get().to(levels::get))
        .route("/levels/{id}", web::put().to(levels::replace))
        .route("/levels/{id}", web::patch().to(levels::patch))
        .route("/levels/{id}", web::delete().to(levels::delete))
        .route("/groups", web::post().to(groups::create))
        .route("/groups", web::get().to(groups::list))
        .route("/groups/send", web::post().to(send::send))
        .route("/groups/test", web::post().to(send::test))
        .route("/groups/directsend", web::post().to(send::directsend))
        .route("/groups/{id}", web::get().to(groups::get))
        .route("/groups/{id}", web::put().to(groups::replace))
        .route("/groups/{id}", web::patch().to(groups::patch))
        .route("/groups/{id}", web::delete().to(groups::delete))
        .route("/messages/{id}", web::get().to(messages::get))
        .route("/messages/{id}", web::delete().to(messages::cancel));
}

/// The original system's capitalised paths.
fn legacy(cfg: &mut web::ServiceConfig) {
    cfg.route("/Levels", web::post().to(levels::create))
        .route("/Levels", web::get().to(levels::list))
        .route("/Levels/{id}", web::get().to(levels::get))
        .route("/Levels/{id}", web::put().to(levels::replace))
        .route("/Levels/{id}", web::patch().to(levels::patch))
        .route("/Levels/{id}", web::delete().to(levels::delete))
        .route("/Groups", web::post().to(groups::create))
        .route("/Groups", web::get().to(groups::list))
        .route("/Groups/send", web::post().to(send::send))
        .route("/Groups/test", web::post().to(send::test))
        .route("/Groups/directsend", web::post().to(send::directsend))
        .route("/Groups/{id}", web::get().to(groups::get))
        .route("/Groups/{id}", web::put().to(groups::replace))
        .route("/Groups/{id}", web::patch().to(groups::patch))
        .route("/Groups/{id}", web::delete().to(groups::delete));
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    let err = AppError::new(
        ErrorKind::NotFound,
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    );
    actix_web::ResponseError::error_response(&err)
}

/// A path id; anything that is not a UUID names nothing, so it is a 404.
fn path_id(raw: &str, what: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::not_found(what))
}

/// A name a caller gives a level or group.
fn check_name(name: &str, what: &str) -> Result<(), AppError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(AppError::bad_request(
            "invalid_name",
            format!("{what} name must be 1 to 200 characters"),
        ));
    }
    Ok(())
}
