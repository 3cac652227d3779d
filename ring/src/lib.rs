//! `ringkv-ring`: consistent hashing with virtual nodes for ringkv.
//!
//! This crate maps a key to the ordered list of physical nodes that hold its
//! replicas (its [`PreferenceList`]), names the fallbacks for a sloppy quorum,
//! and computes exactly which parts of the key space change hands when the
//! membership changes ([`RingDiff`]). It is the placement half of the store;
//! how many replicas must answer (R/W) is the coordinator's business, not ours.
//!
//! It is pure on purpose: no I/O, no clock, no randomness, no async and no
//! iteration over hash maps. Membership arrives as plain [`Member`] values and
//! the same member set always yields an equal [`Ring`], so the simulation can
//! replay placement bit for bit and every node computes the same lists.
//!
//! Where to start reading: [`Ring::new`] (in `ring.rs`) builds the sorted token
//! table; [`Ring::preference_list`] (in `preference.rs`) walks it clockwise.
//! `position.rs` defines the key space and its ranges, `ownership.rs` answers
//! "which ranges does a node hold and how much", `diff.rs` compares two rings.

mod diff;
mod error;
mod member;
mod node_id;
mod ownership;
mod position;
mod preference;
mod ring;

pub use diff::{RangeMove, RingDiff};
pub use error::{InvalidName, RingError};
pub use member::{Member, NODES_MAX, REPLICAS_MAX, VNODES_DEFAULT, VNODES_PER_NODE_MAX, ZONE_BYTES_MAX};
pub use node_id::{NodeId, NODE_ID_BYTES_MAX};
pub use position::{key_position, Position, PositionRange, RING_WIDTH};
pub use preference::{Fallbacks, PreferenceList};
pub use ring::Ring;
