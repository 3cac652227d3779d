//! The errors of this crate: what can be wrong with a membership handed to
//! [`Ring::new`](crate::Ring::new) or with a node id parsed from text.
//!
//! Only bad input from the outside world is an error here. A broken internal
//! invariant (a preference list with a repeated node, say) is a bug in this
//! crate and fails an assertion instead.

use crate::NodeId;

/// Why a name (a node id or a zone) was rejected.
///
/// Names share one alphabet, `[A-Za-z0-9._-]`, so they can appear unquoted in
/// logs, metrics labels, file names and the CLI without escaping.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The name has no bytes.
    #[error("is empty, the minimum is 1 byte")]
    Empty,
    /// The name is longer than its limit.
    #[error("is {bytes} bytes, the limit is {max}")]
    TooLong {
        /// Length of the rejected name in bytes.
        bytes: usize,
        /// The limit that applies to this kind of name.
        max: usize,
    },
    /// The name contains a byte outside `[A-Za-z0-9._-]`.
    #[error("has byte 0x{byte:02x} at offset {offset}, only A-Z a-z 0-9 . _ - are allowed")]
    ForbiddenByte {
        /// The first offending byte.
        byte: u8,
        /// Its offset in the name, in bytes.
        offset: usize,
    },
}

/// A membership or name that cannot form a ring.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Two members have the same id.
    #[error("node {node} is listed more than once")]
    DuplicateNode {
        /// The repeated id.
        node: NodeId,
    },
    /// A member asked for no virtual nodes, which would give it no key space.
    #[error("node {node} has 0 vnodes, the minimum is 1")]
    ZeroVnodes {
        /// The member with zero vnodes.
        node: NodeId,
    },
    /// A member asked for more virtual nodes than
    /// [`VNODES_PER_NODE_MAX`](crate::VNODES_PER_NODE_MAX).
    #[error("node {node} has {vnodes} vnodes, the limit is {max}")]
    TooManyVnodes {
        /// The member over the limit.
        node: NodeId,
        /// The vnode count it asked for.
        vnodes: u16,
        /// The limit.
        max: u16,
    },
    /// The membership has more than [`NODES_MAX`](crate::NODES_MAX) members.
    #[error("ring has {count} nodes, the limit is {max}")]
    TooManyNodes {
        /// How many members were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A node id is empty, too long or has a forbidden byte.
    #[error("invalid node id {id:?}: {reason}")]
    InvalidNodeId {
        /// The rejected id, as given.
        id: String,
        /// What is wrong with it.
        reason: InvalidName,
    },
    /// A member's zone is empty, too long or has a forbidden byte.
    #[error("invalid zone {zone:?} of node {node}: {reason}")]
    InvalidZone {
        /// The member whose zone was rejected.
        node: NodeId,
        /// The rejected zone, as given.
        zone: String,
        /// What is wrong with it.
        reason: InvalidName,
    },
}

/// Checks `name` against the shared name alphabet and a byte limit.
pub(crate) fn validate_name(name: &str, max: usize) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::Empty);
    }
    if name.len() > max {
        return Err(InvalidName::TooLong { bytes: name.len(), max });
    }
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
    match name.bytes().position(|byte| !allowed(byte)) {
        Some(offset) => Err(InvalidName::ForbiddenByte {
            byte: name.as_bytes()[offset],
            offset,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, max: usize, expected: Result<(), InvalidName>) {
        assert_eq!(validate_name(name, max), expected, "name {name:?}");
    }

    #[test]
    fn names() {
        check("a", 4, Ok(()));
        check("Az09._-", 7, Ok(()));
        check("", 4, Err(InvalidName::Empty));
        check("abcde", 4, Err(InvalidName::TooLong { bytes: 5, max: 4 }));
        check("ab c", 4, Err(InvalidName::ForbiddenByte { byte: b' ', offset: 2 }));
        // A multi-byte character is reported by its first byte.
        check("é", 4, Err(InvalidName::ForbiddenByte { byte: 0xc3, offset: 0 }));
        check("a/b", 4, Err(InvalidName::ForbiddenByte { byte: b'/', offset: 1 }));
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let messages = [
            InvalidName::Empty.to_string(),
            InvalidName::TooLong { bytes: 70, max: 64 }.to_string(),
            RingError::TooManyNodes { count: 2000, max: 1024 }.to_string(),
        ];
        for message in messages {
            assert!(!message.ends_with('.'), "{message}");
            assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
        }
        assert_eq!(
            RingError::TooManyNodes { count: 2000, max: 1024 }.to_string(),
            "ring has 2000 nodes, the limit is 1024"
        );
    }
}
