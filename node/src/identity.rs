//! Who this node is, and the dots it issues.
//!
//! A dot names exactly one write, forever (`docs/design-decisions.md`, "A dot is never
//! issued twice"). Two things make that hold.
//!
//! **A new actor after every unclean stop.** The actor is the node's *incarnation*: the
//! node id plus a random value. A replica hands a write to its peers while its own log
//! flush is still running, so a crash or a power loss can take from this node a write
//! its peers keep. Counting on from what is left on disk would issue that write's dot
//! again to another value (Riak's "kv679"), and no counter picked above it helps either:
//! a version vector entry `n` claims every dot up to `n`, so it would claim the lost
//! write as seen and the merge would drop it. So the node keeps its actor only when the
//! last run stopped cleanly, which it records at shutdown (synced, after the last write)
//! and clears at start; any other start draws a new incarnation, whose dots nothing has
//! seen. A data directory restored from a copy of a cleanly stopped node is the one case
//! this cannot tell: start it with `ringkv node --new-incarnation`.
//!
//! **Counters from one node-wide sequence.** Within one incarnation a key's counter is
//! the next value of a sequence shared by all keys (and carried across clean restarts in
//! the shutdown record), not just one above the key's clock: after tombstone GC purged a
//! key and another replica wrote it again, the key's clock here no longer shows the
//! counters it had, and a client context kept from the key's earlier life must not cover
//! the new write. The counters skipped for a key were never issued for it, so the clock
//! claiming them claims nothing false.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngCore;
use ringkv_storage::injected_bug::{self, Bug};
use ringkv_storage::{ActorId, Dot, Durability, Engine, EngineError, KeyState, VersionVector, Write};

const META_NODE_ID: &str = "node_id";
const META_INCARNATION: &str = "incarnation";
/// Written at a clean stop (the sequence's last value), cleared at start.
const META_CLEAN_STOP: &str = "clean_stop";

/// Why the node's identity could not be read or set up.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The engine's metadata could not be read or written.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The data directory belongs to another node.
    #[error("data directory {dir} belongs to node {owner}, not {me}: use that node's id or another directory")]
    DataDirOwner {
        /// The directory.
        dir: String,
        /// Node id recorded in it.
        owner: String,
        /// This node's id.
        me: String,
    },
    /// A metadata value has the wrong size (a damaged or foreign directory).
    #[error("metadata {name} in the data directory is {got} bytes, expected 8: the directory is damaged")]
    BadMeta {
        /// The metadata name.
        name: &'static str,
        /// Its length.
        got: usize,
    },
}

/// A context named a counter of this node's actor that the node never issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the context names counter {got} of this node's actor {actor}, which has issued only up to {issued}: it was not produced by this cluster")]
pub(crate) struct FutureCounter {
    /// This node's actor.
    pub actor: ActorId,
    /// The counter the context names.
    pub got: u64,
    /// The highest counter issued.
    pub issued: u64,
}

/// Issues this node's dots: its actor and the node-wide counter sequence.
pub(crate) struct DotIssuer {
    actor: ActorId,
    /// The highest counter issued (or skipped) so far.
    issued: AtomicU64,
}

/// How the node's incarnation is chosen at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Incarnation {
    /// Keep the one in the data directory if the last run stopped cleanly.
    KeepIfClean,
    /// Draw a new one whatever the directory says (it was restored from a copy).
    New,
}

/// How this start chose its actor, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// A new data directory.
    Fresh,
    /// The last run stopped cleanly: the same actor, counting on.
    Clean,
    /// The last run did not stop cleanly (or a new incarnation was asked for).
    Unclean,
}

