//! Log records held for their span, per logs pipeline.
//!
//! Records are queued per resource, in arrival order: once one record of a resource waits,
//! every later record of that resource queues behind it (even one that could be enriched at
//! once), so the order of records within a resource is what the source wrote. A queue's
//! head is always a record that waits for its own request ID; it leaves when the request ID
//! becomes known, when its `wait` is over, when the pipeline holds more than
//! `max_pending_items` (oldest first), or at shutdown, and takes the records behind it that
//! no longer need to wait. Every waiting record also has an entry in one deadline list;
//! since `wait` is the same for all, that list is in arrival order, so its front is both the
//! next deadline and the oldest record held.
//!
//! Acknowledgement tokens of a batch stay with its held records: a queue keeps the batch's
//! context until its last record there is released.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;

use pipeline_core::BatchContext;
use pipeline_core::attributes::hash_attributes;
use pipeline_core::proto::tonic::common::v1::InstrumentationScope;
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use pipeline_core::proto::tonic::resource::v1::Resource;
use tokio::time::Instant;

/// Why a held record leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Its request ID is known now, or it never waited (it only kept its place).
    Ready,
    /// Its `wait` is over.
    WaitExpired,
    /// The pipeline holds `max_pending_items`; it was the oldest.
    PendingFull,
    /// The processor is shutting down.
    Shutdown,
}

/// What the queues need from the table.
pub(crate) trait Resolver {
    /// Whether a waiting record's request ID is known now.
    fn known(&mut self, record: &LogRecord) -> bool;
    /// Enriches a record as it leaves and counts the outcome.
    fn release(&mut self, record: &mut LogRecord, cause: Cause);
}

/// A scope and its schema URL, shared by the held records of one `ScopeLogs`.
#[derive(Debug, PartialEq)]
pub(crate) struct ScopeShell {
    pub(crate) scope: Option<InstrumentationScope>,
    pub(crate) schema_url: String,
}

/// A resource's records on their way into a queue.
pub(crate) struct Group {
    pub(crate) resource: Option<Resource>,
    pub(crate) schema_url: String,
    /// (scope, record, whether it waits for its own request ID).
    pub(crate) records: Vec<(Arc<ScopeShell>, LogRecord, bool)>,
}

struct Held {
    seq: u64,
    scope: Arc<ScopeShell>,
    record: LogRecord,
    waits: bool,
    deadline: Instant,
}

struct Queue {
    resource: Option<Resource>,
    schema_url: String,
    hash: u64,
    items: VecDeque<Held>,
    /// Per batch with records here, in order: the sequence numbers of its first and last
    /// record here and a copy of its context (acknowledgement handles). Each release that
    /// takes some of a batch's records carries a clone of its handles; the one that takes
    /// its last record carries this copy.
    acks: VecDeque<(u64, u64, BatchContext)>,
}

/// Records released together, ready to be sent.
#[derive(Default)]
pub(crate) struct Released {
    pub(crate) logs: Vec<ResourceLogs>,
    pub(crate) ctx: BatchContext,
    pub(crate) count: usize,
}

impl Released {
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends `other` after these records.
    pub(crate) fn extend(&mut self, other: Released) {
        self.logs.extend(other.logs);
        self.ctx.merge(other.ctx);
        self.count += other.count;
    }
}

/// The held records of one logs pipeline.
pub(crate) struct Pending {
    queues: HashMap<u64, Queue>,
    /// Resource hash -> queue IDs with that hash (more than one only on a collision).
    by_resource: HashMap<u64, Vec<u64>>,
    /// (sequence number, queue ID, deadline) of every waiting record, in arrival order;
    /// entries of records already released are skipped when met.
    deadlines: VecDeque<(u64, u64, Instant)>,
    hasher: RandomState,
    next_queue: u64,
    next_seq: u64,
    held: usize,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            queues: HashMap::new(),
            by_resource: HashMap::new(),
            deadlines: VecDeque::new(),
            hasher: RandomState::new(),
            next_queue: 0,
            next_seq: 0,
            held: 0,
        }
    }
}

