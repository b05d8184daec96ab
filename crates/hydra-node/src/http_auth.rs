//! Who may use the HTTP API: every route but `/health` needs a bearer token ([`authorize`],
//! an axum middleware in front of every route), and buckets whose names start with `_` are
//! the cluster's own ([`reserved`]). The credentials themselves are [`crate::auth`]'s.

use crate::http::AppState;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// Buckets the cluster keeps for itself (the credentials table); no client reaches them.
pub fn reserved(bucket: &str) -> bool {
    bucket.starts_with('_')
}

/// A 401 or 403 JSON error (`unauthorized`, `forbidden`).
fn denied(status: StatusCode, code: &str, message: String) -> Response {
    let body = json!({ "code": code, "message": message }).to_string();
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hydra\""),
        );
    }
    resp
}

/// Every route but `/health` needs a bearer token whose scopes allow the request: `/metrics`,
/// status and ring need `metrics`; reading a bucket's keys `read:` (or `write:`) of a glob
/// matching it; writing them `write:`; changing a bucket `admin`.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use crate::auth::Denied;
    let path = req.uri().path();
    if path == "/health" {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        state.metrics.auth_failure("http");
        return denied(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs a token: send `Authorization: Bearer <token>` (`hydra dev` prints one and keeps it in cluster.json)".into(),
        );
    };
    let principal = match state.auth.bearer(token).await {
        Ok(p) => p,
        Err(e) => {
            let why = match e {
                Denied::Unauthenticated(why) => why.to_string(),
                Denied::Forbidden(why) => why,
            };
            state.metrics.auth_failure("http");
            return denied(StatusCode::UNAUTHORIZED, "unauthorized", why);
        }
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let writes = !matches!(method, axum::http::Method::GET | axum::http::Method::HEAD);
    let allowed = match segments.as_slice() {
        ["v1", "kv" | "buckets", bucket, ..]
            if reserved(&percent_encoding::percent_decode_str(bucket).decode_utf8_lossy()) =>
        {
            state.metrics.auth_failure("http");
            return denied(
                StatusCode::FORBIDDEN,
                "forbidden",
                "buckets whose names start with '_' are reserved for the cluster".into(),
            );
        }
        ["metrics"] | ["v1", "status"] | ["v1", "ring"] if !principal.may_see_metrics() => {
            Err("metrics".to_string())
        }
        ["v1", "admin", ..] if !principal.is_admin() => Err("admin".to_string()),
        ["v1", "buckets", ..] if writes && !principal.is_admin() => Err("admin".to_string()),
        ["v1", "kv", bucket, ..] => {
            let bucket = percent_encoding::percent_decode_str(bucket).decode_utf8_lossy();
            let ok = if writes {
                principal.may_write(&bucket)
            } else {
                principal.may_read(&bucket)
            };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{}:{bucket}",
                    if writes { "write" } else { "read" }
                ))
            }
        }
        _ => Ok(()),
    };
    match allowed {
        Ok(()) => next.run(req).await,
        Err(scope) => {
            state.metrics.auth_failure("http");
            denied(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} may not {method} {path}: it needs the scope {scope}",
                    principal.name
                ),
            )
        }
    }
}
