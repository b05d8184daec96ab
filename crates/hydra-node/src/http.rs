//! The HTTP API (docs/DESIGN.md "HTTP API"): key-value requests, status, ring, buckets, health,
//! metrics. Every KV response carries `X-Hydra-Receipt`; errors are JSON `{code, message}`,
//! with HTTP statuses mapped from the core's error codes in [`status_of`] (the one place).

use crate::driver::CoreHandle;
use crate::metrics::{Metrics, record, record_serial};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use hydra_core::bucket::{BucketProps, ConflictMode, Consistency};
use hydra_core::content_type::ContentType;

use hydra_core::key::{BucketName, ObjectKey};
use hydra_core::layout::Layout;
use hydra_core::message::{
    CasAction, CasRequest, ClientError, ClientRequest, ClientResponse, ErrorCode, Expiry, Outcome,
    PaxosReceipt, Receipt, Role, VersionOp, WriteRequest,
};
use hydra_core::paxos::Condition;
use hydra_core::version::{Context, Sibling, VersionVector};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

pub const CONTEXT_HEADER: &str = "x-hydra-context";
pub const RECEIPT_HEADER: &str = "x-hydra-receipt";
/// What Paxos did for a conditional write or a serial read (JSON).
pub const PAXOS_HEADER: &str = "x-hydra-paxos";

/// What the handlers share.
pub struct AppState {
    pub core: CoreHandle,
    pub metrics: Arc<Metrics>,
    pub layout: Layout,
    pub value_bytes_max: usize,
    pub durability: String,
    pub auth: Arc<crate::auth::Auth>,
}

pub fn router(state: Arc<AppState>) -> Router {
    let authorize =
        axum::middleware::from_fn_with_state(state.clone(), crate::http_auth::authorize);
    Router::new()
        .route("/v1/kv/{bucket}/{*key}", get(get_kv).put(put_kv).delete(delete_kv))
        .route(
            "/v1/kv/{bucket}",
            get(crate::http_bucket::list_kv).delete(crate::http_bucket::truncate_kv),
        )
        .route("/v1/status", get(crate::http_status::status))
        .route("/v1/ring", get(crate::http_status::ring))
        .route("/v1/buckets", get(list_buckets))
        .route("/v1/buckets/{name}", get(get_bucket).put(put_bucket))
        .route(
            "/v1/admin/tokens",
            get(crate::admin::list_tokens).post(crate::admin::create_token),
        )
        .route(
            "/v1/admin/tokens/{id}",
            axum::routing::delete(crate::admin::revoke_token),
        )
        .route("/v1/admin/handoff", axum::routing::post(crate::admin::set_handoff))
        .route(
            "/v1/admin/anti-entropy",
            axum::routing::post(crate::admin::set_anti_entropy),
        )
        .route("/v1/admin/users", get(crate::admin::list_users))
        .route(
            "/v1/admin/users/{name}",
            axum::routing::put(crate::admin::set_user).delete(crate::admin::delete_user),
        )
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(|| async { http_error(ErrorCode::NoSuchRoute, "no such route; see /v1/kv/{bucket}/{key}, /v1/status, /v1/ring, /v1/buckets, /health, /metrics".into()) })
        .layer(authorize)
        .with_state(state)
}