impl DotIssuer {
    /// Reads the node's identity and picks this run's actor, then clears the clean-stop
    /// record (synced) so that a crash from here on is seen as one.
    pub(crate) fn open(
        node_id: &str,
        data_dir: &str,
        engine: &dyn Engine,
        incarnation: Incarnation,
    ) -> Result<(DotIssuer, Start), IdentityError> {
        match engine.get_meta(META_NODE_ID)? {
            Some(owner) if owner != node_id.as_bytes() => {
                return Err(IdentityError::DataDirOwner {
                    dir: data_dir.to_owned(),
                    owner: String::from_utf8_lossy(&owner).into_owned(),
                    me: node_id.to_owned(),
                })
            }
            Some(_) => {}
            None => engine.put_meta(META_NODE_ID, node_id.as_bytes(), Durability::Sync)?,
        }
        let stored = read_u64(engine, META_INCARNATION)?;
        let clean_stop = read_u64(engine, META_CLEAN_STOP)?;
        let (incarnation, issued, start) = match (stored, clean_stop, incarnation) {
            (Some(incarnation), Some(issued), Incarnation::KeepIfClean) => (incarnation, issued, Start::Clean),
            (stored, _, _) => {
                // A new incarnation is a new actor: no counter of it was ever issued.
                let incarnation = rand::rng().next_u64();
                engine.put_meta(META_INCARNATION, &incarnation.to_be_bytes(), Durability::Sync)?;
                let start = if stored.is_some() { Start::Unclean } else { Start::Fresh };
                (incarnation, 0, start)
            }
        };
        if clean_stop.is_some() {
            engine.put_meta(META_CLEAN_STOP, &[], Durability::Sync)?;
        }
        let issuer = DotIssuer {
            actor: ActorId::for_incarnation(node_id, incarnation),
            issued: AtomicU64::new(issued),
        };
        Ok((issuer, start))
    }

    /// Records a clean stop, synced: the next start keeps this actor and counts on. Call
    /// it only once nothing can issue a dot any more.
    pub(crate) fn close(&self, engine: &dyn Engine) -> Result<(), EngineError> {
        let issued = self.issued.load(Ordering::Acquire);
        engine.put_meta(META_CLEAN_STOP, &issued.to_be_bytes(), Durability::Sync)
    }

    /// The dot-assigning identity of this incarnation.
    pub(crate) fn actor(&self) -> ActorId {
        self.actor
    }

    /// Refuses a context that names a counter of this actor the node never issued: it
    /// would cover writes not made yet.
    pub(crate) fn check_context(&self, context: &VersionVector) -> Result<(), FutureCounter> {
        let got = context.get(self.actor);
        let issued = self.issued.load(Ordering::Acquire);
        if got > issued {
            return Err(FutureCounter {
                actor: self.actor,
                got,
                issued,
            });
        }
        Ok(())
    }

    /// Applies a client write to `state` under this node's next counter, which is above
    /// every counter the node issued under this actor. `None` (leaving `state` alone)
    /// once the sequence is exhausted, after 2^64 writes.
    pub(crate) fn put(&self, state: &mut KeyState, context: &VersionVector, write: Write) -> Option<Dot> {
        let next = self.issued.fetch_add(1, Ordering::AcqRel).checked_add(1)?;
        let dot = state.put_with_floor(self.actor, context, write, next);
        // The key's clock and the context hold only counters this node issued, so the new
        // counter is `next` itself; keep the sequence ahead of it whatever happens.
        debug_assert!(
            dot.counter == next || injected_bug::active(Bug::DotFromSiblings),
            "a key named a counter of this actor above the sequence: {} for {next}",
            dot.counter
        );
        self.issued.fetch_max(dot.counter, Ordering::AcqRel);
        Some(dot)
    }
}

