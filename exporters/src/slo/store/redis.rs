//! `store: redis`: every replica adds into the same per-SLO, per-bucket counters.
//!
//! Keys: `<key_prefix>:{<slo>}:<m|h>:<bucket index>:<t|b>` (total and bad events of one minute
//! or hour bucket; the braces are a Redis Cluster hash tag, so one SLO's keys share a slot).
//! Minute keys expire 7 hours after their last write, hour keys the window plus a day after.
//!
//! Increments are added locally first ([`Pending`], bounded by `max_buffered_buckets`), and
//! written every `flush_interval` by a Lua script per SLO that applies a whole write once: it
//! first sets a write ID (`<key_prefix>:{<slo>}:write:<replica>:<sequence>`, kept a day) with
//! `NX`, and adds only if that succeeded. A write whose reply was lost (the connection broke
//! after Redis ran it) is sent again with the same ID and not added twice. While Redis is
//! unreachable, writes stay queued in order and figures are Redis' last read plus what is
//! queued; the component's health says how much is buffered.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncCommands, Client, RedisResult, Script, ScriptInvocation};

use crate::slo::config::RedisStoreConfig;
use crate::slo::increments::Increment;
use crate::slo::state::{Counts, HOUR, MINUTE, MINUTE_SLOTS, SloBuckets, Tier};

/// The write script: KEYS[1] is the write ID, then pairs of (total key, bad key); ARGV[1] the
/// ID's TTL, then triples of (TTL, total, bad).
const WRITE_SCRIPT: &str = r"
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local n = (#KEYS - 1) / 2
for i = 0, n - 1 do
  local ttl = ARGV[2 + i * 3]
  local t = KEYS[2 + i * 2]
  local b = KEYS[3 + i * 2]
  redis.call('INCRBY', t, ARGV[3 + i * 3])
  redis.call('EXPIRE', t, ttl)
  redis.call('INCRBY', b, ARGV[4 + i * 3])
  redis.call('EXPIRE', b, ttl)
end
return 1
";

/// How long a write ID is remembered.
const WRITE_ID_TTL_SECS: u64 = 86_400;

/// Buckets written in one script call at most (a long outage's queue is split).
const MAX_BUCKETS_PER_WRITE: usize = 512;

/// One SLO's increments, sealed for writing under one ID.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SealedWrite {
    slo: usize,
    seq: u64,
    entries: Vec<(Tier, i64, Counts)>,
}

/// Increments not yet in Redis: what is still being added to (`open`) and what is sealed and
/// waiting in order (`sealed`). Bounded in buckets.
#[derive(Debug)]
pub(crate) struct Pending {
    open: Vec<BTreeMap<(Tier, i64), Counts>>,
    sealed: VecDeque<SealedWrite>,
    buckets: usize,
    max: usize,
    next_seq: u64,
}

impl SealedWrite {
    /// Its sequence number.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

impl Pending {
    /// An empty buffer for `slos` SLOs holding at most `max` buckets.
    pub(crate) fn new(slos: usize, max: usize) -> Pending {
        Pending {
            open: vec![BTreeMap::new(); slos],
            sealed: VecDeque::new(),
            buckets: 0,
            max,
            next_seq: 0,
        }
    }

    /// Buckets held.
    pub(crate) fn buckets(&self) -> usize {
        self.buckets
    }

    /// Adds an increment into its minute and hour buckets. `false` (nothing added) when it
    /// needs new buckets and the buffer is full.
    pub(crate) fn add(&mut self, inc: &Increment) -> bool {
        let Some(open) = self.open.get_mut(inc.slo) else {
            return false;
        };
        let keys = [
            (Tier::Minute, (inc.time / MINUTE) as i64),
            (Tier::Hour, (inc.time / HOUR) as i64),
        ];
        let new = keys.iter().filter(|k| !open.contains_key(k)).count();
        if self.buckets + new > self.max {
            return false;
        }
        for k in keys {
            open.entry(k).or_default().add(inc.counts);
        }
        self.buckets += new;
        true
    }

