//! Authentication and tenancy: the JWTs Pigeon signs (HS256) and the [`Caller`] extractor
//! every handler takes.
//!
//! Roles, strongest first: `root` (manages tenants; acts in a tenant when its token names one),
//! `admin` (a tenant's levels and groups), `sender` (sends and reads), `subscriber` (WebSocket
//! only). A token's `tenant` claim scopes every call; a tenant that does not exist is refused.

use std::collections::HashSet;
use std::sync::RwLock;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;
use crate::store::{self, tenants::Tenant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Subscriber,
    Sender,
    Admin,
    Root,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "root" => Some(Role::Root),
            "admin" => Some(Role::Admin),
            "sender" => Some(Role::Sender),
            "subscriber" => Some(Role::Subscriber),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user (or service) the token speaks for.
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    /// WebSocket topics a subscriber may join; absent means any topic of its tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

/// Signs and checks Pigeon's own tokens.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        Keys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        Ok(encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        Ok(decode::<Claims>(token, &self.decoding, &self.validation)?.claims)
    }
}

/// Claims for a new token valid for `ttl_secs` from now.
pub fn claims(
    role: Role,
    tenant: Option<Uuid>,
    sub: &str,
    topics: Option<Vec<String>>,
    ttl_secs: u64,
) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: sub.to_string(),
        role,
        tenant,
        topics,
        iat: now,
        exp: now + ttl_secs as i64,
    }
}

/// Tenants known to exist, so that a token's tenant is looked up once per process.
#[derive(Default)]
pub struct TenantCache(RwLock<HashSet<Uuid>>);

impl TenantCache {
    pub async fn exists(&self, pool: &store::PgPool, id: Uuid) -> Result<bool, AppError> {
        if self.0.read().map(|s| s.contains(&id)).unwrap_or(false) {
            return Ok(true);
        }
        let mut conn = store::conn(pool).await?;
        let exists = Tenant::exists(&mut conn, id).await?;
        if exists {
            if let Ok(mut set) = self.0.write() {
                set.insert(id);
            }
        }
        Ok(exists)
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Claims,
}

impl Caller {
    /// Fails with 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<&Self, AppError> {
        if self.claims.role >= role {
            Ok(self)
        } else {
            Err(AppError::forbidden(format!(
                "this call needs the {:?} role or stronger",
                role
            )))
        }
    }

    /// The tenant the call acts in, for a caller of at least `role`.
    pub fn tenant(&self, role: Role) -> Result<Uuid, AppError> {
        self.require(role)?;
        self.claims
            .tenant
            .ok_or_else(|| AppError::forbidden("the token names no tenant; mint one with --tenant"))
    }
}

/// The bearer token of a request: `Authorization: Bearer …`, or `?token=` (WebSocket clients
/// cannot set headers).
pub fn bearer(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let h = h.to_str().ok()?;
        let (scheme, token) = h.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned())
}

impl FromRequest for Caller {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::internal("app state missing"))?;
            let token = token.ok_or_else(|| AppError::unauthorized("missing bearer token"))?;
            let claims = state
                .keys
                .verify(&token)
                .map_err(|e| AppError::unauthorized(format!("invalid token: {e}")))?;
            if let Some(tenant) = claims.tenant {
                if !state.tenants.exists(&state.pool, tenant).await? {
                    return Err(AppError::unauthorized("the token's tenant does not exist"));
                }
            }
            Ok(Caller { claims })
        })
    }
}
