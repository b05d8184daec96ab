//! The admin API: tokens and Redis-protocol users, kept in the cluster's credentials table
//! ([`crate::credentials`]). Every route needs the `admin` scope (checked by
//! [`crate::http`]'s `authorize`).
//!
//! | request | meaning |
//! |---|---|
//! | `POST /v1/admin/tokens` `{"name", "scopes"}` | 201 `{"id", "token", "name", "scopes"}`: the token is shown once |
//! | `GET /v1/admin/tokens` | `{"tokens": [{"id", "name", "scopes", "created_ms"}]}` |
//! | `DELETE /v1/admin/tokens/{id}` | 204; 404 `not_found` |
//! | `PUT /v1/admin/users/{name}` `{"password", "scopes"}` | 204 (created or replaced) |
//! | `GET /v1/admin/users` | `{"users": [{"name", "scopes"}]}` |
//! | `DELETE /v1/admin/users/{name}` | 204; 404 `not_found` |

use crate::credentials::{Credentials, new_token, new_user};
use crate::http::{AppState, error_response};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hydra_core::message::ErrorCode;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    password: String,
    scopes: Vec<String>,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A refusal, made a response by [`answer`].
type Fail = (ErrorCode, String);

fn answer(result: Result<Response, Fail>) -> Response {
    result.unwrap_or_else(|(code, message)| error_response(code, message))
}

fn stored(state: &AppState) -> Result<&Credentials, Fail> {
    state.auth.stored().ok_or_else(|| {
        (
            ErrorCode::Internal,
            "this node keeps no credentials table".into(),
        )
    })
}

/// Bad input is the client's error.
fn bad_input(e: anyhow::Error) -> Fail {
    (ErrorCode::InvalidQuery, format!("{e:#}"))
}

/// A change or read of the table that failed in the cluster.
fn unavailable(e: anyhow::Error) -> Fail {
    (ErrorCode::QuorumNotReached, format!("{e:#}"))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Fail> {
    serde_json::from_slice(body).map_err(|e| {
        (
            ErrorCode::InvalidQuery,
            format!("the body is not the JSON this route takes: {e}"),
        )
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub async fn create_token(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    answer(
        async {
            let req: NewToken = parse(&body)?;
            let store = stored(&state)?;
            let (id, token, record) =
                new_token(&req.name, &req.scopes, now_ms()).map_err(bad_input)?;
            store
                .change(|t| {
                    t.tokens.insert(id.clone(), record.clone());
                    Ok(())
                })
                .await
                .map_err(unavailable)?;
            Ok(json_response(
                StatusCode::CREATED,
                json!({ "id": id, "token": token, "name": req.name, "scopes": req.scopes }),
            ))
        }
        .await,
    )
}

pub async fn list_tokens(State(state): State<Arc<AppState>>) -> Response {
    answer(
        async {
            let t = stored(&state)?.current().await.map_err(unavailable)?;
            Ok(json_response(
                StatusCode::OK,
                json!({ "tokens": t.tokens.iter().map(|(id, r)| json!({
                    "id": id, "name": r.name, "scopes": r.scopes, "created_ms": r.created_ms,
                })).collect::<Vec<_>>() }),
            ))
        }
        .await,
    )
}

pub async fn revoke_token(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    answer(
        async {
            let store = stored(&state)?;
            let removed = store
                .change(|t| Ok(t.tokens.remove(&id).is_some()))
                .await
                .map_err(unavailable)?;
            if !removed {
                return Err((ErrorCode::NotFound, format!("no token {id:?}")));
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

pub async fn set_user(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    answer(
        async {
            let req: NewUser = parse(&body)?;
            let store = stored(&state)?;
            let (n, p, s) = (name.clone(), req.password, req.scopes);
            let record = tokio::task::spawn_blocking(move || new_user(&n, &p, &s))
                .await
                .map_err(|e| unavailable(anyhow::anyhow!("hashing the password: {e}")))?
                .map_err(bad_input)?;
            store
                .change(|t| {
                    t.users.insert(name.clone(), record.clone());
                    Ok(())
                })
                .await
                .map_err(unavailable)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// `POST /v1/admin/handoff {"enabled": false|true}`: pause or resume this node's delivery
/// of the hints it holds (Cassandra's `nodetool disablehandoff`/`enablehandoff`).
pub async fn set_handoff(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    operator_switch(&state, &body, "handoff_enabled").await
}

/// `POST /v1/admin/anti-entropy {"enabled": false|true}`: pause or resume the anti-entropy
/// exchanges this node starts (it still answers its peers') and its full sweep of old
/// tombstones and missed expiries.
pub async fn set_anti_entropy(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Response {
    operator_switch(&state, &body, "anti_entropy_enabled").await
}

/// An operator's on/off switch of a node's background repair: `{"enabled": bool}`.
async fn operator_switch(state: &AppState, body: &[u8], which: &str) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Switch {
        enabled: bool,
    }
    answer(
        async {
            let switch: Switch = parse(body)?;
            let done = if which == "handoff_enabled" {
                state.core.set_handoff(switch.enabled).await
            } else {
                state.core.set_anti_entropy(switch.enabled).await
            };
            done.ok_or((
                ErrorCode::Overloaded,
                "the node's core did not answer".to_string(),
            ))?;
            Ok(json_response(
                StatusCode::OK,
                json!({ which: switch.enabled }),
            ))
        }
        .await,
    )
}

pub async fn list_users(State(state): State<Arc<AppState>>) -> Response {
    answer(
        async {
            let t = stored(&state)?.current().await.map_err(unavailable)?;
            Ok(json_response(
                StatusCode::OK,
                json!({ "users": t.users.iter().map(|(name, r)| json!({
                    "name": name, "scopes": r.scopes,
                })).collect::<Vec<_>>() }),
            ))
        }
        .await,
    )
}

pub async fn delete_user(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    answer(
        async {
            let store = stored(&state)?;
            let removed = store
                .change(|t| Ok(t.users.remove(&name).is_some()))
                .await
                .map_err(unavailable)?;
            if !removed {
                return Err((ErrorCode::NotFound, format!("no user {name:?}")));
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}