/// HTTP status of each core error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidKey
        | ErrorCode::InvalidConsistency
        | ErrorCode::InvalidContentType
        | ErrorCode::InvalidTimeout
        | ErrorCode::InvalidBucket
        | ErrorCode::InvalidTtl
        | ErrorCode::InvalidContext
        | ErrorCode::InvalidQuery => StatusCode::BAD_REQUEST,
        ErrorCode::UnknownBucket | ErrorCode::NotFound | ErrorCode::NoSuchRoute => {
            StatusCode::NOT_FOUND
        }
        ErrorCode::ValueTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooManySiblings
        | ErrorCode::BucketPropertyFixed
        | ErrorCode::CasContention
        | ErrorCode::CasManagedKey
        | ErrorCode::WrongType => StatusCode::CONFLICT,
        // As a gateway that timed out: the outcome is not known.
        ErrorCode::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::CasNotSupported => StatusCode::NOT_IMPLEMENTED,
        ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorCode::QuorumNotReached
        | ErrorCode::CoordinatorUnreachable
        | ErrorCode::Overloaded
        | ErrorCode::ClockSkew => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::StoreFailed | ErrorCode::NotReplica | ErrorCode::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// An error answered before the request reaches the core (bad input, unknown route).
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code.as_str(), "message": self.message }).to_string();
        (
            status_of(self.code),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

pub(crate) fn http_error(code: ErrorCode, message: String) -> ApiError {
    ApiError { code, message }
}

pub(crate) fn error_response(code: ErrorCode, message: String) -> Response {
    http_error(code, message).into_response()
}

pub(crate) fn client_error(e: &ClientError) -> Response {
    let mut body = json!({ "code": e.code.as_str(), "message": e.message });
    if let Some(r) = &e.receipt {
        body["needed"] = json!(r.needed);
        body["acked"] = json!(r.acked());
        body["failures"] = r
            .replicas
            .iter()
            .filter_map(|x| match &x.outcome {
                Outcome::Failed { reason } => Some(json!({ "node": x.node.0, "reason": reason })),
                Outcome::Pending => Some(json!({ "node": x.node.0, "reason": "no answer" })),
                _ => None,
            })
            .collect();
    }
    let mut resp = (
        status_of(e.code),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(r) = &e.receipt {
        set_header(
            resp.headers_mut(),
            RECEIPT_HEADER,
            &receipt_json(r).to_string(),
        );
    }
    resp
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
        headers.insert(name, v);
    }
}

fn vector_text(v: &VersionVector) -> String {
    v.0.iter()
        .map(|(n, c)| format!("{n}:{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The receipt as compact JSON (the `X-Hydra-Receipt` header).
pub fn receipt_json(r: &Receipt) -> Value {
    let replicas: Vec<Value> = r
        .replicas
        .iter()
        .map(|x| {
            let mut o = json!({
                "node": x.node.0,
                "role": match x.role { Role::Primary => "primary", Role::Fallback => "fallback" },
                "zone": x.zone,
            });
            match &x.outcome {
                Outcome::Pending => o["outcome"] = json!("pending"),
                Outcome::Acked => o["outcome"] = json!("acked"),
                Outcome::Read { version, siblings } => {
                    o["outcome"] = json!(if version.is_some() {
                        "found"
                    } else {
                        "not_found"
                    });
                    if let Some(v) = version {
                        o["version"] = json!(vector_text(v));
                        o["siblings"] = json!(siblings);
                    }
                }
                Outcome::Failed { reason } => {
                    o["outcome"] = json!("failed");
                    o["reason"] = json!(reason);
                }
            }
            o
        })
        .collect();
    json!({
        "coordinator": r.coordinator.0,
        "partition": r.partition,
        "needed": r.needed,
        "acked": r.acked(),
        "replicas": replicas,
        "read_repairs": r.read_repairs.iter().map(|n| n.0).collect::<Vec<_>>(),
        "hints_stored": r.hints_stored,
        "ms": r.elapsed_ms,
    })
}

/// Query parameters of a KV request, checked against what the operation accepts.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub(crate) fn check(
        pairs: Vec<(String, String)>,
        allowed: &[&str],
    ) -> Result<Params, ApiError> {
        for (k, _) in &pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(http_error(
                    ErrorCode::InvalidQuery,
                    format!(
                        "unknown query parameter {k:?}; this request accepts {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(Params { pairs })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn consistency(&self, name: &str) -> Result<Option<Consistency>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e: hydra_core::bucket::ConsistencyError| {
                    http_error(ErrorCode::InvalidConsistency, format!("{name}: {e}"))
                }),
        }
    }

    pub(crate) fn timeout_ms(&self) -> Result<Option<u64>, ApiError> {
        match self.get("timeout_ms") {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                http_error(
                    ErrorCode::InvalidTimeout,
                    format!("timeout_ms {v:?} is not a number of milliseconds"),
                )
            }),
        }
    }

    fn ttl_secs(&self) -> Result<Option<u64>, ApiError> {
        match self.get("ttl") {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                http_error(
                    ErrorCode::InvalidTtl,
                    format!("ttl {v:?} is not a number of seconds"),
                )
            }),
        }
    }

    fn sloppy(&self) -> Result<Option<bool>, ApiError> {
        match self.get("sloppy") {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(http_error(
                ErrorCode::InvalidQuery,
                format!("sloppy {v:?} must be true or false"),
            )),
        }
    }
}

