//! A node's cores, one per shard (`node.shards`), behind the one handle the fronts and the
//! transport use.
//!
//! ```text
//!  HTTP, RESP ──request──▶ CoreHandle ── partition % shards ──▶ shard i's core (its thread,
//!                             │                                 its store in data_dir/shard-i)
//!  transport reader ─(shard named in the connection's hello)──▶ shard i's core
//! ```
//!
//! A shard is a whole `hydra-core` node: its own core thread, store, journal, clock, failure
//! detector and peers' connections, and it serves only the partitions `p % shards == i`.
//! Shard `i` of every node forms a cluster of its own (the layout is the same everywhere,
//! the shard count a cluster setting that peers check at connection), so every guarantee
//! the simulator checks of one cluster holds per shard; what is new here is routing. A
//! request with a key goes to its partition's shard, a listing to its cursor's partition's
//! shard. A truncation goes to every shard (each truncates through its own cluster's
//! quorum); a bucket change to the first shard, whose table every other shard then adopts
//! with its stamps (so concurrent changes resolve alike on every shard). A pipeline
//! is split by shard and its replies put back in order; a request for every shard is a
//! barrier in it (what came before it has its replies first, what comes after starts after).
//! With one shard (the default) the handle is a pass-through.

use crate::driver::{Reply, ShardHandle};
use hydra_core::bucket::BucketProps;
use hydra_core::ids::NodeId;
use hydra_core::key::BucketName;
use hydra_core::layout::Layout;
use hydra_core::message::{ClientRequest, ClientResponse, Envelope};
use hydra_core::node::NodeStatus;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most shards a node may run (`node.shards`); the connection hello carries the count
/// in one byte.
pub const SHARDS_MAX: usize = 64;

/// The sending side of every shard's core; cheap to clone.
#[derive(Clone)]
pub struct CoreHandle {
    shards: Arc<[ShardHandle]>,
    /// The layout whose key hash routes requests (`None` with one shard: nothing to route).
    layout: Option<Arc<Layout>>,
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// One shard: a request with a key, or a listing's page.
    One(usize),
    /// A bucket change: the first shard, then its table to the others.
    Buckets,
    /// A truncation: every shard.
    Every,
}

impl CoreHandle {
    /// The handle of a node's shards, `shards[i]` serving the partitions `p % len == i`.
    pub fn new(shards: Vec<ShardHandle>, layout: &Layout) -> CoreHandle {
        assert!(
            !shards.is_empty() && shards.len() <= SHARDS_MAX,
            "1..={SHARDS_MAX} shards"
        );
        CoreHandle {
            layout: (shards.len() > 1).then(|| Arc::new(layout.clone())),
            shards: shards.into(),
        }
    }

    /// A handle of one shard (no routing).
    pub fn single(shard: ShardHandle) -> CoreHandle {
        CoreHandle {
            shards: vec![shard].into(),
            layout: None,
        }
    }

    /// How many shards this node runs.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard serving `partition`.
    pub fn shard_of_partition(&self, partition: u32) -> usize {
        partition as usize % self.shards.len()
    }

    fn target(&self, request: &ClientRequest) -> Target {
        let Some(layout) = &self.layout else {
            return Target::One(0);
        };
        let key = match request {
            ClientRequest::Get { key, .. } => key,
            ClientRequest::Put(w) => &w.key,
            ClientRequest::Cas(c) => &c.key,
            ClientRequest::List(list) => {
                return Target::One(self.shard_of_partition(list.cursor.partition));
            }
            ClientRequest::SetBucket { .. } => return Target::Buckets,
            ClientRequest::Truncate { .. } => return Target::Every,
        };
        let p = layout.partition_for(key.bucket.as_str(), key.key());
        Target::One(self.shard_of_partition(p.0))
    }

    /// Hands a client request to the core of its shard (see [`Target`]) and waits for its
    /// reply.
    pub async fn request(&self, request: ClientRequest) -> Reply {
        match self.target(&request) {
            Target::One(i) => self.shards[i].request(request).await,
            Target::Buckets => self.set_bucket(request).await,
            Target::Every => self.truncate(request).await,
        }
    }

