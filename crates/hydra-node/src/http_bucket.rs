//! Whole-bucket routes of the HTTP API: the listing (`GET /v1/kv/{bucket}`, over the core's
//! `List`, `node/scan.rs`) and the truncation (`DELETE /v1/kv/{bucket}`, the core's
//! `Truncate`, `node/truncate.rs`). The per-key routes are in `http.rs`.

use crate::http::{AppState, Params, client_error, http_error};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hydra_core::key::BucketName;
use hydra_core::message::{ClientRequest, ClientResponse, ErrorCode, ListCursor, ListRequest};
use serde_json::json;
use std::sync::Arc;

/// `DELETE /v1/kv/{bucket}`: truncate the bucket (every value written so far is gone, on
/// every node; see the core's `truncate.rs`). 200 `{"truncated_at_ms"}` once every node took
/// the mark.
pub(crate) async fn truncate_kv(
    State(state): State<Arc<AppState>>,
    Path(bucket): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let params = match Params::check(query, &["timeout_ms"]) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let bucket = match BucketName::new(&bucket) {
        Ok(b) => b,
        Err(e) => return http_error(ErrorCode::InvalidBucket, e.to_string()).into_response(),
    };
    let timeout_ms = match params.timeout_ms() {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    match state
        .core
        .request(ClientRequest::Truncate { bucket, timeout_ms })
        .await
    {
        Ok(ClientResponse::Truncated { mark }) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "truncated_at_ms": mark.physical_ms() }).to_string(),
        )
            .into_response(),
        Ok(_) => http_error(
            ErrorCode::Internal,
            "unexpected reply to a truncation".into(),
        )
        .into_response(),
        Err(e) => client_error(&e),
    }
}

/// Keys one HTTP listing answers at most (`limit`), and by default.
pub const LIST_LIMIT_MAX: usize = 1_000;
const LIST_LIMIT_DEFAULT: usize = 100;
/// Pages of partitions one HTTP listing reads at most before it answers (with `next`).
const LIST_PAGES_MAX: usize = 1_024;

/// A listing position as an opaque token: base64url of the partition (4 bytes, big endian)
/// and the last key returned there.
fn encode_list_cursor(c: &ListCursor) -> String {
    let mut bytes = c.partition.to_be_bytes().to_vec();
    if let Some(a) = &c.after {
        bytes.extend_from_slice(a);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_list_cursor(token: &str) -> Option<ListCursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    if bytes.len() < 4 || bytes.len() > 4 + hydra_core::limits::KEY_BYTES_MAX {
        return None;
    }
    let partition = u32::from_be_bytes(bytes[..4].try_into().ok()?);
    let after = (bytes.len() > 4).then(|| bytes[4..].to_vec());
    Some(ListCursor { partition, after })
}

/// `GET /v1/kv/{bucket}?after=&limit=`: the bucket's keys over the whole cluster, a page at
/// a time (`next` is the `after` of the next page; absent at the end). Deleted and expired
/// keys are left out; a key present for the whole listing is returned at least once.
pub(crate) async fn list_kv(
    State(state): State<Arc<AppState>>,
    Path(bucket): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let params = match Params::check(query, &["after", "limit", "r", "timeout_ms"]) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let bucket = match BucketName::new(&bucket) {
        Ok(b) => b,
        Err(e) => return http_error(ErrorCode::InvalidBucket, e.to_string()).into_response(),
    };
    let limit = match params.get("limit").map(str::parse::<usize>) {
        None => LIST_LIMIT_DEFAULT,
        Some(Ok(n)) if (1..=LIST_LIMIT_MAX).contains(&n) => n,
        Some(_) => {
            return http_error(
                ErrorCode::InvalidQuery,
                format!("limit must be 1 to {LIST_LIMIT_MAX}"),
            )
            .into_response();
        }
    };
    let mut cursor = match params.get("after") {
        None => Some(ListCursor::default()),
        Some(t) => match decode_list_cursor(t) {
            Some(c) => Some(c),
            None => {
                return http_error(
                    ErrorCode::InvalidQuery,
                    "after is not a listing cursor (take it from a listing's next)".into(),
                )
                .into_response();
            }
        },
    };
    let (r, timeout_ms) = match (params.consistency("r"), params.timeout_ms()) {
        (Ok(r), Ok(t)) => (r, t),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for _ in 0..LIST_PAGES_MAX {
        let Some(at) = cursor.take() else { break };
        let request = ClientRequest::List(ListRequest {
            bucket: bucket.clone(),
            cursor: at,
            limit: (limit - keys.len()) as u32,
            r,
            timeout_ms,
        });
        match state.core.request(request).await {
            Ok(ClientResponse::Keys {
                keys: page, next, ..
            }) => {
                keys.extend(page);
                cursor = next;
            }
            Ok(_) => {
                return http_error(ErrorCode::Internal, "unexpected reply to a listing".into())
                    .into_response();
            }
            Err(e) => return client_error(&e),
        }
        if keys.len() >= limit {
            break;
        }
    }
    let (text, binary): (Vec<_>, Vec<_>) = keys
        .into_iter()
        .partition(|k| std::str::from_utf8(k).is_ok());
    let body = json!({
        "keys": text.iter().map(|k| String::from_utf8_lossy(k)).collect::<Vec<_>>(),
        "binary_keys_base64": binary.iter().map(|k| base64::engine::general_purpose::STANDARD.encode(k)).collect::<Vec<_>>(),
        "next": cursor.as_ref().map(encode_list_cursor),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
