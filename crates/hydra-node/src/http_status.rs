//! Node-level routes of the HTTP API: `GET /v1/status` (what the node knows of itself, its
//! peers, hints, anti-entropy and garbage collection) and `GET /v1/ring` (the layout's
//! preference lists, or one key's). The per-key routes are in `http.rs`.

use crate::http::{AppState, Params, error_response, object_key, props_json};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hydra_core::bucket::BucketProps;
use hydra_core::limits::REPLICATION_FACTOR_MAX;
use hydra_core::message::ErrorCode;
use serde_json::{Value, json};
use std::sync::Arc;

pub(crate) async fn status(State(state): State<Arc<AppState>>) -> Response {
    let Some((status, buckets)) = state.core.status().await else {
        return error_response(ErrorCode::Overloaded, "the node did not answer".into());
    };
    let peers: Vec<Value> = status
        .peers
        .iter()
        .map(|p| {
            let state_name = match (p.last_heard_ms_ago, p.alive) {
                (None, _) => "unknown",
                (Some(_), true) => "up",
                (Some(_), false) => "down",
            };
            json!({
                "id": p.id.0, "zone": p.zone, "datacenter": p.datacenter,
                "state": state_name, "phi": p.phi.map(|phi| (phi * 100.0).round() / 100.0),
                "last_heard_ms_ago": p.last_heard_ms_ago,
            })
        })
        .collect();
    let body = json!({
        "node": status.id.0,
        "zone": state.layout.zone_of(status.id).map(|(_, z)| z.clone()).unwrap_or_default(),
        "datacenter": state.layout.zone_of(status.id).map(|(dc, _)| dc.clone()).unwrap_or_default(),
        "layout_version": status.layout_version.0,
        "partitions": status.partitions,
        "peers": peers,
        "in_flight": status.in_flight,
        "store_poisoned": status.store_poisoned,
        "clock": json!({
            "state": status.clock.state,
            "offset_ms": status.clock.offset_ms,
            "peers_measured": status.clock.peers_measured,
            "jumps": status.clock.jumps,
            "detail": status.clock.detail,
        }),
        "bucket_conflicts": status.bucket_conflicts,
        "durability": state.durability,
        "buckets": buckets.iter().map(|(n, p)| (n.to_string(), props_json(p))).collect::<serde_json::Map<_, _>>(),
        "hints_pending_bytes": status.hints.iter().map(|h| h.bytes).sum::<u64>(),
        "hints": status.hints.iter().map(|h| json!({ "owner": h.owner.0, "count": h.count, "bytes": h.bytes })).collect::<Vec<_>>(),
        "hint_counters": json!({
            "stored": status.hint_counters.stored,
            "delivered": status.hint_counters.delivered,
            "dropped": status.hint_counters.dropped,
        }),
        "partitions_needing_anti_entropy": status.dirty_partitions,
        "handoff_enabled": status.handoff_enabled,
        "anti_entropy_enabled": status.anti_entropy_enabled,
        "peer_messages_refused": status.peer_messages_refused,
        "peer_refusal": status.peer_refusal,
        "objects": status.objects,
        "garbage": json!({
            "expired_deleted": status.expired_deleted,
            "tombstones_reaped": status.tombstones_reaped,
            "tombstones_reissued": status.tombstones_reissued,
            "reaps_pending": status.reaps_pending,
        }),
        "anti_entropy": json!({
            "exchanges_completed": status.anti_entropy.exchanges_completed,
            "exchanges_failed": status.anti_entropy.exchanges_failed,
            "keys_repaired": status.anti_entropy.keys_repaired,
            "partitions": status.anti_entropy.partitions.iter().map(|(p, (t, k))| (p.to_string(), json!({ "last_exchange_ms": t.0, "keys_repaired": k }))).collect::<serde_json::Map<_, _>>(),
        }),
        "paxos_repair": json!({
            "rounds": status.paxos_repair.rounds,
            "rounds_failed": status.paxos_repair.rounds_failed,
            "keys_repaired": status.paxos_repair.keys_repaired,
            "states_collected": status.paxos_repair.states_collected,
        }),
        "time_ms": crate::driver::wall_ms(),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) async fn ring(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let params = match Params::check(query, &["bucket", "key", "n"]) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let n = match params.get("n").map(str::parse::<usize>) {
        None => BucketProps::default().n as usize,
        Some(Ok(n)) if (1..=REPLICATION_FACTOR_MAX as usize).contains(&n) => n,
        Some(_) => {
            return error_response(
                ErrorCode::InvalidQuery,
                format!("n must be a number from 1 to {REPLICATION_FACTOR_MAX}"),
            );
        }
    };
    let layout = &state.layout;
    let node_json = |id: &hydra_core::ids::NodeId| {
        let (dc, zone) = layout.zone_of(*id).cloned().unwrap_or_default();
        json!({ "id": id.0, "zone": zone, "datacenter": dc })
    };
    if let Some(key) = params.get("key") {
        let bucket = params.get("bucket").unwrap_or("default");
        let key = match object_key(bucket, key) {
            Ok(k) => k,
            Err(e) => return e.into_response(),
        };
        let p = layout.partition_for(key.bucket.as_str(), key.key());
        let order = layout.extended_preference_list(p);
        let n = n.min(order.len());
        let body = json!({
            "bucket": key.bucket.as_str(), "key": String::from_utf8_lossy(key.key()), "partition": p.0,
            "preference_list": order[..n].iter().map(node_json).collect::<Vec<_>>(),
            "fallbacks": order[n..].iter().map(node_json).collect::<Vec<_>>(),
        });
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let partitions: Vec<Value> = (0..layout.partition_count())
        .map(|p| {
            let list = layout.preference_list(hydra_core::ids::PartitionId(p), n);
            json!({ "partition": p, "nodes": list.iter().map(|id| id.0).collect::<Vec<_>>() })
        })
        .collect();
    let body = json!({
        "layout_version": layout.version().0,
        "partitions": layout.partition_count(),
        "nodes": layout.nodes().iter().map(|i| json!({ "id": i.id.0, "zone": i.zone, "datacenter": i.datacenter, "capacity": i.capacity })).collect::<Vec<_>>(),
        "n": n,
        "assignments": partitions,
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
