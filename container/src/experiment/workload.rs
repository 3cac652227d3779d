//! The experiment's clients: paced reads and writes against ringkv or etcd, each
//! recorded as a [`Sample`] with its outcome, latency, staleness and sibling count.
//!
//! Client `i` talks only to node `i % nodes + 1`, with no failover, like a Jepsen client
//! bound to its node: availability is then measured per side of a partition rather than
//! hidden by a client that hops to whichever side answers. Clients of a node the schedule
//! has killed pause until it is started again (a dead server is not a measure of the
//! store). Writes carry a global sequence number in the value; a successful read is
//! **stale** when the highest sequence number among its siblings is below that of the write
//! to that key acknowledged last before the read was sent (or it finds nothing although a
//! write was acknowledged). Writes pass the context of the client's last read or write of
//! the key, as an application would, so siblings come from real concurrency only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use ringkv_client::{Client, Consistency, Context, ReadOptions, WriteOptions};
use tokio::time::Instant;

use crate::experiment::spec::Workload;
use crate::lab::etcd::EtcdSession;

/// The most samples one run keeps per client; past it, operations are still made but no
/// longer recorded (the bound is far above any valid spec: 600 s at 5,000 ops/s).
pub(crate) const SAMPLES_PER_CLIENT_MAX: usize = 3_000_000;
const SEQUENCE_DIGITS: usize = 20;

/// What the clients talk to.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// ringkv with these read and write quorums.
    Ringkv {
        /// R.
        r: u8,
        /// W.
        w: u8,
    },
    /// etcd (linearizable reads, Raft writes).
    Etcd,
}

/// One operation as a client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    /// When it was sent, in milliseconds since the run started.
    pub(crate) t_ms: u32,
    /// How long it took (until the answer or the error).
    pub(crate) latency_us: u32,
    /// The node the client talks to.
    pub(crate) node: u8,
    /// A read (else a write).
    pub(crate) read: bool,
    /// It succeeded.
    pub(crate) ok: bool,
    /// A successful read that missed an acknowledged write.
    pub(crate) stale: bool,
    /// Siblings a successful read returned.
    pub(crate) siblings: u16,
}

/// State shared by the clients and the fault schedule.
pub(crate) struct Shared {
    acked: Vec<AtomicU64>,
    sequence: AtomicU64,
    /// Index = node number; true while the schedule has the node killed.
    pub(crate) down: Vec<AtomicBool>,
}

impl Shared {
    /// For `keys` keys and `nodes` nodes.
    pub(crate) fn new(keys: u32, nodes: u8) -> Arc<Shared> {
        Arc::new(Shared {
            acked: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            sequence: AtomicU64::new(0),
            down: (0..=nodes).map(|_| AtomicBool::new(false)).collect(),
        })
    }
}

/// The value of write number `sequence`: the number, zero-padded, then filler.
pub(crate) fn encode_value(sequence: u64, value_bytes: u32) -> Bytes {
    let mut text = format!("{sequence:0width$}", width = SEQUENCE_DIGITS);
    let size = (value_bytes as usize).max(SEQUENCE_DIGITS);
    text.extend(std::iter::repeat_n('.', size - text.len()));
    Bytes::from(text)
}

