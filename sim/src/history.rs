//! What the simulated clients did and saw, in the order it happened.
//!
//! Every value a client writes is unique (`c<client>.<seq>`), so a sibling read back
//! names the write that made it. Each operation keeps its invocation and completion
//! times (simulated milliseconds), the causal context it sent, and what it got back:
//! that is all the checkers need.

use std::fmt::Write as _;

/// What an operation was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// A read at consistency `r`.
    Get,
    /// A write of `value`, with the context of an earlier read (or none).
    Put {
        /// The unique value written.
        value: String,
        /// The context sent (empty: none).
        context: Vec<u8>,
        /// Time to live in ms (0: none).
        ttl_ms: u64,
    },
    /// A delete with the context of an earlier read.
    Delete {
        /// The context sent.
        context: Vec<u8>,
    },
}

/// A sibling as a read returned it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeenSibling {
    /// The value (names the write).
    pub value: String,
    /// The write's dot, `actor:counter`.
    pub dot: String,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read's answer.
    Read {
        /// Live siblings, sorted.
        siblings: Vec<SeenSibling>,
        /// The context returned.
        context: Vec<u8>,
    },
    /// A write was acknowledged by `acks` replicas (`None`: the SDK does not say).
    Written {
        /// Replicas that acknowledged.
        acks: Option<u32>,
    },
    /// The operation failed or timed out: a write may or may not have taken effect.
    Failed(String),
}

/// One client operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// Which client.
    pub client: usize,
    /// Which key (index into the key space).
    pub key: usize,
    /// Which node coordinated it (`None`: the SDK chose, and may have failed over).
    pub node: Option<usize>,
    /// What it was.
    pub kind: OpKind,
    /// Replicas required (R for reads, W for writes).
    pub quorum: u8,
    /// Simulated milliseconds at invocation.
    pub invoked_ms: u64,
    /// Simulated milliseconds at completion.
    pub completed_ms: u64,
    /// Position of the invocation in the run's order of events (finer than the
    /// millisecond: two events in one simulated millisecond still have an order).
    pub invoked_event: u64,
    /// Position of the completion in the run's order of events.
    pub completed_event: u64,
    /// For a write with a context: the completion event of the read that returned it.
    pub context_from: Option<u64>,
    /// The result.
    pub outcome: Outcome,
}

impl Op {
    /// Whether the operation succeeded.
    pub fn ok(&self) -> bool {
        !matches!(self.outcome, Outcome::Failed(_))
    }

    /// The context a write carried (`None` for reads).
    pub fn write_context(&self) -> Option<&[u8]> {
        match &self.kind {
            OpKind::Get => None,
            OpKind::Put { context, .. } | OpKind::Delete { context } => Some(context),
        }
    }

    /// The coordinator, for messages: `n3`, or `sdk` when the SDK picked it.
    pub fn via(&self) -> String {
        self.node.map_or_else(|| "sdk".to_owned(), |n| format!("n{}", n + 1))
    }

    /// The TTL of a put, if it had one.
    pub fn ttl_ms(&self) -> Option<u64> {
        match self.kind {
            OpKind::Put { ttl_ms, .. } if ttl_ms > 0 => Some(ttl_ms),
            _ => None,
        }
    }
}

/// The event log of one run: every operation and fault, in order, as text lines. Two
/// runs of the same seed must produce byte-identical logs.
#[derive(Debug, Default, Clone)]
pub struct EventLog {
    lines: Vec<String>,
}

impl EventLog {
    /// Appends one line.
    pub fn push(&mut self, at_ms: u64, line: impl std::fmt::Display) {
        self.lines.push(format!("{at_ms:>9} {line}"));
    }

    /// Records a finished operation.
    pub fn op(&mut self, op: &Op) {
        let mut line = format!("c{} {} k{} ", op.client, op.via(), op.key);
        match &op.kind {
            OpKind::Get => {
                let _ = write!(line, "get r={}", op.quorum);
            }
            OpKind::Put { value, context, ttl_ms } => {
                let _ = write!(line, "put {value} w={} ctx={}", op.quorum, hex(context));
                if *ttl_ms > 0 {
                    let _ = write!(line, " ttl={ttl_ms}ms");
                }
            }
            OpKind::Delete { context } => {
                let _ = write!(line, "delete w={} ctx={}", op.quorum, hex(context));
            }
        }
        match &op.outcome {
            Outcome::Read { siblings, context } => {
                let values: Vec<String> = siblings.iter().map(|s| format!("{}@{}", s.value, s.dot)).collect();
                let _ = write!(line, " -> [{}] ctx={}", values.join(" "), hex(context));
            }
            Outcome::Written { acks: Some(acks) } => {
                let _ = write!(line, " -> ok acks={acks}");
            }
            Outcome::Written { acks: None } => {
                let _ = write!(line, " -> ok");
            }
            Outcome::Failed(why) => {
                let _ = write!(line, " -> failed: {why}");
            }
        }
        let _ = write!(line, " ({}ms)", op.completed_ms.saturating_sub(op.invoked_ms));
        self.push(op.completed_ms, line);
    }

    /// The lines.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// xxh3-64 of the whole log.
    pub fn hash(&self) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for line in &self.lines {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hasher.digest()
    }
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".to_owned();
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}