    /// Moves every SLO's open increments into sealed writes.
    pub(crate) fn seal(&mut self) {
        for (slo, open) in self.open.iter_mut().enumerate() {
            if open.is_empty() {
                continue;
            }
            let entries: Vec<_> = std::mem::take(open)
                .into_iter()
                .map(|((tier, idx), c)| (tier, idx, c))
                .collect();
            for chunk in entries.chunks(MAX_BUCKETS_PER_WRITE) {
                self.sealed.push_back(SealedWrite {
                    slo,
                    seq: self.next_seq,
                    entries: chunk.to_vec(),
                });
                self.next_seq += 1;
            }
        }
    }

    /// The oldest sealed write.
    pub(crate) fn front(&self) -> Option<SealedWrite> {
        self.sealed.front().cloned()
    }

    /// Removes the oldest sealed write once Redis has it.
    pub(crate) fn written(&mut self, seq: u64) {
        if self.sealed.front().is_some_and(|w| w.seq == seq)
            && let Some(w) = self.sealed.pop_front()
        {
            self.buckets = self.buckets.saturating_sub(w.entries.len());
        }
    }

    /// Adds everything held into `view` (Redis' last read), so figures include it.
    pub(crate) fn overlay(&self, view: &mut [SloBuckets]) {
        let sealed = self
            .sealed
            .iter()
            .flat_map(|w| w.entries.iter().map(move |e| (w.slo, *e)));
        let open = self
            .open
            .iter()
            .enumerate()
            .flat_map(|(slo, m)| m.iter().map(move |((t, i), c)| (slo, (*t, *i, *c))));
        for (slo, (tier, idx, c)) in sealed.chain(open) {
            if let Some(b) = view.get_mut(slo) {
                b.ring_mut(tier).add(idx, c);
            }
        }
    }
}

/// How Redis is reached: one server (or a proxy), or a Redis Cluster.
enum Connection {
    /// `redis://`: a connection manager that reconnects by itself.
    Single(ConnectionManager),
    /// `redis+cluster://`: connected on first use (the cluster may be down at start), then
    /// the cluster connection follows slots and reconnects by itself.
    Cluster(Box<ClusterLink>),
}

/// A Redis Cluster client and its connection, once made.
struct ClusterLink {
    client: ClusterClient,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

/// A connection of either kind, for one command.
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn invoke(&mut self, inv: &ScriptInvocation<'_>) -> RedisResult<i64> {
        match self {
            Conn::Single(c) => inv.invoke_async(c).await,
            Conn::Cluster(c) => inv.invoke_async(c).await,
        }
    }

    async fn mget(&mut self, keys: &[String]) -> RedisResult<Vec<Option<i64>>> {
        match self {
            Conn::Single(c) => c.mget(keys).await,
            Conn::Cluster(c) => c.mget(keys).await,
        }
    }
}

/// The node URLs of a `redis+cluster://[user:password@]host:port,host:port` URL, or `None`
/// for a single-server URL.
pub(crate) fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let rest = url.strip_prefix("redis+cluster://")?;
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), rest),
    };
    Some(
        hosts
            .trim_end_matches('/')
            .split(',')
            .filter(|h| !h.trim().is_empty())
            .map(|h| format!("redis://{auth}{}", h.trim()))
            .collect(),
    )
}

/// The Redis side: connection, key names, the write script and the read-back.
pub(crate) struct RedisBackend {
    conn: Connection,
    prefix: String,
    replica: String,
    script: Script,
    timeout: Duration,
}