pub(crate) fn object_key(bucket: &str, key: &str) -> Result<ObjectKey, ApiError> {
    let bucket =
        BucketName::new(bucket).map_err(|e| http_error(ErrorCode::InvalidBucket, e.to_string()))?;
    ObjectKey::new(bucket, key.as_bytes())
        .map_err(|e| http_error(ErrorCode::InvalidKey, e.to_string()))
}

/// The condition of a conditional write: `If-None-Match: *` (absent), `If-Match: *`
/// (present) or `If-Match: <context>` (the version that read returned is still current).
fn condition_from(headers: &HeaderMap) -> Result<Option<Condition>, ApiError> {
    let text = |name: &str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str().map_err(|_| {
                    http_error(ErrorCode::InvalidQuery, format!("{name} is not ASCII"))
                })
            })
            .transpose()
    };
    match (text("if-none-match")?, text("if-match")?) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(http_error(
            ErrorCode::InvalidQuery,
            "give If-Match or If-None-Match, not both".into(),
        )),
        (Some("*"), None) => Ok(Some(Condition::Absent)),
        (Some(other), None) => Err(http_error(
            ErrorCode::InvalidQuery,
            format!("If-None-Match takes only \"*\" (the key is absent), not {other:?}"),
        )),
        (None, Some("*")) => Ok(Some(Condition::Present)),
        (None, Some(token)) => Context::decode(token.trim_matches('"'))
            .map(|c| Some(Condition::VersionIs(c.0)))
            .map_err(|e| http_error(ErrorCode::InvalidContext, format!("If-Match: {e}"))),
    }
}

fn context_from(headers: &HeaderMap) -> Result<Option<VersionVector>, ApiError> {
    match headers.get(CONTEXT_HEADER) {
        None => Ok(None),
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                http_error(
                    ErrorCode::InvalidContext,
                    "X-Hydra-Context is not ASCII".into(),
                )
            })?;
            Context::decode(text)
                .map(|c| Some(c.0))
                .map_err(|e| http_error(ErrorCode::InvalidContext, format!("X-Hydra-Context: {e}")))
        }
    }
}

fn with_kv_headers(mut resp: Response, context: &VersionVector, receipt: &Receipt) -> Response {
    set_header(
        resp.headers_mut(),
        CONTEXT_HEADER,
        &Context(context.clone()).encode(),
    );
    set_header(
        resp.headers_mut(),
        RECEIPT_HEADER,
        &receipt_json(receipt).to_string(),
    );
    resp
}

async fn get_kv(
    State(state): State<Arc<AppState>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let started = Instant::now();
    let params = match Params::check(query, &["r", "timeout_ms", "sloppy"]) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    if params.get("r") == Some("serial") {
        return serial_get(state, bucket, key, params, started).await;
    }
    let (key, r, timeout_ms, sloppy) = match (
        object_key(&bucket, &key),
        params.consistency("r"),
        params.timeout_ms(),
        params.sloppy(),
    ) {
        (Ok(k), Ok(r), Ok(t), Ok(s)) => (k, r, t, s),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return e.into_response();
        }
    };
    let shown = key.to_string();
    let result = state
        .core
        .request(ClientRequest::Get {
            key,
            r,
            timeout_ms,
            sloppy,
        })
        .await;
    record(&state.metrics, "get", r, started, &result);
    match result {
        Ok(ClientResponse::Read {
            collection: Some(c),
            context,
            receipt,
            ..
        }) if !c.is_empty() => {
            let resp = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                collection_json(&c).to_string(),
            )
                .into_response();
            with_kv_headers(resp, &context, &receipt)
        }
        Ok(ClientResponse::Read {
            context,
            siblings,
            receipt,
            ..
        }) => read_response(&shown, &context, &siblings, &receipt),
        Ok(_) => error_response(ErrorCode::Internal, "unexpected reply to a read".into()),
        Err(e) => client_error(&e),
    }
}