    /// A truncation to every shard, all queued at once, so a caller that stops waiting leaves none of them unsent. Each shard
    /// truncates through its own cluster's quorum, at a mark of its own clock: the reply is
    /// the first error, else the earliest mark (every value stamped at or before it is gone
    /// on every shard). A failure on one shard leaves the others truncated; a retry
    /// truncates everywhere.
    async fn truncate(&self, request: ClientRequest) -> Reply {
        let asked: Vec<_> = self
            .shards
            .iter()
            .map(|shard| shard.request(request.clone()))
            .collect();
        let mut first: Option<Reply> = None;
        for reply in futures_util::future::join_all(asked).await {
            first = match (first, reply) {
                (None, reply) | (Some(Ok(_)), reply @ Err(_)) => Some(reply),
                (
                    Some(Ok(ClientResponse::Truncated { mark })),
                    Ok(ClientResponse::Truncated { mark: other }),
                ) => Some(Ok(ClientResponse::Truncated {
                    mark: mark.min(other),
                })),
                (kept, _) => kept,
            };
        }
        first.unwrap_or_else(|| Err(unreachable_reply("no shard")))
    }

    /// A bucket change: made by the first shard alone (stamped by its clock, gossiped in its
    /// cluster), whose table the other shards then adopt with its stamps, so that
    /// concurrent changes through several nodes resolve alike on every shard (each shard
    /// stamping its own copy could pick different winners). The reply waits for the
    /// adoption, so a write after it finds the bucket on every shard of this node; the
    /// other nodes' shards learn it from their own first shard ([`CoreHandle::follow_buckets`])
    /// or from their cluster's gossip.
    async fn set_bucket(&self, request: ClientRequest) -> Reply {
        let reply = self.shards[0].request(request).await?;
        if self.adopt_buckets().await != Some(true) {
            return Err(unreachable_reply(
                "the bucket change was made by the first shard, but another shard did not take it; it follows within a second",
            ));
        }
        Ok(reply)
    }

    /// Hands the first shard's bucket table to every other shard: whether every shard took
    /// it, `None` if the first shard did not answer.
    async fn adopt_buckets(&self) -> Option<bool> {
        let entries = self.shards[0].bucket_entries().await?;
        let adopted = self.shards[1..]
            .iter()
            .map(|shard| shard.adopt_buckets(entries.clone()));
        let answers = futures_util::future::join_all(adopted).await;
        Some(answers.iter().all(Option::is_some))
    }

    /// With several shards, keeps every shard's bucket table following the first shard's,
    /// every `interval` (bucket changes made elsewhere reach this node's first shard by its
    /// cluster's gossip); returns when the first shard stops answering.
    pub async fn follow_buckets(self, interval: std::time::Duration) {
        if self.shards.len() < 2 {
            return;
        }
        loop {
            tokio::time::sleep(interval).await;
            if self.adopt_buckets().await.is_none() {
                return;
            }
        }
    }

    /// Hands a connection's pipeline to the cores and waits for all their replies, in
    /// order (see [`ShardHandle::request_batch`]): with several shards, each shard's
    /// requests go as one batch, all shards at once; a bucket change or truncation waits for
    /// the requests before it and runs before those after it.
    pub async fn request_batch(&self, requests: Vec<ClientRequest>) -> Vec<Reply> {
        if self.shards.len() == 1 {
            return self.shards[0].request_batch(requests).await;
        }
        let targets: Vec<Target> = requests.iter().map(|r| self.target(r)).collect();
        if let Some(Target::One(i)) = targets.first().copied()
            && targets.iter().all(|t| *t == Target::One(i))
        {
            return self.shards[i].request_batch(requests).await;
        }
        let n = requests.len();
        let mut replies: Vec<Option<Reply>> = (0..n).map(|_| None).collect();
        let mut segment: Vec<Vec<(usize, ClientRequest)>> =
            (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (at, (request, target)) in requests.into_iter().zip(targets).enumerate() {
            match target {
                Target::One(i) => segment[i].push((at, request)),
                Target::Buckets | Target::Every => {
                    self.run_segment(&mut segment, &mut replies).await;
                    replies[at] = Some(self.request(request).await);
                }
            }
        }
        self.run_segment(&mut segment, &mut replies).await;
        replies
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(unreachable_reply("a request without a reply"))))
            .collect()
    }

    /// Sends each shard its part of a pipeline segment, at once, and files the replies.
    async fn run_segment(
        &self,
        segment: &mut [Vec<(usize, ClientRequest)>],
        replies: &mut [Option<Reply>],
    ) {
        let mut parts = Vec::new();
        for (i, part) in segment.iter_mut().enumerate() {
            if part.is_empty() {
                continue;
            }
            let (at, requests): (Vec<usize>, Vec<ClientRequest>) =
                std::mem::take(part).into_iter().unzip();
            let shard = &self.shards[i];
            parts.push(async move { (at, shard.request_batch(requests).await) });
        }
        for (at, got) in futures_util::future::join_all(parts).await {
            for (at, reply) in at.into_iter().zip(got) {
                replies[at] = Some(reply);
            }
        }
    }

    /// Delivers an internode message to one shard's core (the shard the peer's connection
    /// named); false if it was dropped.
    pub fn deliver(&self, shard: usize, from: NodeId, envelope: Envelope) -> bool {
        match self.shards.get(shard) {
            Some(s) => s.deliver(from, envelope),
            None => false,
        }
    }

    /// The node's status: the first shard's, with the counts of every shard added up (see
    /// [`merge_status`]); the bucket table is the first shard's (it takes every bucket change
    /// and the others follow it).
    pub async fn status(&self) -> Option<(NodeStatus, BTreeMap<BucketName, BucketProps>)> {
        let (mut status, buckets) = self.shards[0].status().await?;
        // Each shard exchanges every partition's tree (those of other shards are empty):
        // keep each partition's record from the shard that serves it.
        status
            .anti_entropy
            .partitions
            .retain(|p, _| self.shard_of_partition(*p) == 0);
        for (i, shard) in self.shards.iter().enumerate().skip(1) {
            let (mut other, _) = shard.status().await?;
            other
                .anti_entropy
                .partitions
                .retain(|p, _| self.shard_of_partition(*p) == i);
            merge_status(&mut status, other);
        }
        Some((status, buckets))
    }

    /// Pauses or resumes hinted handoff on every shard; `None` if one did not answer.
    pub async fn set_handoff(&self, enabled: bool) -> Option<()> {
        for shard in self.shards.iter() {
            shard.set_handoff(enabled).await?;
        }
        Some(())
    }

    /// Pauses or resumes anti-entropy on every shard; `None` if one did not answer.
    pub async fn set_anti_entropy(&self, enabled: bool) -> Option<()> {
        for shard in self.shards.iter() {
            shard.set_anti_entropy(enabled).await?;
        }
        Some(())
    }

    pub fn shutdown(&self) {
        for shard in self.shards.iter() {
            shard.shutdown();
        }
    }

    /// A one-shard handle whose events land in the returned receiver (tests count what
    /// reaches the core).
    #[cfg(test)]
    pub(crate) fn probe() -> (
        CoreHandle,
        std::sync::mpsc::Receiver<crate::driver::CoreEvent>,
    ) {
        let (shard, rx) = ShardHandle::probe();
        (CoreHandle::single(shard), rx)
    }

    /// A handle whose core is gone: every request fails as overloaded.
    #[cfg(test)]
    pub(crate) fn detached() -> CoreHandle {
        CoreHandle::single(ShardHandle::detached())
    }
}

