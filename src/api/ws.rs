//! `GET /ws`: the WebSocket upgrade. The subscriber's token (`?token=` or `Authorization:
//! Bearer`) is checked before the upgrade, so a bad, expired or non-subscriber token gets a
//! plain 401. The session's outbound bytes are metered between the actor and the connection
//! (see `Metered`), which is how a client that stops reading is found out.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use futures::Stream;
use serde::Deserialize;

use crate::actors::ws::protocol::valid_name;
use crate::actors::ws::session::{Identity, WsSession};
use crate::auth::{Caller, Role};
use crate::engine::offset_key;
use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// Replay the user's pushes after this offset first.
    #[serde(default)]
    since: Option<String>,
}

/// The token (`?token=` or the header: browsers cannot set headers on WebSocket requests) is
/// checked, and its tenant looked up, by the `Caller` extractor like every other call's.
pub async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<WsQuery>,
) -> Result<HttpResponse, AppError> {
    let claims = caller.claims;
    if claims.role != Role::Subscriber {
        return Err(AppError::unauthorized(
            "WebSocket sessions need a subscriber token",
        ));
    }
    let tenant = claims
        .tenant
        .ok_or_else(|| AppError::unauthorized("the token names no tenant"))?;
    if !valid_name(&claims.sub) {
        return Err(AppError::unauthorized(
            "the token's sub is not a usable user id",
        ));
    }
    let since = query.into_inner().since;
    if let Some(s) = &since {
        if offset_key(s).is_none() {
            return Err(AppError::bad_request(
                "invalid_since",
                format!("'{s}' is not an offset"),
            ));
        }
    }
    let mut response =
        ws::handshake(&req).map_err(|e| AppError::bad_request("not_websocket", e.to_string()))?;
    let outbound = Arc::new(AtomicUsize::new(0));
    let session = WsSession::new(
        Identity {
            tenant,
            user: claims.sub,
            topics: claims.topics.map(|t| t.into_iter().collect()),
        },
        since,
        state.deps.clone(),
        state.hub.clone(),
        outbound.clone(),
    );
    let frames = ws::WebsocketContext::create(session, payload);
    Ok(response.streaming(Metered {
        inner: Box::pin(frames),
        outbound,
    }))
}

/// Counts down a session's outbound bytes as the connection takes them: the connection only
/// pulls more when the client reads, so what is counted up and not yet down is what waits.
struct Metered<S> {
    inner: Pin<Box<S>>,
    outbound: Arc<AtomicUsize>,
}

impl<S, E> Stream for Metered<S>
where
    S: Stream<Item = Result<bytes::Bytes, E>>,
{
    type Item = Result<bytes::Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let n = chunk.len();
            let _ = self
                .outbound
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(n))
                });
        }
        polled
    }
}