/// `GET ?r=serial`: a read through Paxos, linearizable with every compare-and-set.
async fn serial_get(
    state: Arc<AppState>,
    bucket: String,
    key: String,
    params: Params,
    started: Instant,
) -> Response {
    if params.get("sloppy").is_some() {
        return http_error(
            ErrorCode::InvalidQuery,
            "a serial read asks the primaries only; it takes no sloppy".into(),
        )
        .into_response();
    }
    let (key, timeout_ms) = match (object_key(&bucket, &key), params.timeout_ms()) {
        (Ok(k), Ok(t)) => (k, t),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let shown = key.to_string();
    let result = state
        .core
        .request(ClientRequest::cas(CasRequest {
            key,
            condition: Condition::Always,
            action: CasAction::Read,
            timeout_ms,
            supersedes: None,
        }))
        .await;
    record_serial(&state.metrics, "get", started, &result);
    match result {
        Ok(ClientResponse::Cas {
            context,
            siblings,
            receipt,
            paxos,
            ..
        }) => {
            let mut resp = read_response(&shown, &context, &siblings, &receipt);
            set_header(
                resp.headers_mut(),
                PAXOS_HEADER,
                &paxos_json(&paxos, "read").to_string(),
            );
            resp
        }
        Ok(_) => error_response(ErrorCode::Internal, "unexpected reply to a read".into()),
        Err(e) => client_error(&e),
    }
}

/// What Paxos did, as the `X-Hydra-Paxos` header.
fn paxos_json(p: &PaxosReceipt, outcome: &str) -> Value {
    json!({
        "ballot": p.ballot.to_string(),
        "attempts": p.attempts,
        "round_trips": p.round_trips,
        "reproposed": p.reproposed,
        "outcome": outcome,
    })
}

/// A read's answer: the value (200), siblings as JSON (300) or `not_found` (404).
/// A hash or set as JSON: `{"type": "hash", "fields": {name: value}}` or `{"type": "set",
/// "members": [...]}`, in byte order; a name, value or member that is not UTF-8 is
/// `{"base64": "..."}` (a hash with such a field name lists `[name, value]` pairs instead).
fn collection_json(c: &hydra_core::collection::Collection) -> Value {
    let text = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(t) => json!(t),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
    };
    let elements = c.elements(crate::driver::wall_ms());
    match c.kind {
        hydra_core::collection::CollectionKind::Set => json!({
            "type": "set",
            "members": elements.iter().map(|(m, _)| text(m)).collect::<Vec<_>>(),
        }),
        hydra_core::collection::CollectionKind::Hash
            if elements.iter().all(|(f, _)| std::str::from_utf8(f).is_ok()) =>
        {
            let fields: serde_json::Map<String, Value> = elements
                .iter()
                .map(|(f, v)| (String::from_utf8_lossy(f).into_owned(), text(v)))
                .collect();
            json!({ "type": "hash", "fields": fields })
        }
        hydra_core::collection::CollectionKind::Hash => json!({
            "type": "hash",
            "fields": elements.iter().map(|(f, v)| json!([text(f), text(v)])).collect::<Vec<_>>(),
        }),
    }
}