fn unreachable_reply(what: &str) -> hydra_core::message::ClientError {
    hydra_core::message::ClientError::new(
        hydra_core::message::ErrorCode::StoreFailed,
        format!("internal: {what}"),
    )
}

/// Adds another shard's counts to a node status: requests in flight, objects, hints held
/// (by owner), counters of handoff, anti-entropy, reaping, expiry, Paxos repair and refused
/// peer messages. The clock is the first shard's, or the first one not `ok`; the peers and
/// layout are the first shard's (each shard has its own failure detector: a peer whose first
/// shard answers is reported up).
pub fn merge_status(into: &mut NodeStatus, other: NodeStatus) {
    into.in_flight += other.in_flight;
    // A shard whose clock is not usable refuses writes: its state is the node's.
    if into.clock.state == "ok" && other.clock.state != "ok" {
        into.clock = other.clock;
    }
    if into.store_poisoned.is_none() {
        into.store_poisoned = other.store_poisoned;
    }
    for h in other.hints {
        match into.hints.iter_mut().find(|t| t.owner == h.owner) {
            Some(t) => {
                t.count += h.count;
                t.bytes += h.bytes;
            }
            None => into.hints.push(h),
        }
    }
    into.hint_counters.stored += other.hint_counters.stored;
    into.hint_counters.delivered += other.hint_counters.delivered;
    into.hint_counters.dropped += other.hint_counters.dropped;
    into.dirty_partitions += other.dirty_partitions;
    let ae = &mut into.anti_entropy;
    ae.exchanges_completed += other.anti_entropy.exchanges_completed;
    ae.exchanges_failed += other.anti_entropy.exchanges_failed;
    ae.keys_repaired += other.anti_entropy.keys_repaired;
    ae.partitions.extend(other.anti_entropy.partitions);
    into.objects += other.objects;
    into.tombstones_reaped += other.tombstones_reaped;
    into.expired_deleted += other.expired_deleted;
    into.tombstones_reissued += other.tombstones_reissued;
    into.reaps_pending += other.reaps_pending;
    for conflict in other.bucket_conflicts {
        if !into.bucket_conflicts.contains(&conflict) {
            into.bucket_conflicts.push(conflict);
        }
    }
    let pr = &mut into.paxos_repair;
    pr.rounds += other.paxos_repair.rounds;
    pr.rounds_failed += other.paxos_repair.rounds_failed;
    pr.keys_repaired += other.paxos_repair.keys_repaired;
    pr.states_collected += other.paxos_repair.states_collected;
    into.handoff_enabled &= other.handoff_enabled;
    into.anti_entropy_enabled &= other.anti_entropy_enabled;
    into.peer_messages_refused += other.peer_messages_refused;
    if into.peer_refusal.is_none() {
        into.peer_refusal = other.peer_refusal;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::CoreEvent;
    use hydra_core::key::ObjectKey;
    use hydra_core::message::{ClientError, ErrorCode};
    use std::sync::Mutex;

    fn get(key: &str) -> ClientRequest {
        ClientRequest::Get {
            key: ObjectKey::new(BucketName::new("b").expect("bucket"), key.as_bytes())
                .expect("key"),
            r: None,
            timeout_ms: None,
            sloppy: None,
        }
    }

    fn truncate() -> ClientRequest {
        ClientRequest::Truncate {
            bucket: BucketName::new("b").expect("bucket"),
            timeout_ms: None,
        }
    }

    /// What a request is, in a shard's log and its reply.
    fn name(request: &ClientRequest) -> String {
        match request.key() {
            Some(k) => String::from_utf8_lossy(k.key()).into_owned(),
            None => "truncate".into(),
        }
    }

    /// Two shards whose cores answer every request with an error naming the shard and the
    /// request, and log what they were handed, in order.
    fn two_shards() -> (CoreHandle, Layout, Arc<Mutex<Vec<Vec<String>>>>) {
        let layout = crate::config::Config::default().layout().expect("layout");
        let log = Arc::new(Mutex::new(vec![Vec::new(), Vec::new()]));
        let mut shards = Vec::new();
        for i in 0..2 {
            let (shard, events) = ShardHandle::probe();
            shards.push(shard);
            let log = log.clone();
            std::thread::spawn(move || {
                let answer = |r: &ClientRequest| -> Reply {
                    log.lock().expect("log")[i].push(name(r));
                    Err(ClientError::new(
                        ErrorCode::Overloaded,
                        format!("{i}:{}", name(r)),
                    ))
                };
                while let Ok(event) = events.recv() {
                    match event {
                        CoreEvent::Client { request, reply } => {
                            let _ = reply.send(answer(&request));
                        }
                        CoreEvent::Batch { requests, reply } => {
                            let _ = reply.send(requests.iter().map(answer).collect());
                        }
                        _ => {}
                    }
                }
            });
        }
        (CoreHandle::new(shards, &layout), layout, log)
    }

    #[test]
    fn requests_go_to_their_partitions_shard_and_administration_to_every_shard() {
        let (core, layout, _) = two_shards();
        let mut seen = [0; 2];
        for i in 0..64 {
            let key = format!("k{i}");
            let p = layout.partition_for("b", key.as_bytes());
            let Target::One(shard) = core.target(&get(&key)) else {
                panic!("a keyed request goes to one shard");
            };
            assert_eq!(shard, p.0 as usize % 2);
            seen[shard] += 1;
        }
        assert!(
            seen[0] > 0 && seen[1] > 0,
            "keys fall in both shards: {seen:?}"
        );
        assert_eq!(core.target(&truncate()), Target::Every);
        let bucket = ClientRequest::SetBucket {
            name: BucketName::new("b").expect("bucket"),
            props: BucketProps::default(),
        };
        assert_eq!(core.target(&bucket), Target::Buckets);
    }

    #[test]
    fn a_pipeline_across_shards_answers_in_order_around_a_barrier() {
        let (core, _, log) = two_shards();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut requests: Vec<ClientRequest> = (0..10).map(|i| get(&format!("a{i}"))).collect();
        requests.push(truncate());
        requests.extend((0..10).map(|i| get(&format!("z{i}"))));
        let names: Vec<String> = requests.iter().map(name).collect();
        let replies = rt.block_on(core.request_batch(requests));
        // In order: each reply names its request (a barrier's is the first shard's).
        let got: Vec<String> = replies
            .iter()
            .map(|r| {
                let e = r.as_ref().expect_err("the probe answers with errors");
                e.message.split_once(':').expect("shard:name").1.to_string()
            })
            .collect();
        assert_eq!(got, names);
        // Every shard saw the truncate after the requests before it and before those after.
        for shard in log.lock().expect("log").iter() {
            let at = shard
                .iter()
                .position(|n| n == "truncate")
                .expect("every shard gets the truncate");
            assert!(shard[..at].iter().all(|n| n.starts_with('a')), "{shard:?}");
            assert!(
                shard[at + 1..].iter().all(|n| n.starts_with('z')),
                "{shard:?}"
            );
        }
    }
}
