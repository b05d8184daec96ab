//! The pipeline fast path: a connection's pipelined `GET`s and `SET`s on distinct keys go to
//! the core as one event ([`CoreHandle::request_batch`](crate::driver::CoreHandle)), so a
//! pipeline of N commands pays one queue slot, one wakeup of the core thread, one turn of
//! the core (whose frames to each peer leave together and whose writes share one fsync)
//! and one wakeup of the connection, not N of each. A command on a key already in the
//! group, or any other command, first sends the group, so one connection's commands still
//! take effect in the order sent.

use super::{
    Connection, Flow, KEYS_IN_FLIGHT_MAX, Label, OUT_FLUSH_BYTES, collections, error_value,
    refused_for_cas, take_newest,
};
use crate::driver::Reply;
use crate::metrics::record_many;
use hydra_core::key::ObjectKey;
use hydra_core::message::{ClientRequest, ClientResponse, WriteRequest};
use hydra_resp::{Command, Value};
use std::time::Instant;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A command that goes to the core on its own key and may be sent together with others.
pub(super) enum Fast {
    Get(ObjectKey),
    Set(ObjectKey, Vec<u8>),
}

impl Connection {
    /// Runs commands in order, sending runs of fast commands on distinct keys together.
    /// Replies go to `out`, which is written to `stream` whenever it grows large.
    pub(super) async fn run_batch(
        &mut self,
        commands: Vec<Command>,
        out: &mut Vec<u8>,
        stream: &mut (impl AsyncWrite + Unpin),
    ) -> std::io::Result<Flow> {
        let mut group: Vec<Fast> = Vec::new();
        for cmd in commands {
            if out.len() > OUT_FLUSH_BYTES {
                stream.write_all(out).await?;
                out.clear();
            }
            match self.fast(cmd) {
                Ok(f) => {
                    let key = match &f {
                        Fast::Get(k) | Fast::Set(k, _) => k,
                    };
                    if group.iter().any(|g| match g {
                        Fast::Get(k) | Fast::Set(k, _) => k == key,
                    }) {
                        self.flush_group(&mut group, out).await;
                    }
                    group.push(f);
                }
                Err(cmd) => {
                    self.flush_group(&mut group, out).await;
                    let (reply, flow) = self.execute(cmd).await;
                    reply.encode(self.protocol, out);
                    if let Flow::Close = flow {
                        return Ok(Flow::Close);
                    }
                }
            }
        }
        self.flush_group(&mut group, out).await;
        Ok(Flow::Continue)
    }

    /// A plain `GET key` or `SET key value` with valid arguments, which can share a round
    /// (the value moves, not copied); anything else comes back as it was.
    fn fast(&self, mut cmd: Command) -> Result<Fast, Command> {
        let is = |name: &[u8], len: usize| cmd.len() == len && cmd[0].eq_ignore_ascii_case(name);
        let (get, set) = (is(b"get", 2), is(b"set", 3));
        // The fast path skips `execute`, so it checks the user's scope itself: a user who
        // may not, gets `execute`'s `-NOPERM`.
        let bucket = self.bucket.as_str();
        let allowed = self.principal.as_ref().is_some_and(|p| {
            if get {
                p.may_read(bucket)
            } else {
                p.may_write(bucket)
            }
        });
        if (!get && !set) || !allowed || self.multi.is_some() {
            return Err(cmd);
        }
        let Ok(key) = self.key(&cmd[1]) else {
            return Err(cmd);
        };
        if get {
            return Ok(Fast::Get(key));
        }
        let value = cmd.pop().unwrap_or_default();
        Ok(Fast::Set(key, value))
    }

    async fn flush_group(&mut self, group: &mut Vec<Fast>, out: &mut Vec<u8>) {
        if group.is_empty() {
            return;
        }
        let requests: Vec<ClientRequest> = group
            .drain(..)
            .map(|f| match f {
                Fast::Get(key) => self.get_request(key),
                Fast::Set(key, value) => self.put_request(key, Some(value), None, None),
            })
            .collect();
        for result in self.call_all(requests).await {
            let reply = match result {
                Err(e) => error_value(&e),
                Ok(ClientResponse::Read {
                    collection: Some(c),
                    ..
                }) if !c.is_empty() => collections::wrong_type(),
                Ok(resp @ (ClientResponse::Read { .. } | ClientResponse::Cas { .. })) => {
                    match take_newest(resp).1 {
                        Some(s) => Value::Bulk(s.value),
                        None => Value::Null,
                    }
                }
                Ok(_) => Value::ok(),
            };
            reply.encode(self.protocol, out);
        }
    }

    /// Sends requests to the core, at most [`KEYS_IN_FLIGHT_MAX`] at a time (so one command
    /// or pipeline cannot fill the core's queue), each chunk as one event; results in order,
    /// the last receipt kept. A chunk's replies but the last carry brief receipts (see
    /// `CoreHandle::request_batch`): when the newest receipt is one of those (the last
    /// request's reply had none), the connection keeps no receipt rather than a partial one.
    pub(super) async fn call_all(&mut self, requests: Vec<ClientRequest>) -> Vec<Reply> {
        let mut results = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let chunk: Vec<ClientRequest> = requests.by_ref().take(KEYS_IN_FLIGHT_MAX).collect();
            // The chunk's replies go straight into `results` (a reply is a few hundred bytes:
            // every move of it counts on pipelines).
            let first = results.len();
            // The replies with brief receipts: the batch's but its last, unless redone.
            let mut brief = first..first;
            let mut redone: Vec<usize> = Vec::new();
            if self.overlay.is_some() {
                // A transaction's commands answer from its copy of the key, one by one.
                for request in chunk {
                    results.push(self.call(request).await.0);
                }
            } else {
                let retries: Vec<Option<WriteRequest>> =
                    chunk.iter().map(|r| self.cas_retry_of(r)).collect();
                let labels: Vec<Label> = chunk.iter().map(Label::of).collect();
                let started = Instant::now();
                let replies = self.state.core.request_batch(chunk).await;
                record_many(
                    &self.state.metrics,
                    started,
                    labels
                        .iter()
                        .zip(&replies)
                        .map(|(label, result)| (label.op, label.level(), result)),
                );
                brief = first..first + replies.len().saturating_sub(1);
                for (result, retry) in replies.into_iter().zip(retries) {
                    results.push(match retry.filter(|_| refused_for_cas(&result)) {
                        Some(w) => {
                            redone.push(results.len());
                            self.retry_through_cas(w).await
                        }
                        None => result,
                    });
                }
            }
            // Only the last receipt is kept: one copy, not one per request.
            let newest = results[first..]
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, r)| Some((first + i, self.receipt_of(r)?)));
            if let Some((at, receipt)) = newest {
                // An error's receipt is full whatever was asked.
                let partial = brief.contains(&at) && !redone.contains(&at) && results[at].is_ok();
                self.last_receipt = (!partial).then_some(receipt);
            }
            let done = &results[first..];
            for result in done {
                self.note_seen(result);
            }
        }
        results
    }
}
