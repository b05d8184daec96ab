//! The cost of anti-entropy: two replicas holding `keys` objects, of which a fraction differ,
//! run Merkle exchanges (and nothing else: no clients, no handoff) until their stores are
//! identical. Reports the bytes and messages exchanged and the simulated time it took.
//! Messages take 1 ms; each node starts an exchange every 10 ms.

use hydra_core::hlc::Hlc;
use hydra_core::ids::{NodeId, Timestamp};
use hydra_core::key::{BucketName, ObjectKey};
use hydra_core::layout::Layout;
use hydra_core::message::{Message, encode_envelope, encode_object};
use hydra_core::node::{Ctx, Input, Node, NodeConfig, Output};
use hydra_core::store::{MemStore, Store, WriteBatch};
use hydra_core::version::{Dvv, Object, Sibling, VersionVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// What one run measured.
#[derive(Clone, Debug)]
pub struct AeBenchReport {
    pub keys: usize,
    pub differing: usize,
    pub ae_bytes: u64,
    pub ae_messages: u64,
    pub repair_bytes: u64,
    pub repair_messages: u64,
    pub sim_ms: u64,
    pub converged: bool,
}

fn object(node: u64, value: &str) -> Object {
    let (d, _) = Dvv::default()
        .update(
            &VersionVector::default(),
            Sibling::value(value.as_bytes().to_vec(), "text/plain", Hlc(1)),
            NodeId(node),
        )
        .expect("one sibling");
    Object::Siblings(d)
}

/// Runs the two replicas until their stores match (or 600 simulated seconds pass).
pub fn run(keys: usize, differing: usize) -> AeBenchReport {
    let layout = Layout::uniform(2, 256).expect("valid layout");
    let bucket = BucketName::new("default").expect("valid name");
    let mut stores = [MemStore::new(), MemStore::new()];
    let every = keys.checked_div(differing).unwrap_or(usize::MAX);
    let mut diverged = 0;
    for i in 0..keys {
        let key =
            ObjectKey::new(bucket.clone(), format!("key-{i:08}").as_bytes()).expect("valid key");
        let skey = key.storage_key(layout.partition_for("default", key.key()));
        let common = encode_object(&object(1, &format!("value-{i}")));
        let mut a = WriteBatch::default();
        a.put(skey.clone(), common.clone());
        stores[0].write(a).expect("memstore");
        let mut b = WriteBatch::default();
        if every != usize::MAX && i % every == 0 && diverged < differing {
            // The second replica missed this write and holds an older, concurrent one instead.
            b.put(skey, encode_object(&object(2, &format!("other-{i}"))));
            diverged += 1;
        } else {
            b.put(skey, common);
        }
        stores[1].write(b).expect("memstore");
    }
    for s in &mut stores {
        s.sync().expect("memstore");
    }
    let mut nodes: Vec<Node> = (1..=2)
        .map(|id| {
            let mut c = NodeConfig::new(NodeId(id));
            c.anti_entropy_interval_ms = 10;
            c.gossip_interval_ms = 3_600_000;
            c.handoff_interval_ms = 0;
            Node::new(c, layout.clone())
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut report = AeBenchReport {
        keys,
        differing: diverged,
        ae_bytes: 0,
        ae_messages: 0,
        repair_bytes: 0,
        repair_messages: 0,
        sim_ms: 0,
        converged: false,
    };
    let start = 1_000_000u64;
    let mut now = start;
    // (deliver at, to, input)
    let mut queue: VecDeque<(u64, usize, Input)> = VecDeque::new();
    let mut next_check = start;
    for _ in 0..50_000_000u64 {
        // At least one full sweep (256 partitions, an exchange every 10 ms per node), so an
        // identical pair shows the cost of finding nothing.
        if now >= next_check && now - start >= 3_000 {
            next_check = now + 500;
            if stores[0].entries() == stores[1].entries() {
                report.converged = true;
                break;
            }
            if now - start > 600_000 {
                break;
            }
        }
        // The next thing to happen: a message due, or a node's deadline.
        let due_msg = queue.front().map(|(t, _, _)| *t);
        let deadlines: Vec<u64> = nodes
            .iter()
            .map(|n| n.next_deadline().map_or(u64::MAX, |t| t.0))
            .collect();
        let (t, i, input) = match due_msg {
            Some(t) if t <= deadlines[0].min(deadlines[1]) => {
                let (t, i, input) = queue.pop_front().expect("peeked");
                (t, i, input)
            }
            _ => {
                let i = if deadlines[0] <= deadlines[1] { 0 } else { 1 };
                (deadlines[i].max(now), i, Input::Tick)
            }
        };
        now = now.max(t);
        let mut ctx = Ctx {
            now: Timestamp(now),
            mono: Timestamp(now),
            store: &mut stores[i],
            rng: &mut rng,
        };
        nodes[i].handle(&mut ctx, input);
        while let Some(out) = nodes[i].poll_output() {
            match out {
                Output::Send { to, envelope } => {
                    let size = encode_envelope(&envelope).len() as u64;
                    match &envelope.message {
                        Message::Heartbeat { .. } | Message::BucketsGossip { .. } => {}
                        Message::RepairRequest { .. } => {
                            report.repair_bytes += size;
                            report.repair_messages += 1;
                        }
                        _ => {
                            report.ae_bytes += size;
                            report.ae_messages += 1;
                        }
                    }
                    let from = nodes[i].id();
                    queue.push_back((
                        now + 1,
                        (to.0 - 1) as usize,
                        Input::Message { from, envelope },
                    ));
                }
                Output::Sync { generation, .. } => {
                    let result = stores[i].sync();
                    queue.push_back((now + 1, i, Input::Synced { generation, result }));
                }
                Output::Reply { .. } | Output::HintBudgetFull { .. } => {}
            }
        }
    }
    report.sim_ms = now - start;
    report
}