fn read_u64(engine: &dyn Engine, name: &'static str) -> Result<Option<u64>, IdentityError> {
    match engine.get_meta(name)? {
        None => Ok(None),
        Some(bytes) if bytes.is_empty() => Ok(None),
        Some(bytes) => {
            let got = bytes.len();
            let raw: [u8; 8] = bytes.try_into().map_err(|_| IdentityError::BadMeta { name, got })?;
            Ok(Some(u64::from_be_bytes(raw)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv_storage::{Hlc, MemoryEngine};

    fn write(value: &str) -> Write {
        Write {
            value: Some(bytes::Bytes::from(value.to_owned())),
            hlc: Hlc::new(1, 0),
            expires_at_ms: None,
        }
    }

    fn open(engine: &MemoryEngine, incarnation: Incarnation) -> (DotIssuer, Start) {
        DotIssuer::open("n1", "dir", engine, incarnation).expect("opens")
    }

    #[test]
    fn a_clean_restart_keeps_the_actor_and_counts_on() {
        let engine = MemoryEngine::new();
        let (first, start) = open(&engine, Incarnation::KeepIfClean);
        assert_eq!(start, Start::Fresh);
        let mut other_key = KeyState::new();
        let last = (0..10)
            .map(|i| {
                let seen = other_key.context().clone();
                first
                    .put(&mut other_key, &seen, write(&format!("v{i}")))
                    .expect("counters left")
                    .counter
            })
            .last()
            .expect("ten writes");
        first.close(&engine).expect("closes");
        let (again, start) = open(&engine, Incarnation::KeepIfClean);
        assert_eq!(start, Start::Clean);
        assert_eq!(again.actor(), first.actor(), "the same incarnation");
        // A key this actor never wrote before still gets a counter above every one the
        // actor issued: had it been purged, an old context could not cover the new write.
        let dot = again
            .put(&mut KeyState::new(), &VersionVector::new(), write("after"))
            .expect("counters left");
        assert!(dot.counter > last, "{} is not above {last}", dot.counter);
    }

    #[test]
    fn an_unclean_restart_is_a_new_actor() {
        let engine = MemoryEngine::new();
        let (first, _) = open(&engine, Incarnation::KeepIfClean);
        first
            .put(&mut KeyState::new(), &VersionVector::new(), write("v"))
            .expect("counters left");
        // No close: a crash or a power loss.
        let (again, start) = open(&engine, Incarnation::KeepIfClean);
        assert_eq!(start, Start::Unclean);
        assert_ne!(again.actor(), first.actor());
        // The clean-stop record is cleared at start: a crash after a clean restart is
        // unclean too.
        again.close(&engine).expect("closes");
        let (third, start) = open(&engine, Incarnation::KeepIfClean);
        assert_eq!((start, third.actor()), (Start::Clean, again.actor()));
        let (fourth, start) = open(&engine, Incarnation::KeepIfClean);
        assert_eq!(start, Start::Unclean);
        assert_ne!(fourth.actor(), third.actor());
    }

    #[test]
    fn a_restored_directory_can_ask_for_a_new_actor() {
        let engine = MemoryEngine::new();
        let (first, _) = open(&engine, Incarnation::KeepIfClean);
        first.close(&engine).expect("closes");
        let (restored, start) = open(&engine, Incarnation::New);
        assert_eq!(start, Start::Unclean);
        assert_ne!(first.actor(), restored.actor());
    }

    #[test]
    fn another_nodes_directory_is_refused() {
        let engine = MemoryEngine::new();
        open(&engine, Incarnation::KeepIfClean);
        let err = DotIssuer::open("n2", "dir", &engine, Incarnation::KeepIfClean).err();
        assert!(matches!(err, Some(IdentityError::DataDirOwner { .. })), "{err:?}");
    }

    #[test]
    fn a_context_naming_an_unissued_counter_is_refused() {
        let engine = MemoryEngine::new();
        let (issuer, _) = open(&engine, Incarnation::KeepIfClean);
        let dot = issuer
            .put(&mut KeyState::new(), &VersionVector::new(), write("v"))
            .expect("counters left");
        let mut honest = VersionVector::new();
        honest.add(dot);
        assert_eq!(issuer.check_context(&honest), Ok(()));
        let mut forged = VersionVector::new();
        forged.add(Dot::new(issuer.actor(), u64::MAX));
        assert!(issuer.check_context(&forged).is_err());
    }
}
