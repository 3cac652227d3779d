//! [`NodeId`]: the validated name of a physical node.
//!
//! A node id is what the ring hashes to place a node's tokens, so it must be
//! stable and unambiguous: 1..=64 bytes of `[A-Za-z0-9._-]`. It is not an
//! address (gossip carries those) and not a generation: a node that restarts
//! with the same id gets the same tokens, which is what keeps its data local.
//!
//! The string is shared behind an `Arc` because ids are copied into every
//! preference list; cloning one is a reference-count increment.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::validate_name;
use crate::RingError;

/// The longest node id, in bytes.
pub const NODE_ID_BYTES_MAX: usize = 64;

/// The name of a physical node: 1..=[`NODE_ID_BYTES_MAX`] bytes of `[A-Za-z0-9._-]`.
///
/// Ordered, compared and hashed as its string, so a `BTreeMap<NodeId, _>`
/// iterates in id order and can be looked up with a `&str`.
///
/// ```
/// use ringkv_ring::NodeId;
///
/// let id: NodeId = "node-1".parse()?;
/// assert_eq!(id.as_str(), "node-1");
/// assert!("no spaces".parse::<NodeId>().is_err());
/// # Ok::<(), ringkv_ring::RingError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Validates `id` and wraps it.
    ///
    /// # Errors
    /// [`RingError::InvalidNodeId`] if `id` is empty, longer than
    /// [`NODE_ID_BYTES_MAX`] bytes, or has a byte outside `[A-Za-z0-9._-]`.
    pub fn new(id: &str) -> Result<NodeId, RingError> {
        match validate_name(id, NODE_ID_BYTES_MAX) {
            Ok(()) => Ok(NodeId(Arc::from(id))),
            Err(reason) => Err(RingError::InvalidNodeId {
                id: id.to_owned(),
                reason,
            }),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    // `NodeId("n1")` would repeat the type name in every preference list a
    // test prints; the quoted string is enough to tell ids from other text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = RingError;

    fn from_str(id: &str) -> Result<NodeId, RingError> {
        NodeId::new(id)
    }
}

impl TryFrom<&str> for NodeId {
    type Error = RingError;

    fn try_from(id: &str) -> Result<NodeId, RingError> {
        NodeId::new(id)
    }
}

impl TryFrom<String> for NodeId {
    type Error = RingError;

    fn try_from(id: String) -> Result<NodeId, RingError> {
        NodeId::new(&id)
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Sound because Eq, Ord and Hash are derived from the `Arc<str>`, which
// delegates all three to `str`.
impl Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidName;

    fn check(id: &str, expected: Result<&str, InvalidName>) {
        let got = NodeId::new(id);
        match expected {
            Ok(text) => {
                let got = got.expect("valid id");
                assert_eq!(got.as_str(), text);
                assert_eq!(got.to_string(), text);
                assert_eq!(id.parse::<NodeId>().expect("valid id"), got);
                assert_eq!(NodeId::try_from(id.to_owned()).expect("valid id"), got);
            }
            Err(reason) => {
                assert_eq!(
                    got,
                    Err(RingError::InvalidNodeId {
                        id: id.to_owned(),
                        reason: reason.clone()
                    })
                );
                assert!(NodeId::try_from(id).is_err());
            }
        }
    }

    #[test]
    fn valid_ids() {
        check("n1", Ok("n1"));
        check("a", Ok("a"));
        check("Node_7.zone-b", Ok("Node_7.zone-b"));
        check(&"x".repeat(64), Ok(&"x".repeat(64)));
    }

    #[test]
    fn invalid_ids() {
        check("", Err(InvalidName::Empty));
        check(&"x".repeat(65), Err(InvalidName::TooLong { bytes: 65, max: 64 }));
        check("n 1", Err(InvalidName::ForbiddenByte { byte: b' ', offset: 1 }));
        check("n1\0", Err(InvalidName::ForbiddenByte { byte: 0, offset: 2 }));
        check("n:1", Err(InvalidName::ForbiddenByte { byte: b':', offset: 1 }));
    }

    #[test]
    fn orders_and_borrows_as_its_string() {
        let mut ids: Vec<NodeId> = ["b", "a", "B", "a0"]
            .iter()
            .map(|id| NodeId::new(id).expect("valid id"))
            .collect();
        ids.sort();
        let texts: Vec<&str> = ids.iter().map(NodeId::as_str).collect();
        assert_eq!(texts, ["B", "a", "a0", "b"]);

        let map: std::collections::BTreeMap<NodeId, u8> = ids.iter().cloned().zip(0..).collect();
        assert_eq!(map.get("a0"), Some(&2));
        assert_eq!(format!("{:?}", ids[0]), "\"B\"");
    }
}