impl Pending {
    /// Records held.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    fn resource_hash(&self, resource: Option<&Resource>, schema_url: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        if let Some(r) = resource {
            hash_attributes(&r.attributes, &mut h);
            h.write_u32(r.dropped_attributes_count);
        }
        h.write(schema_url.as_bytes());
        h.finish()
    }

    fn find_queue(&self, hash: u64, resource: Option<&Resource>, schema_url: &str) -> Option<u64> {
        self.by_resource.get(&hash)?.iter().copied().find(|q| {
            self.queues
                .get(q)
                .is_some_and(|q| q.resource.as_ref() == resource && q.schema_url == schema_url)
        })
    }

    /// Whether records of this resource are held (then new ones must queue behind them).
    pub(crate) fn holds_resource(&self, resource: Option<&Resource>, schema_url: &str) -> bool {
        if self.queues.is_empty() {
            return false;
        }
        let hash = self.resource_hash(resource, schema_url);
        self.find_queue(hash, resource, schema_url).is_some()
    }

    /// Queues `group` behind what its resource already holds; waiting records wait until
    /// `deadline`.
    pub(crate) fn hold(&mut self, group: Group, ctx: &BatchContext, deadline: Instant) {
        if group.records.is_empty() {
            return;
        }
        let hash = self.resource_hash(group.resource.as_ref(), &group.schema_url);
        let qid = match self.find_queue(hash, group.resource.as_ref(), &group.schema_url) {
            Some(q) => q,
            None => {
                let q = self.next_queue;
                self.next_queue += 1;
                self.by_resource.entry(hash).or_default().push(q);
                self.queues.insert(
                    q,
                    Queue {
                        resource: group.resource,
                        schema_url: group.schema_url,
                        hash,
                        items: VecDeque::new(),
                        acks: VecDeque::new(),
                    },
                );
                q
            }
        };
        let Some(queue) = self.queues.get_mut(&qid) else {
            return;
        };
        let first_seq = self.next_seq;
        for (scope, record, waits) in group.records {
            let seq = self.next_seq;
            self.next_seq += 1;
            // A queue's head always waits: a record that needs no wait and would start a
            // queue is a follower of nothing, so it waits like the others would.
            let waits = waits || queue.items.is_empty();
            if waits {
                self.deadlines.push_back((seq, qid, deadline));
            }
            queue.items.push_back(Held {
                seq,
                scope,
                record,
                waits,
                deadline,
            });
            self.held += 1;
        }
        if !ctx.acks.is_empty()
            && let Some(last) = queue.items.back()
        {
            queue.acks.push_back((first_seq, last.seq, ctx.clone()));
        }
    }

    /// The next deadline of a waiting record, if any.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(seq, qid, deadline)) = self.deadlines.front() {
            if self.is_held(qid, seq) {
                return Some(deadline);
            }
            self.deadlines.pop_front();
        }
        None
    }

    fn is_held(&self, qid: u64, seq: u64) -> bool {
        self.queues
            .get(&qid)
            .and_then(|q| q.items.front())
            .is_some_and(|front| front.seq <= seq)
    }

    /// Releases what may leave now: records whose request ID became known or whose wait
    /// is over, with the records queued behind them that need not wait.
    pub(crate) fn take_ready(&mut self, r: &mut dyn Resolver, now: Instant) -> Released {
        let mut out = Released::default();
        let qids: Vec<u64> = self.queues.keys().copied().collect();
        for qid in qids {
            self.drain(qid, r, now, None, &mut out);
        }
        out
    }

    /// Releases the oldest held records until at most `limit` are held.
    pub(crate) fn take_oldest(
        &mut self,
        r: &mut dyn Resolver,
        now: Instant,
        limit: usize,
    ) -> Released {
        let mut out = Released::default();
        while self.held > limit {
            let Some((seq, qid, _)) = self.deadlines.pop_front() else {
                break;
            };
            if self.is_held(qid, seq) {
                self.drain(qid, r, now, Some((seq, Cause::PendingFull)), &mut out);
            }
        }
        out
    }

    /// Releases everything (shutdown).
    pub(crate) fn take_all(&mut self, r: &mut dyn Resolver, now: Instant) -> Released {
        let mut out = Released::default();
        let mut qids: Vec<u64> = self.queues.keys().copied().collect();
        // Oldest queue first: records leave in about the order they came.
        qids.sort_by_key(|q| {
            self.queues
                .get(q)
                .and_then(|q| q.items.front())
                .map(|h| h.seq)
        });
        for qid in qids {
            self.drain(qid, r, now, Some((u64::MAX, Cause::Shutdown)), &mut out);
        }
        self.deadlines.clear();
        out
    }

    /// Pops records off the front of queue `qid` while they may leave: followers, known
    /// request IDs, expired waits, and everything up to sequence number `force.0` (released
    /// for `force.1`).
    fn drain(
        &mut self,
        qid: u64,
        r: &mut dyn Resolver,
        now: Instant,
        force: Option<(u64, Cause)>,
        out: &mut Released,
    ) {
        let Some(queue) = self.queues.get_mut(&qid) else {
            return;
        };
        let mut released: Vec<Held> = Vec::new();
        while let Some(front) = queue.items.front_mut() {
            let cause = if !front.waits || r.known(&front.record) {
                Cause::Ready
            } else if front.deadline <= now {
                Cause::WaitExpired
            } else {
                match force {
                    Some((up_to, cause)) if front.seq <= up_to => cause,
                    _ => break,
                }
            };
            r.release(&mut front.record, cause);
            if let Some(held) = queue.items.pop_front() {
                released.push(held);
            }
        }
        let Some(last_seq) = released.last().map(|h| h.seq) else {
            return;
        };
        self.held -= released.len();
        out.count += released.len();
        while queue.acks.front().is_some_and(|(_, s, _)| *s <= last_seq) {
            if let Some((_, _, ctx)) = queue.acks.pop_front() {
                out.ctx.merge(ctx);
            }
        }
        if let Some((first, _, ctx)) = queue.acks.front()
            && *first <= last_seq
        {
            // Part of a batch leaves: this part answers for it too.
            out.ctx.merge(ctx.clone());
        }
        let emptied = queue.items.is_empty();
        let resource_logs = if emptied {
            let Some(queue) = self.queues.remove(&qid) else {
                return;
            };
            if let Some(list) = self.by_resource.get_mut(&queue.hash) {
                list.retain(|q| *q != qid);
                if list.is_empty() {
                    self.by_resource.remove(&queue.hash);
                }
            }
            for (_, _, ctx) in queue.acks {
                out.ctx.merge(ctx);
            }
            ResourceLogs {
                resource: queue.resource,
                scope_logs: Vec::new(),
                schema_url: queue.schema_url,
            }
        } else {
            ResourceLogs {
                resource: queue.resource.clone(),
                scope_logs: Vec::new(),
                schema_url: queue.schema_url.clone(),
            }
        };
        out.logs.push(with_scopes(resource_logs, released));
    }
}

/// Puts released records under their scopes, consecutive records of one scope together.
fn with_scopes(mut rl: ResourceLogs, released: Vec<Held>) -> ResourceLogs {
    let mut current: Option<Arc<ScopeShell>> = None;
    for held in released {
        let same = current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &held.scope));
        if !same || rl.scope_logs.is_empty() {
            rl.scope_logs.push(ScopeLogs {
                scope: held.scope.scope.clone(),
                log_records: Vec::new(),
                schema_url: held.scope.schema_url.clone(),
            });
            current = Some(held.scope.clone());
        }
        if let Some(last) = rl.scope_logs.last_mut() {
            last.log_records.push(held.record);
        }
    }
    rl
}