/// The sequence number in a value written by [`encode_value`], if it is one.
pub(crate) fn decode_sequence(value: &[u8]) -> Option<u64> {
    let digits = value.get(..SEQUENCE_DIGITS)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

enum Session {
    Ringkv { client: Client, r: u8, w: u8 },
    Etcd(EtcdSession),
}

/// Runs client `id` from `start` until `end`, talking to `endpoint` (node `node`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_client(
    id: u32,
    node: u8,
    endpoint: SocketAddr,
    target: Target,
    workload: Workload,
    shared: Arc<Shared>,
    start: Instant,
    end: Instant,
) -> Vec<Sample> {
    let mut session = match target {
        Target::Ringkv { r, w } => {
            let client = Client::builder()
                .endpoints([endpoint.to_string()])
                .request_timeout(workload.timeout)
                .connect_timeout(workload.timeout)
                .retries(0)
                .jitter_seed(workload.seed ^ u64::from(id))
                .build();
            match client {
                Ok(client) => Session::Ringkv { client, r, w },
                // Only a bad endpoint or runtime fails here, and both are the lab's bug.
                Err(error) => panic!("client for {endpoint}: {error}"),
            }
        }
        Target::Etcd => Session::Etcd(EtcdSession::new(endpoint, workload.timeout)),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(workload.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(id)));
    let interval = Duration::from_secs_f64(f64::from(workload.clients) / f64::from(workload.ops_per_second));
    // Spread the clients' first operations over one interval so they do not fire together.
    let mut next = start + interval.mul_f64(f64::from(id) / f64::from(workload.clients));
    let mut contexts: HashMap<u32, Context> = HashMap::new();
    let mut samples = Vec::new();
    loop {
        if next >= end {
            break;
        }
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        next += interval;
        if next < now {
            // Fell behind (a slow answer): skip the missed slots rather than burst.
            next = now + interval;
        }
        if shared.down[usize::from(node)].load(Ordering::Relaxed) {
            continue;
        }
        let key_index = rng.random_range(0..workload.keys);
        let key = format!("key-{key_index}");
        let read = rng.random_bool(workload.read_fraction);
        let sent = Instant::now();
        let t_ms = u32::try_from(sent.duration_since(start).as_millis()).unwrap_or(u32::MAX);
        let mut sample = Sample {
            t_ms,
            latency_us: 0,
            node,
            read,
            ok: false,
            stale: false,
            siblings: 0,
        };
        if read {
            let acked_before = shared.acked[key_index as usize].load(Ordering::Acquire);
            let outcome = match &mut session {
                Session::Ringkv { client, r, .. } => {
                    let options = ReadOptions {
                        consistency: Some(Consistency::Count(u32::from(*r))),
                        timeout: Some(workload.timeout),
                    };
                    client.get_with(key.clone(), options).await.ok().map(|result| {
                        let newest = result.siblings.iter().filter_map(|s| decode_sequence(&s.value)).max();
                        let siblings = result.siblings.len();
                        contexts.insert(key_index, result.context);
                        (newest, siblings)
                    })
                }
                Session::Etcd(etcd) => etcd
                    .get(key.as_bytes())
                    .await
                    .ok()
                    .map(|value| (value.as_deref().and_then(decode_sequence), usize::from(value.is_some()))),
            };
            if let Some((newest, siblings)) = outcome {
                sample.ok = true;
                sample.siblings = u16::try_from(siblings).unwrap_or(u16::MAX);
                sample.stale = newest.unwrap_or(0) < acked_before;
            }
        } else {
            let sequence = shared.sequence.fetch_add(1, Ordering::Relaxed) + 1;
            let value = encode_value(sequence, workload.value_bytes);
            let ok = match &mut session {
                Session::Ringkv { client, w, .. } => {
                    let options = WriteOptions {
                        consistency: Some(Consistency::Count(u32::from(*w))),
                        timeout: Some(workload.timeout),
                        ttl: None,
                    };
                    let context = contexts.get(&key_index).cloned().unwrap_or_else(Context::empty);
                    match client.put_with(key.clone(), value, &context, options).await {
                        Ok(context) => {
                            contexts.insert(key_index, context);
                            true
                        }
                        Err(_) => false,
                    }
                }
                Session::Etcd(etcd) => etcd.put(key.as_bytes(), &value).await.is_ok(),
            };
            if ok {
                // The write acknowledged last, not the highest number: two concurrent
                // writes may commit in the other order, and the later-acknowledged one is
                // then the current value.
                shared.acked[key_index as usize].store(sequence, Ordering::Release);
            }
            sample.ok = ok;
        }
        sample.latency_us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        if samples.len() < SAMPLES_PER_CLIENT_MAX {
            samples.push(sample);
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_sequence() {
        let value = encode_value(42, 64);
        assert_eq!(value.len(), 64);
        assert_eq!(decode_sequence(&value), Some(42));
        assert_eq!(decode_sequence(b"short"), None);
        assert_eq!(encode_value(7, 1).len(), 20);
    }
}