impl RedisBackend {
    /// A backend for `config`; connects lazily (Redis may be down at start).
    pub(crate) fn new(config: &RedisStoreConfig) -> Result<RedisBackend, String> {
        let timeout = config.timeout.get();
        let conn = match cluster_nodes(&config.url) {
            Some(nodes) => Connection::Cluster(Box::new(ClusterLink {
                client: ClusterClient::builder(nodes)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(1)
                    .build()
                    .map_err(|e| e.to_string())?,
                conn: tokio::sync::Mutex::new(None),
            })),
            None => {
                let client = Client::open(config.url.as_str()).map_err(|e| e.to_string())?;
                let manager_config = ::redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                Connection::Single(
                    ConnectionManager::new_lazy_with_config(client, manager_config)
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        Ok(RedisBackend {
            conn,
            prefix: config.key_prefix.clone(),
            replica: replica_id(),
            script: Script::new(WRITE_SCRIPT),
            timeout,
        })
    }

    /// A connection for one command (connecting to the cluster first if need be).
    async fn connection(&self) -> Result<Conn, String> {
        match &self.conn {
            Connection::Single(c) => Ok(Conn::Single(c.clone())),
            Connection::Cluster(link) => {
                let ClusterLink { client, conn } = link.as_ref();
                let mut guard = conn.lock().await;
                if let Some(c) = guard.as_ref() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let c = tokio::time::timeout(self.timeout, client.get_async_connection())
                    .await
                    .map_err(|_| "timed out connecting to the cluster".to_string())?
                    .map_err(|e| e.to_string())?;
                *guard = Some(c.clone());
                Ok(Conn::Cluster(c))
            }
        }
    }

    fn key(&self, slo: &str, tier: Tier, idx: i64, field: &str) -> String {
        format!("{}:{{{slo}}}:{}:{idx}:{field}", self.prefix, tier.key())
    }

    /// Writes one sealed write. `windows` is each SLO's window in seconds.
    pub(crate) async fn write(
        &self,
        names: &[String],
        windows: &[u64],
        w: &SealedWrite,
    ) -> Result<(), String> {
        let (Some(name), Some(window)) = (names.get(w.slo), windows.get(w.slo)) else {
            return Ok(());
        };
        let mut inv = self.script.prepare_invoke();
        inv.key(format!(
            "{}:{{{name}}}:write:{}:{}",
            self.prefix, self.replica, w.seq
        ))
        .arg(WRITE_ID_TTL_SECS);
        for (tier, idx, c) in &w.entries {
            let ttl = match tier {
                Tier::Minute => MINUTE * MINUTE_SLOTS as u64 + HOUR,
                Tier::Hour => window + 86_400,
            };
            inv.key(self.key(name, *tier, *idx, "t"))
                .key(self.key(name, *tier, *idx, "b"))
                .arg(ttl)
                .arg(c.total)
                .arg(c.bad);
        }
        let mut conn = self.connection().await?;
        tokio::time::timeout(self.timeout, conn.invoke(&inv))
            .await
            .map_err(|_| "timed out".to_string())?
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Reads every SLO's buckets as of `now` (Unix seconds).
    pub(crate) async fn read(
        &self,
        names: &[String],
        windows: &[u64],
        now: u64,
    ) -> Result<Vec<SloBuckets>, String> {
        let mut out = Vec::with_capacity(names.len());
        for (name, window) in names.iter().zip(windows) {
            let mut b = SloBuckets::new(*window);
            let last_minute = (now / MINUTE) as i64;
            let last_hour = (now / HOUR) as i64;
            let hours = b.hours.len() as i64;
            let indexes: Vec<(Tier, i64)> = (last_minute - MINUTE_SLOTS as i64 + 1..=last_minute)
                .map(|i| (Tier::Minute, i))
                .chain((last_hour - hours + 1..=last_hour).map(|i| (Tier::Hour, i)))
                .collect();
            let keys: Vec<String> = indexes
                .iter()
                .flat_map(|(t, i)| [self.key(name, *t, *i, "t"), self.key(name, *t, *i, "b")])
                .collect();
            let mut conn = self.connection().await?;
            let values: Vec<Option<i64>> = tokio::time::timeout(self.timeout, conn.mget(&keys))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            for ((tier, idx), pair) in indexes.iter().zip(values.chunks(2)) {
                let c = Counts {
                    total: pair.first().copied().flatten().unwrap_or(0),
                    bad: pair.get(1).copied().flatten().unwrap_or(0),
                };
                if !c.is_zero() {
                    b.ring_mut(*tier).set(*idx, c);
                }
            }
            out.push(b);
        }
        Ok(out)
    }
}

/// A name for this replica's write IDs: host name, process ID and start time.
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        pipeline_core::time::now_unix_nanos()
    )
}