fn read_response(
    shown: &str,
    context: &VersionVector,
    siblings: &[Sibling],
    receipt: &Receipt,
) -> Response {
    let resp = match siblings.len() {
        0 => error_response(ErrorCode::NotFound, format!("key {shown} does not exist")),
        1 => {
            let s = &siblings[0];
            let ct = if s.content_type.is_empty() {
                "application/octet-stream"
            } else {
                &s.content_type
            };
            let mut resp = (StatusCode::OK, s.value.clone()).into_response();
            set_header(resp.headers_mut(), "content-type", ct);
            set_header(
                resp.headers_mut(),
                "x-hydra-timestamp",
                &s.timestamp.physical_ms().to_string(),
            );
            resp
        }
        _ => {
            let list: Vec<Value> = siblings
                .iter()
                .map(|s| {
                    json!({
                        "value_base64": base64::engine::general_purpose::STANDARD.encode(&s.value),
                        "content_type": s.content_type,
                        "last_modified": s.timestamp.physical_ms(),
                    })
                })
                .collect();
            let body = json!({ "context": Context(context.clone()).encode(), "siblings": list });
            (
                StatusCode::MULTIPLE_CHOICES,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    };
    with_kv_headers(resp, context, receipt)
}

async fn put_kv(
    State(state): State<Arc<AppState>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write_kv(state, bucket, key, query, headers, Some(body)).await
}

async fn delete_kv(
    State(state): State<Arc<AppState>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    write_kv(state, bucket, key, query, headers, None).await
}

async fn write_kv(
    state: Arc<AppState>,
    bucket: String,
    key: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<Body>,
) -> Response {
    let started = Instant::now();
    let op = if body.is_some() { "put" } else { "delete" };
    let params = match Params::check(query, &["w", "timeout_ms", "sloppy", "ttl"]) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let condition = match condition_from(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (key, w, timeout_ms, context, sloppy) = match (
        object_key(&bucket, &key),
        params.consistency("w"),
        params.timeout_ms(),
        context_from(&headers),
        params.sloppy(),
    ) {
        (Ok(k), Ok(w), Ok(t), Ok(c), Ok(s)) => (k, w, t, c, s),
        (Err(e), ..)
        | (_, Err(e), ..)
        | (_, _, Err(e), ..)
        | (_, _, _, Err(e), _)
        | (.., Err(e)) => return e.into_response(),
    };
    let value = match body {
        None => None,
        Some(body) => {
            let limit = state.value_bytes_max;
            let too_large = |len| client_error(&ClientError::value_too_large(len, limit));
            if let Some(len) = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                && len > limit
            {
                return too_large(Some(len));
            }
            match axum::body::to_bytes(body, limit).await {
                Ok(b) => Some(b.to_vec()),
                Err(_) => return too_large(None),
            }
        }
    };
    let content_type = ContentType::new(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(if value.is_some() {
                "application/octet-stream"
            } else {
                ""
            }),
    );
    let expiry = match params.ttl_secs() {
        Ok(t) => t.map(|s| Expiry::AfterMs(s.saturating_mul(1000))),
        Err(e) => return e.into_response(),
    };
    if let Some(condition) = condition {
        if w.is_some() || sloppy.is_some() || context.is_some() {
            return http_error(
                ErrorCode::InvalidQuery,
                "a conditional write goes through compare-and-set (a majority of the primaries): it takes no w, sloppy or X-Hydra-Context".into(),
            )
            .into_response();
        }
        let action = match value {
            Some(value) => CasAction::Write {
                value,
                content_type,
                expiry,
                keep_ttl: false,
            },
            None => CasAction::Delete,
        };
        let request = ClientRequest::cas(CasRequest {
            key,
            condition,
            action,
            timeout_ms,
            supersedes: None,
        });
        let result = state.core.request(request).await;
        record_serial(&state.metrics, op, started, &result);
        return match result {
            Ok(ClientResponse::Cas {
                applied,
                context,
                receipt,
                paxos,
                ..
            }) => {
                let mut resp = if applied {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    error_response(
                        ErrorCode::PreconditionFailed,
                        "the condition did not hold; nothing was written (X-Hydra-Context is the current version)".into(),
                    )
                };
                let outcome = if applied { "applied" } else { "not_applied" };
                set_header(
                    resp.headers_mut(),
                    PAXOS_HEADER,
                    &paxos_json(&paxos, outcome).to_string(),
                );
                with_kv_headers(resp, &context, &receipt)
            }
            Ok(_) => error_response(ErrorCode::Internal, "unexpected reply to a write".into()),
            Err(e) => client_error(&e),
        };
    }
    // A DELETE with a context deletes what that read saw: in an `lww` bucket exactly the
    // version it names (a value written since, by anyone, stays), as `GETDEL`/`DEL` do.
    // (A context of several entries is from a `siblings` read: a delete with that context.)
    let on_version = (value.is_none() && context.as_ref().is_some_and(|c| c.0.len() == 1))
        .then_some(VersionOp::Delete);
    let request = ClientRequest::put(WriteRequest {
        key,
        value,
        content_type,
        sloppy,
        expiry,
        on_version,
        collection: None,
        context,
        w,
        timeout_ms,
    });
    let result = state.core.request(request).await;
    record(&state.metrics, op, w, started, &result);
    match result {
        Ok(ClientResponse::Written { context, receipt }) => {
            with_kv_headers(StatusCode::NO_CONTENT.into_response(), &context, &receipt)
        }
        Ok(_) => error_response(ErrorCode::Internal, "unexpected reply to a write".into()),
        Err(e) => client_error(&e),
    }
}

pub fn props_json(p: &BucketProps) -> Value {
    json!({ "n": p.n, "r": p.r.to_string(), "w": p.w.to_string(), "conflicts": p.conflicts.to_string(), "sloppy": p.sloppy, "ttl": p.ttl_secs, "cas": p.cas.to_string() })
}

async fn list_buckets(State(state): State<Arc<AppState>>) -> Response {
    let Some((_, buckets)) = state.core.status().await else {
        return error_response(ErrorCode::Overloaded, "the node did not answer".into());
    };
    let body = json!({ "buckets": buckets.iter().filter(|(n, _)| !crate::http_auth::reserved(n.as_str())).map(|(n, p)| (n.to_string(), props_json(p))).collect::<serde_json::Map<_, _>>() });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn get_bucket(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let Some((_, buckets)) = state.core.status().await else {
        return error_response(ErrorCode::Overloaded, "the node did not answer".into());
    };
    match BucketName::new(&name)
        .ok()
        .and_then(|n| buckets.get(&n).cloned())
    {
        Some(p) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            props_json(&p).to_string(),
        )
            .into_response(),
        None => error_response(
            ErrorCode::UnknownBucket,
            format!("bucket {name:?} does not exist"),
        ),
    }
}

/// Creates a bucket or changes some of its properties: the body is a JSON object with any of
/// `n`, `r`, `w`, `conflicts`, `sloppy`; the others keep their value (or default).
async fn put_bucket(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: String,
) -> Response {
    let bad = |m: String| error_response(ErrorCode::InvalidBucket, m);
    let name = match BucketName::new(&name) {
        Ok(n) => n,
        Err(e) => return bad(e.to_string()).into_response(),
    };
    let patch: serde_json::Map<String, Value> =
        match serde_json::from_str(if body.trim().is_empty() { "{}" } else { &body }) {
            Ok(Value::Object(m)) => m,
            _ => {
                return bad(
                    "the body must be a JSON object with any of n, r, w, conflicts, sloppy".into(),
                );
            }
        };
    let Some((_, buckets)) = state.core.status().await else {
        return error_response(ErrorCode::Overloaded, "the node did not answer".into());
    };
    let mut props = buckets.get(&name).cloned().unwrap_or_default();
    for (k, v) in &patch {
        let text = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        let result: Result<(), String> = match k.as_str() {
            "n" => v
                .as_u64()
                .filter(|n| *n <= u8::MAX as u64)
                .map(|n| props.n = n as u8)
                .ok_or(format!("n must be a number, not {v}")),
            "r" => text
                .parse()
                .map(|c| props.r = c)
                .map_err(|e: hydra_core::bucket::ConsistencyError| format!("r: {e}")),
            "w" => text
                .parse()
                .map(|c| props.w = c)
                .map_err(|e: hydra_core::bucket::ConsistencyError| format!("w: {e}")),
            "conflicts" => text.parse::<ConflictMode>().map(|c| props.conflicts = c),
            "sloppy" => v
                .as_bool()
                .map(|b| props.sloppy = b)
                .ok_or(format!("sloppy must be true or false, not {v}")),
            "ttl" => match v {
                Value::Null => {
                    props.ttl_secs = None;
                    Ok(())
                }
                _ => v
                    .as_u64()
                    .map(|t| props.ttl_secs = Some(t))
                    .ok_or(format!("ttl must be a number of seconds or null, not {v}")),
            },
            "cas" => text
                .parse::<hydra_core::bucket::CasMode>()
                .map(|c| props.cas = c),
            other => Err(format!(
                "unknown bucket property {other:?}; expected n, r, w, conflicts, sloppy, ttl, cas"
            )),
        };
        if let Err(m) = result {
            return bad(m);
        }
    }
    match state
        .core
        .request(ClientRequest::SetBucket { name, props })
        .await
    {
        Ok(ClientResponse::Bucket { props, .. }) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            props_json(&props).to_string(),
        )
            .into_response(),
        Ok(_) => error_response(ErrorCode::Internal, "unexpected reply".into()),
        Err(e) => client_error(&e),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some((status, _)) = state.core.status().await {
        state.metrics.observe_hints(&status);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
