//! Prometheus metrics of the node (`GET /metrics`, text format).

use crate::driver::Reply;
use hydra_core::bucket::Consistency;
use hydra_core::message::{ClientResponse, ErrorCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// get, put, delete.
    pub op: String,
    /// The consistency level asked for (or `default`).
    pub level: String,
    /// `ok`, `not_found`, `siblings`, or an error code.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub op: String,
    pub level: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontLabels {
    pub front: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<LatencyLabels, Histogram>,
    pub quorum_failures: Family<OpLabels, Counter>,
    pub read_repairs: Counter,
    pub frames_dropped: Counter,
    /// Internode handshakes by outcome (`ok`, or why the peer was refused).
    pub handshakes: Family<OutcomeLabels, Counter>,
    /// Inbound internode connections refused at `limits.internode_connections_max`.
    pub internode_connections_refused: Counter,
    /// Internode records that failed to authenticate (the connection was closed).
    pub records_rejected: Counter,
    /// Internode messages dropped because the core's peer lane was full.
    pub peer_messages_dropped: Counter,
    /// Members' messages the core refused at its peer edge (delta of the core's count).
    pub peer_messages_refused: Counter,
    last_refused: std::sync::atomic::AtomicU64,
    /// HTTP connections refused at `limits.http_connections_max`.
    pub http_connections_refused: Counter,
    /// Client requests refused for a missing or wrong credential or scope, by front end.
    pub auth_failures: Family<FrontLabels, Counter>,
    pub fsyncs: Counter,
    pub hints_stored: Counter,
    pub hints_delivered: Counter,
    pub hints_dropped: Counter,
    pub hints_pending_bytes: Family<TargetLabels, Gauge>,
    pub ae_exchanges: Counter,
    pub ae_keys_repaired: Counter,
    /// This node's clock minus its peers' median (0 until measured).
    pub clock_offset_ms: Gauge,
    /// 1 while the node does not trust its clock (skewed or unverified): it refuses writes.
    pub clock_refusing: Gauge,
    /// The core's hint counters at the last scrape (the registry's counters advance by the
    /// difference).
    last_hints: std::sync::Mutex<hydra_core::hints::HintCounters>,
    last_ae: std::sync::Mutex<(u64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "hydra_requests",
            "Key-value requests by operation, consistency level and outcome",
            requests.clone(),
        );
        // 0.1 ms to about 3.3 s.
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "hydra_request_duration_seconds",
            "Key-value request latency at the coordinating node",
            latency.clone(),
        );
        let quorum_failures = Family::<OpLabels, Counter>::default();
        registry.register(
            "hydra_quorum_failures",
            "Requests that did not reach their R or W",
            quorum_failures.clone(),
        );
        let read_repairs = Counter::default();
        registry.register(
            "hydra_read_repairs",
            "Replicas sent read repair before the reply",
            read_repairs.clone(),
        );
        let frames_dropped = Counter::default();
        registry.register(
            "hydra_internode_frames_dropped",
            "Internode frames dropped: a queue was full or the peer unreachable",
            frames_dropped.clone(),
        );
        let handshakes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "hydra_internode_handshakes",
            "Internode handshakes by outcome: ok, or why the peer was refused (wrong_secret, no_role, wrong_key, protocol, io)",
            handshakes.clone(),
        );
        let internode_connections_refused = Counter::default();
        registry.register(
            "hydra_internode_connections_refused",
            "Inbound internode connections refused at limits.internode_connections_max",
            internode_connections_refused.clone(),
        );
        let peer_messages_dropped = Counter::default();
        registry.register(
            "hydra_core_peer_messages_dropped",
            "Internode messages dropped because the core's peer lane (limits.core_peer_queue_max) was full",
            peer_messages_dropped.clone(),
        );
        let http_connections_refused = Counter::default();
        registry.register(
            "hydra_http_connections_refused",
            "HTTP connections closed at accept because limits.http_connections_max were open",
            http_connections_refused.clone(),
        );
        let records_rejected = Counter::default();
        registry.register(
            "hydra_internode_records_rejected",
            "Internode records that failed to authenticate (replayed, reordered or modified); each closed its connection",
            records_rejected.clone(),
        );
        let peer_messages_refused = Counter::default();
        registry.register(
            "hydra_internode_messages_refused",
            "Members' messages the core dropped unapplied (a version no node could have made, a hint for a non-member)",
            peer_messages_refused.clone(),
        );
        let auth_failures = Family::<FrontLabels, Counter>::default();
        registry.register(
            "hydra_auth_failures",
            "Client requests refused for a missing or wrong credential or scope (front: http, resp)",
            auth_failures.clone(),
        );
        let fsyncs = Counter::default();
        registry.register(
            "hydra_fsyncs",
            "Fsyncs of the store (one per group commit)",
            fsyncs.clone(),
        );
        let hints_stored = Counter::default();
        registry.register(
            "hydra_hints_stored",
            "Hints stored for nodes that were down or slow",
            hints_stored.clone(),
        );
        let hints_delivered = Counter::default();
        registry.register(
            "hydra_hints_delivered",
            "Hints delivered to their owner and deleted",
            hints_delivered.clone(),
        );
        let hints_dropped = Counter::default();
        registry.register(
            "hydra_hints_dropped",
            "Hints refused because the owner's budget was full",
            hints_dropped.clone(),
        );
        let hints_pending_bytes = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "hydra_hints_pending_bytes",
            "Bytes of hints held per owner",
            hints_pending_bytes.clone(),
        );
        let ae_exchanges = Counter::default();
        registry.register(
            "hydra_anti_entropy_exchanges",
            "Anti-entropy exchanges completed",
            ae_exchanges.clone(),
        );
        let ae_keys_repaired = Counter::default();
        registry.register(
            "hydra_anti_entropy_keys_repaired",
            "Keys repaired by anti-entropy",
            ae_keys_repaired.clone(),
        );
        let clock_offset_ms = Gauge::default();
        registry.register(
            "hydra_clock_offset_ms",
            "This node's clock minus the median of its peers' (heartbeat round trips)",
            clock_offset_ms.clone(),
        );
        let clock_refusing = Gauge::default();
        registry.register(
            "hydra_clock_refusing",
            "1 while this node's clock is skewed or unverified and it refuses writes (CLOCK_SKEW)",
            clock_refusing.clone(),
        );
        Metrics {
            registry,
            clock_offset_ms,
            clock_refusing,
            ae_exchanges,
            ae_keys_repaired,
            last_ae: std::sync::Mutex::new((0, 0)),
            requests,
            latency,
            quorum_failures,
            read_repairs,
            frames_dropped,
            handshakes,
            internode_connections_refused,
            records_rejected,
            http_connections_refused,
            peer_messages_dropped,
            peer_messages_refused,
            last_refused: std::sync::atomic::AtomicU64::new(0),
            auth_failures,
            fsyncs,
            hints_stored,
            hints_delivered,
            hints_dropped,
            hints_pending_bytes,
            last_hints: std::sync::Mutex::new(Default::default()),
        }
    }

    /// Counts a refused internode handshake.
    pub fn handshake(&self, refusal: crate::secure::Refusal) {
        self.handshakes
            .get_or_create(&OutcomeLabels {
                outcome: refusal.label().into(),
            })
            .inc();
    }

    /// Counts a client refused for its credential or scope.
    pub fn auth_failure(&self, front: &str) {
        self.auth_failures
            .get_or_create(&FrontLabels {
                front: front.into(),
            })
            .inc();
    }

    /// Counts a completed internode handshake.
    pub fn handshake_ok(&self) {
        self.handshakes
            .get_or_create(&OutcomeLabels {
                outcome: "ok".into(),
            })
            .inc();
    }

    /// Takes in the core's view of hinted handoff (at each scrape).
    pub fn observe_hints(&self, status: &hydra_core::node::NodeStatus) {
        let now = status.hint_counters;
        if let Ok(mut last) = self.last_hints.lock() {
            self.hints_stored
                .inc_by(now.stored.saturating_sub(last.stored));
            self.hints_delivered
                .inc_by(now.delivered.saturating_sub(last.delivered));
            self.hints_dropped
                .inc_by(now.dropped.saturating_sub(last.dropped));
            *last = now;
        }
        if let Ok(mut last) = self.last_ae.lock() {
            let ae = &status.anti_entropy;
            self.ae_exchanges
                .inc_by(ae.exchanges_completed.saturating_sub(last.0));
            self.ae_keys_repaired
                .inc_by(ae.keys_repaired.saturating_sub(last.1));
            *last = (ae.exchanges_completed, ae.keys_repaired);
        }
        let refused = status.peer_messages_refused;
        let last = self
            .last_refused
            .swap(refused, std::sync::atomic::Ordering::Relaxed);
        self.peer_messages_refused
            .inc_by(refused.saturating_sub(last));
        self.clock_offset_ms
            .set(status.clock.offset_ms.unwrap_or_default());
        self.clock_refusing
            .set(i64::from(status.clock.state != "ok"));
        self.hints_pending_bytes.clear();
        for t in &status.hints {
            self.hints_pending_bytes
                .get_or_create(&TargetLabels {
                    target: t.owner.to_string(),
                })
                .set(t.bytes as i64);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Counts a KV request and its latency in the metrics (both front ends call this).
pub fn record(
    metrics: &Metrics,
    op: &'static str,
    level: Option<Consistency>,
    started: Instant,
    result: &Reply,
) {
    record_many(metrics, started, [(op, Level::Of(level), result)])
}

/// Records a compare-and-set (a conditional write, or a serial read): level `serial`.
pub fn record_serial(metrics: &Metrics, op: &'static str, started: Instant, result: &Reply) {
    record_many(metrics, started, [(op, Level::Serial, result)])
}

/// The level label of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A consistency level asked for (`None`: the bucket's default).
    Of(Option<Consistency>),
    /// A compare-and-set or a serial read.
    Serial,
}

impl Level {
    fn label(self) -> String {
        match self {
            Level::Of(None) => "default".into(),
            Level::Of(Some(l)) => l.to_string(),
            Level::Serial => "serial".into(),
        }
    }
}

/// Records requests that started together (one, or a pipeline's batch): each distinct label
/// set is looked up once, not once per request (a pipelined request paid five label
/// allocations and two map lookups of its own).
pub fn record_many<'a>(
    metrics: &Metrics,
    started: Instant,
    requests: impl IntoIterator<Item = (&'static str, Level, &'a Reply)>,
) {
    let elapsed = started.elapsed().as_secs_f64();
    // (op, level, status) -> count; a batch has one or a few.
    let mut groups: Vec<((&'static str, Level, &'static str), u64)> = Vec::new();
    let mut repairs = 0u64;
    for (op, level, result) in requests {
        let status = status_of(op, result);
        match groups.iter_mut().find(|(k, _)| *k == (op, level, status)) {
            Some((_, n)) => *n += 1,
            None => groups.push(((op, level, status), 1)),
        }
        if let Ok(r) = result
            && let Some(receipt) = r.receipt()
        {
            repairs += receipt.read_repairs.len() as u64;
        }
    }
    let mut latencies: Vec<((&'static str, Level), u64)> = Vec::new();
    for ((op, level, status), n) in groups {
        metrics
            .requests
            .get_or_create(&RequestLabels {
                op: op.into(),
                level: level.label(),
                status: status.into(),
            })
            .inc_by(n);
        if status == ErrorCode::QuorumNotReached.as_str() {
            metrics
                .quorum_failures
                .get_or_create(&OpLabels { op: op.into() })
                .inc_by(n);
        }
        match latencies.iter_mut().find(|(k, _)| *k == (op, level)) {
            Some((_, m)) => *m += n,
            None => latencies.push(((op, level), n)),
        }
    }
    for ((op, level), n) in latencies {
        let histogram = metrics
            .latency
            .get_or_create(&LatencyLabels {
                op: op.into(),
                level: level.label(),
            })
            .clone();
        for _ in 0..n {
            histogram.observe(elapsed);
        }
    }
    if repairs > 0 {
        metrics.read_repairs.inc_by(repairs);
    }
}

fn status_of(op: &str, result: &Reply) -> &'static str {
    match result {
        Ok(ClientResponse::Read { siblings, .. }) if siblings.is_empty() => "not_found",
        Ok(ClientResponse::Read { siblings, .. }) if siblings.len() > 1 => "siblings",
        Ok(ClientResponse::Cas { siblings, .. }) if op == "get" && siblings.is_empty() => {
            "not_found"
        }
        Ok(ClientResponse::Cas { applied: false, .. }) if op != "get" => "not_applied",
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydra_core::ids::NodeId;
    use hydra_core::message::{ClientError, Receipt};
    use hydra_core::version::VersionVector;

    fn receipt(repairs: usize) -> Receipt {
        Receipt {
            coordinator: NodeId(1),
            partition: 0,
            needed: 2,
            replicas: vec![],
            read_repairs: (0..repairs as u64).map(NodeId).collect(),
            hints_stored: 0,
            elapsed_ms: 0,
        }
    }

    fn not_found(repairs: usize) -> Reply {
        Ok(ClientResponse::Read {
            context: VersionVector::default(),
            siblings: vec![],
            receipt: receipt(repairs),
            collection: None,
        })
    }

    fn written() -> Reply {
        Ok(ClientResponse::Written {
            context: VersionVector::default(),
            receipt: receipt(0),
        })
    }

    #[test]
    fn a_batch_counts_every_request_under_its_own_labels() {
        let metrics = Metrics::new();
        let started = Instant::now();
        let quorum = Err(ClientError::new(ErrorCode::QuorumNotReached, "no"));
        let (a, b, c, d) = (not_found(1), not_found(2), written(), quorum);
        record_many(
            &metrics,
            started,
            [
                ("get", Level::Of(None), &a),
                ("get", Level::Of(None), &b),
                ("put", Level::Of(Some(Consistency::All)), &c),
                ("put", Level::Serial, &d),
            ],
        );
        record(&metrics, "get", None, started, &a);
        let text = metrics.render();
        for line in [
            r#"hydra_requests_total{op="get",level="default",status="not_found"} 3"#,
            r#"hydra_requests_total{op="put",level="all",status="ok"} 1"#,
            r#"hydra_requests_total{op="put",level="serial",status="quorum_not_reached"} 1"#,
            r#"hydra_request_duration_seconds_count{op="get",level="default"} 3"#,
            r#"hydra_request_duration_seconds_count{op="put",level="all"} 1"#,
            r#"hydra_quorum_failures_total{op="put"} 1"#,
            "hydra_read_repairs_total 4",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
