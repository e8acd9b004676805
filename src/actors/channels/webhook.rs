//! The webhook channel: each target is a prepared HTTP request (method, url, timeout, headers,
//! JSON or form body whose strings are templates), sent with reqwest by the
//! [`WebhookChannel`] actor, which owns the connection pool.
//!
//! Every request carries `Pigeon-Delivery-Id` (stable across retries) so receivers can drop
//! duplicates. 2xx is delivered; 408, 429, 5xx, timeouts and connection errors are transient
//! (retried with backoff, honouring `Retry-After`); any other answer fails at once.

use std::time::Duration;

use actix::prelude::*;
use futures::{stream, StreamExt};
use reqwest::{header::HeaderMap, Method};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{ChannelError, Content, Outcome, PrepareError};
use crate::templates::{render, render_value, value_text};

/// Longest `timeout` a target may ask for, seconds.
const MAX_TIMEOUT_SECS: f64 = 300.0;
/// How much of a provider's answer is kept in the delivery record.
const RESPONSE_KEEP: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
}

/// One rendered webhook call.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub timeout: Duration,
}

fn invalid(msg: impl Into<String>) -> PrepareError {
    PrepareError::InvalidTarget(msg.into())
}

/// Renders a webhook target. Fields: `url` (required), `method` (default post), `timeout`
/// (seconds), `headers` (object of strings), `contentType` (`json` | `form`, or 1 | 2), `body`.
/// `url`, header values and every string in `body` are templates. A target without `body`
/// gets `{"subject", "message"}`.
pub fn prepare(
    target: &Map<String, Value>,
    content: &Content<'_>,
    default_timeout: Duration,
) -> Result<WebhookRequest, PrepareError> {
    let vars = content.vars(target);
    let url_template = target
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a webhook target needs a string \"url\""))?;
    let url = render(url_template, &vars)?;
    let parsed = url::Url::parse(&url).map_err(|e| invalid(format!("url '{url}': {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!("url '{url}' must be http or https")));
    }

    let method = match target.get("method") {
        None | Some(Value::Null) => Method::POST,
        Some(Value::String(m)) => match m.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            _ => {
                return Err(invalid(format!(
                    "method '{m}' is not one of get, post, put, patch, delete"
                )))
            }
        },
        Some(other) => return Err(invalid(format!("method must be a string, got {other}"))),
    };

    let timeout = match target.get("timeout") {
        None | Some(Value::Null) => default_timeout,
        Some(v) => match v.as_f64() {
            Some(s) if s > 0.0 && s <= MAX_TIMEOUT_SECS => Duration::from_secs_f64(s),
            _ => {
                return Err(invalid(format!(
                    "timeout must be a number of seconds in (0, {MAX_TIMEOUT_SECS}], got {v}"
                )))
            }
        },
    };

    let mut headers = Vec::new();
    match target.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let value = value
                    .as_str()
                    .ok_or_else(|| invalid(format!("header '{name}' must be a string")))?;
                let value = render(value, &vars)?;
                reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid(format!("'{name}' is not a valid header name")))?;
                reqwest::header::HeaderValue::from_str(&value)
                    .map_err(|_| invalid(format!("header '{name}' has an invalid value")))?;
                headers.push((name.clone(), value));
            }
        }
        Some(_) => return Err(invalid("headers must be an object of strings")),
    }

    let form = match target.get("contentType") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("json") => false,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("form") => true,
        Some(Value::Number(n)) if n.as_u64() == Some(1) => false,
        Some(Value::Number(n)) if n.as_u64() == Some(2) => true,
        Some(other) => {
            return Err(invalid(format!(
                "contentType must be \"json\" (1) or \"form\" (2), got {other}"
            )))
        }
    };

    let rendered = match target.get("body") {
        None | Some(Value::Null) => serde_json::json!({
            "subject": content.subject,
            "message": content.text(target)?,
        }),
        Some(body) => render_value(body, &vars)?,
    };
    let body = if method == Method::GET {
        Body::None
    } else if form {
        let map = rendered
            .as_object()
            .ok_or_else(|| invalid("a form body must be an object"))?;
        let mut fields = Vec::with_capacity(map.len());
        for (k, v) in map {
            if v.is_object() || v.is_array() {
                return Err(invalid(format!("form field '{k}' must be a plain value")));
            }
            fields.push((k.clone(), value_text(v)));
        }
        Body::Form(fields)
    } else {
        Body::Json(rendered)
    };

    Ok(WebhookRequest {
        method,
        url,
        headers,
        body,
        timeout,
    })
}

/// Deliver these requests; answers one outcome per request, in order.
#[derive(Message)]
#[rtype(result = "Vec<Outcome>")]
pub struct Deliver(pub Vec<(Uuid, WebhookRequest)>);

/// Owns the HTTP client (connection pool) of webhook deliveries.
pub struct WebhookChannel {
    client: reqwest::Client,
    concurrency: usize,
}

impl WebhookChannel {
    pub fn start_with(
        settings: &crate::config::DeliverySettings,
    ) -> Result<Addr<Self>, ChannelError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("pigeon/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(Duration::from_secs(settings.http_timeout_secs.max(1)))
            .build()?;
        let concurrency = settings.http_concurrency.max(1);
        Ok(WebhookChannel {
            client,
            concurrency,
        }
        .start())
    }
}

impl Actor for WebhookChannel {
    type Context = Context<Self>;
}

impl Handler<Deliver> for WebhookChannel {
    type Result = ResponseFuture<Vec<Outcome>>;

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let concurrency = self.concurrency;
        Box::pin(async move {
            stream::iter(msg.0)
                .map(|(id, req)| send_one(&client, id, req))
                .buffered(concurrency)
                .collect()
                .await
        })
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

async fn send_one(client: &reqwest::Client, id: Uuid, req: WebhookRequest) -> Outcome {
    let mut builder = client
        .request(req.method, &req.url)
        .timeout(req.timeout)
        .header("Pigeon-Delivery-Id", id.to_string());
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    builder = match req.body {
        Body::None => builder,
        Body::Json(v) => builder.json(&v),
        Body::Form(fields) => builder.form(&fields),
    };
    match builder.send().await {
        Ok(resp) => {
            let status = resp.status();
            let after = retry_after(resp.headers());
            let text = read_start(resp).await;
            let response = (!text.is_empty()).then_some(text);
            let code = Some(status.as_u16());
            if status.is_success() {
                Outcome::Delivered { code, response }
            } else {
                let transient = status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                Outcome::Failed {
                    transient,
                    code,
                    error: format!("HTTP {status}: {}", response.unwrap_or_default()),
                    retry_after: after,
                }
            }
        }
        Err(e) => Outcome::Failed {
            // Timeouts, refused connections and I/O failures mid-request are worth retrying.
            transient: e.is_timeout() || e.is_connect() || e.is_request(),
            code: None,
            error: error_chain(&e),
            retry_after: None,
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The start of a provider's answer: at most `RESPONSE_KEEP` bytes are read, whatever it sends.
async fn read_start(mut resp: reqwest::Response) -> String {
    let mut kept = Vec::new();
    while kept.len() < RESPONSE_KEEP {
        match resp.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(RESPONSE_KEEP);
    String::from_utf8_lossy(&kept).into_owned()
}
