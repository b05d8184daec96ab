//! Client requests at the edge of the core: each is validated once, here, against the limits
//! and the bucket, then routed to the part that coordinates it.
//!
//! ```text
//! Get ─▶ reads (any node coordinates)
//! Put/Delete ─▶ writes (this node is a replica of the key)
//!            └▶ forwards (it is not: one replica coordinates; a forwarded write that lands
//!               on a non-replica is refused, never forwarded again)
//! SetBucket ─▶ buckets
//! ```

use crate::bucket::{BucketProps, CasMode, ConflictMode, Consistency};
use crate::collection::CollectionUpdate;
use crate::ids::{NodeId, PAXOS_WRITER_BIT, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{
    CONTENT_TYPE_BYTES_MAX, CONTEXT_COUNTER_MAX, ELEMENT_BYTES_MAX, TIMEOUT_MS_MAX, TTL_SECS_MAX,
    UPDATE_ELEMENTS_MAX,
};
use crate::message::{CasAction, ClientError, ClientRequest, ErrorCode, Expiry, VersionOp};
use crate::paxos::Condition;
use crate::version::VersionVector;

use super::local::Local;

/// What validation found: the key, its bucket's properties, the timeout and the level.
pub(crate) struct Valid {
    pub(crate) key: ObjectKey,
    pub(crate) props: BucketProps,
    pub(crate) timeout_ms: u64,
    pub(crate) level: Consistency,
}

impl Local {
    /// Checks a key request against the limits and the bucket.
    pub(crate) fn validate(
        &self,
        request: &ClientRequest,
        now: Timestamp,
    ) -> Result<Valid, ClientError> {
        let now = now.0;
        let key = request.key().ok_or_else(|| {
            ClientError::new(
                ErrorCode::InvalidBucket,
                "bucket changes are made on the node that receives them",
            )
        })?;
        key.validate()
            .map_err(|e| ClientError::new(ErrorCode::InvalidKey, e.to_string()))?;
        let props = self.buckets.get(&key.bucket).cloned().ok_or_else(|| {
            ClientError::new(
                ErrorCode::UnknownBucket,
                format!("bucket {:?} does not exist", key.bucket.as_str()),
            )
        })?;
        let (level, timeout_ms) = match request {
            ClientRequest::SetBucket { .. }
            | ClientRequest::List(_)
            | ClientRequest::Truncate { .. } => (props.w, None),
            ClientRequest::Get { r, timeout_ms, .. } => (r.unwrap_or(props.r), *timeout_ms),
            ClientRequest::Cas(c) => {
                if props.cas == CasMode::Off {
                    return Err(ClientError::new(
                        ErrorCode::CasNotSupported,
                        format!(
                            "bucket {:?} has cas = off: no conditional write or serial read; set its cas to conditional_only or all_writes",
                            key.bucket.as_str()
                        ),
                    ));
                }
                let max = self.config.value_bytes_max;
                match (&c.action, &c.condition) {
                    (CasAction::Write { value, .. }, _) if value.len() > max => {
                        return Err(ClientError::value_too_large(Some(value.len()), max));
                    }
                    (_, Condition::ValueIs(v)) if v.len() > max => {
                        return Err(ClientError::value_too_large(Some(v.len()), max));
                    }
                    (CasAction::Read, c) if *c != Condition::Always => {
                        return Err(ClientError::new(
                            ErrorCode::InvalidQuery,
                            "a serial read takes no condition",
                        ));
                    }
                    _ => {}
                }
                if let CasAction::Write {
                    content_type,
                    expiry,
                    ..
                } = &c.action
                {
                    check_content_type(content_type)?;
                    check_expiry(*expiry, now)?;
                }
                if let Condition::VersionIs(v) = &c.condition {
                    self.check_context(v)?;
                }
                match (&c.action, &c.condition) {
                    (CasAction::Collection(update), condition) => {
                        self.check_collection_update(key, &props, false, update, now)?;
                        if let Condition::Elements(elements) = condition {
                            let named = CollectionUpdate {
                                kind: update.kind,
                                removes: elements.clone(),
                                ..Default::default()
                            };
                            self.check_collection_update(key, &props, false, &named, now)?;
                        } else if *condition != Condition::Always {
                            return Err(ClientError::new(
                                ErrorCode::InvalidQuery,
                                "a hash or set update through compare-and-set takes a condition on its elements, or none",
                            ));
                        }
                    }
                    (_, Condition::Elements(_)) => {
                        return Err(ClientError::new(
                            ErrorCode::InvalidQuery,
                            "a condition on a hash's or set's elements goes with an update of them",
                        ));
                    }
                    _ => {}
                }
                (Consistency::Quorum, c.timeout_ms)
            }
            ClientRequest::Put(w) => {
                if let Some(v) = &w.value
                    && v.len() > self.config.value_bytes_max
                {
                    return Err(ClientError::value_too_large(
                        Some(v.len()),
                        self.config.value_bytes_max,
                    ));
                }
                check_content_type(&w.content_type)?;
                if let Some(ctx) = &w.context {
                    self.check_context(ctx)?;
                }
                // A version delete in a `siblings` bucket is a delete with the read's context
                // (which supersedes exactly what the read saw): nothing to check.
                let bound = w
                    .on_version
                    .filter(|op| props.conflicts == ConflictMode::Lww || *op != VersionOp::Delete);
                if let Some(op) = bound {
                    let why = if props.conflicts != ConflictMode::Lww {
                        Some(format!(
                            "a write bound to the version read needs an lww bucket; {:?} keeps siblings",
                            key.bucket.as_str()
                        ))
                    } else if w.context.as_ref().map_or(0, |c| c.0.len()) != 1 {
                        Some("a write bound to the version read needs the context of that read (one entry)".into())
                    } else if (op == VersionOp::Touch) != w.value.is_some() {
                        Some(
                            "a TTL change carries the value read; a version delete carries none"
                                .into(),
                        )
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        return Err(ClientError::new(ErrorCode::InvalidContext, why));
                    }
                }
                check_expiry(w.expiry, now)?;
                if let Some(update) = &w.collection {
                    self.check_collection_update(key, &props, w.value.is_some(), update, now)?;
                }
                (w.w.unwrap_or(props.w), w.timeout_ms)
            }
        };
        level
            .required(props.n)
            .map_err(|e| ClientError::new(ErrorCode::InvalidConsistency, e.to_string()))?;
        let timeout_ms = timeout_ms.unwrap_or(self.config.request_timeout_ms);
        if timeout_ms == 0 || timeout_ms > TIMEOUT_MS_MAX {
            return Err(ClientError::new(
                ErrorCode::InvalidTimeout,
                format!("timeout of {timeout_ms} ms is out of range 1..={TIMEOUT_MS_MAX}"),
            ));
        }
        Ok(Valid {
            key: key.clone(),
            props,
            timeout_ms,
            level,
        })
    }

    /// A hash or set update: in a bucket that keeps them, within the limits, naming dots of
    /// this cluster.
    fn check_collection_update(
        &self,
        key: &ObjectKey,
        props: &BucketProps,
        has_value: bool,
        update: &CollectionUpdate,
        now: u64,
    ) -> Result<(), ClientError> {
        let bucket = key.bucket.as_str();
        if props.conflicts != ConflictMode::Lww {
            return Err(ClientError::new(
                ErrorCode::WrongType,
                format!("hashes and sets live in lww buckets; {bucket:?} keeps siblings"),
            ));
        }
        if props.cas == CasMode::AllWrites {
            return Err(ClientError::new(
                ErrorCode::WrongType,
                format!(
                    "hashes and sets do not go through compare-and-set; {bucket:?} has cas = all_writes"
                ),
            ));
        }
        if has_value {
            return Err(ClientError::new(
                ErrorCode::InvalidQuery,
                "a hash or set update carries no value of its own",
            ));
        }
        let elements = update.removes.len() + update.adds.len();
        if elements > UPDATE_ELEMENTS_MAX {
            return Err(ClientError::new(
                ErrorCode::ValueTooLarge,
                format!(
                    "the update names {elements} elements, more than the limit of {UPDATE_ELEMENTS_MAX}"
                ),
            ));
        }
        let names = update
            .removes
            .iter()
            .map(|(e, _)| e)
            .chain(update.adds.iter().map(|(e, _)| e));
        if let Some(e) = names.clone().find(|e| e.len() > ELEMENT_BYTES_MAX) {
            return Err(ClientError::new(
                ErrorCode::ValueTooLarge,
                format!(
                    "a field or member of {} bytes, more than the limit of {ELEMENT_BYTES_MAX}",
                    e.len()
                ),
            ));
        }
        let max = self.config.value_bytes_max;
        if let Some((_, v)) = update.adds.iter().find(|(_, v)| v.len() > max) {
            return Err(ClientError::value_too_large(Some(v.len()), max));
        }
        let dots = update.observed().count();
        if dots > UPDATE_ELEMENTS_MAX * crate::limits::REPLICATION_FACTOR_MAX as usize {
            return Err(ClientError::new(
                ErrorCode::InvalidContext,
                format!("the update names {dots} dots, more than a read can show"),
            ));
        }
        // Dots may name nodes no longer members (their adds must stay removable); their
        // stamps must leave room to count.
        if let Some(d) = update.observed().find(|d| d.counter > CONTEXT_COUNTER_MAX) {
            return Err(ClientError::new(
                ErrorCode::InvalidContext,
                format!(
                    "the update names node {} with stamp {}; it is not from this cluster",
                    d.node, d.counter
                ),
            ));
        }
        check_expiry(update.expiry.flatten(), now)
    }

    /// A context is client input that becomes part of stored version vectors: its entries
    /// must name members (or their Paxos writers) and leave room to count.
    fn check_context(&self, ctx: &VersionVector) -> Result<(), ClientError> {
        let member = |n: NodeId| self.layout.contains(NodeId(n.0 & !PAXOS_WRITER_BIT));
        match ctx
            .0
            .iter()
            .find(|(n, c)| !member(**n) || **c > CONTEXT_COUNTER_MAX)
        {
            Some((n, c)) => Err(ClientError::new(
                ErrorCode::InvalidContext,
                format!("context names node {n} with counter {c}; it is not from this cluster"),
            )),
            None => Ok(()),
        }
    }
}

fn check_content_type(content_type: &str) -> Result<(), ClientError> {
    if content_type.len() > CONTENT_TYPE_BYTES_MAX {
        return Err(ClientError::new(
            ErrorCode::InvalidContentType,
            format!(
                "content type is {} bytes, more than the limit of {CONTENT_TYPE_BYTES_MAX}",
                content_type.len()
            ),
        ));
    }
    Ok(())
}

/// A TTL is 1 ms to [`TTL_SECS_MAX`]; an absolute time any time before `now_ms` plus that
/// (a time already past writes the value expired).
fn check_expiry(expiry: Option<Expiry>, now_ms: u64) -> Result<(), ClientError> {
    let max_ms = TTL_SECS_MAX * 1000;
    match expiry {
        Some(Expiry::AfterMs(t)) if !(1..=max_ms).contains(&t) => Err(ClientError::new(
            ErrorCode::InvalidTtl,
            format!("ttl of {t} ms is out of range 1..={max_ms} ms ({TTL_SECS_MAX} s)"),
        )),
        Some(Expiry::AtMs(at)) if at > now_ms.saturating_add(max_ms) => Err(ClientError::new(
            ErrorCode::InvalidTtl,
            format!(
                "expiry time {at} ms (Unix) is more than {TTL_SECS_MAX} s after this node's clock ({now_ms} ms)"
            ),
        )),
        _ => Ok(()),
    }
}
