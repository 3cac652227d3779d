//! Versioned values and the local stores that hold them.
//!
//! Two halves, kept apart:
//! - **Causality** ([`KeyState`], [`VersionVector`], [`Dot`], [`Hlc`]): what a key's
//!   replicated value is, how concurrent writes become siblings, how a client's context
//!   decides what its write replaces, and how two replicas merge. Pure and synchronous.
//! - **Engines** ([`Engine`], [`RocksEngine`], [`MemoryEngine`]): where states live on one
//!   node, ordered by ring position so ranges can be streamed, plus hints and metadata.
//!
//! This crate never talks to the network and never reads a clock: time arrives as
//! `now_ms` arguments, which is what lets the simulation run it deterministically.
//! Start reading at [`key_state`], then [`engine`].

pub mod dot;
pub mod engine;
pub mod hlc;
pub mod injected_bug;
pub mod key_state;
pub mod limits;
pub mod memory;
pub mod merkle;
pub mod record;
pub mod rocks;
pub mod version_vector;

pub use dot::{ActorId, Dot};
pub use engine::{Durability, Engine, EngineError, StateChange, HINTS_PER_TARGET_MAX, SCAN_PAGE_MAX};
pub use hlc::{Hlc, HlcClock, TooFarAhead};
pub use key_state::{last_writer_wins, KeyState, Sibling, StateError, Write};
pub use limits::{Key, LimitError, Limits, KEY_BYTES_DEFAULT, SIBLINGS_WARN, VALUE_BYTES_DEFAULT};
pub use memory::MemoryEngine;
pub use merkle::{SegmentTrees, SEGMENT_LEAVES};
pub use record::RecordError;
pub use rocks::RocksEngine;
pub use version_vector::{ContextError, VersionVector};
