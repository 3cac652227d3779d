//! Size limits for keys and values, and the validated [`Key`] type.
//!
//! The limits are configurable per cluster (a cache tier may want bigger values), but
//! every configured limit must stay under a hard ceiling that the on-disk and wire formats
//! are sized for. Going over a limit is an error naming the limit, never a truncation.

use bytes::Bytes;
use ringkv_ring::{key_position, Position};

/// Default largest key, in bytes.
pub const KEY_BYTES_DEFAULT: u32 = 1024;
/// Hard ceiling for a configured key limit.
pub const KEY_BYTES_CEILING: u32 = 64 * 1024;
/// Default largest value, in bytes (1 MiB).
pub const VALUE_BYTES_DEFAULT: u32 = 1 << 20;
/// Hard ceiling for a configured value limit (64 MiB).
pub const VALUE_BYTES_CEILING: u32 = 64 << 20;
/// A key holding more live siblings than this is logged and counted by the node; siblings
/// are never dropped to stay under it.
pub const SIBLINGS_WARN: usize = 16;

const _: () = assert!(KEY_BYTES_DEFAULT <= KEY_BYTES_CEILING);
const _: () = assert!(VALUE_BYTES_DEFAULT <= VALUE_BYTES_CEILING);

/// Why a key or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Keys must hold at least one byte.
    #[error("key is empty, keys must be 1..={max} bytes")]
    KeyEmpty {
        /// The configured key limit.
        max: u32,
    },
    /// The key is longer than the configured limit.
    #[error("key is {got} bytes, the limit is {max}")]
    KeyTooLarge {
        /// Length of the refused key.
        got: usize,
        /// The configured key limit.
        max: u32,
    },
    /// The value is longer than the configured limit.
    #[error("value is {got} bytes, the limit is {max}")]
    ValueTooLarge {
        /// Length of the refused value.
        got: usize,
        /// The configured value limit.
        max: u32,
    },
    /// A configured limit is above the hard ceiling.
    #[error("{what} limit {got} is above the ceiling of {ceiling}")]
    LimitAboveCeiling {
        /// Which limit (`key` or `value`).
        what: &'static str,
        /// The configured value.
        got: u32,
        /// The hard ceiling.
        ceiling: u32,
    },
}

/// The configured key and value limits of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    key_bytes_max: u32,
    value_bytes_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_bytes_max: KEY_BYTES_DEFAULT,
            value_bytes_max: VALUE_BYTES_DEFAULT,
        }
    }
}

impl Limits {
    /// Limits with the given maxima; each must be at least 1 and at most its ceiling.
    pub fn new(key_bytes_max: u32, value_bytes_max: u32) -> Result<Limits, LimitError> {
        if key_bytes_max == 0 || key_bytes_max > KEY_BYTES_CEILING {
            return Err(LimitError::LimitAboveCeiling {
                what: "key",
                got: key_bytes_max,
                ceiling: KEY_BYTES_CEILING,
            });
        }
        if value_bytes_max > VALUE_BYTES_CEILING {
            return Err(LimitError::LimitAboveCeiling {
                what: "value",
                got: value_bytes_max,
                ceiling: VALUE_BYTES_CEILING,
            });
        }
        Ok(Limits {
            key_bytes_max,
            value_bytes_max,
        })
    }

    /// Largest accepted key, in bytes.
    pub fn key_bytes_max(&self) -> u32 {
        self.key_bytes_max
    }

    /// Largest accepted value, in bytes.
    pub fn value_bytes_max(&self) -> u32 {
        self.value_bytes_max
    }

    /// Checks a value's length against the limit.
    pub fn check_value(&self, value: &[u8]) -> Result<(), LimitError> {
        if value.len() > self.value_bytes_max as usize {
            return Err(LimitError::ValueTooLarge {
                got: value.len(),
                max: self.value_bytes_max,
            });
        }
        Ok(())
    }

    /// Validates a key and computes its ring position.
    pub fn key(&self, bytes: impl Into<Bytes>) -> Result<Key, LimitError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(LimitError::KeyEmpty {
                max: self.key_bytes_max,
            });
        }
        if bytes.len() > self.key_bytes_max as usize {
            return Err(LimitError::KeyTooLarge {
                got: bytes.len(),
                max: self.key_bytes_max,
            });
        }
        Ok(Key::from_validated(bytes))
    }
}

/// A key that passed validation, with its ring position computed once.
///
/// ```
/// use ringkv_storage::Limits;
/// let key = Limits::default().key("user:42").expect("a valid key");
/// assert_eq!(key.as_bytes(), b"user:42");
/// assert!(Limits::default().key("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    // Field order matters for the derived `Ord`: keys sort by ring position first, the
    // order in which engines store them.
    position: Position,
    bytes: Bytes,
}

impl Key {
    /// Builds a key that is known to be within the hard ceiling (read back from our own
    /// storage, or validated by [`Limits::key`]).
    pub(crate) fn from_validated(bytes: Bytes) -> Key {
        debug_assert!(!bytes.is_empty());
        debug_assert!(bytes.len() <= KEY_BYTES_CEILING as usize);
        Key {
            position: key_position(&bytes),
            bytes,
        }
    }

    /// The same key with its bytes in an allocation of its own: a key received in a
    /// request is a slice of the request's buffer, which a store that keeps the key
    /// (the memory engine) would otherwise keep alive.
    pub fn detached(&self) -> Key {
        Key {
            position: self.position,
            bytes: Bytes::copy_from_slice(&self.bytes),
        }
    }

    /// The smallest possible key at `position`: a scan bound, never stored.
    pub(crate) fn lower_bound(position: Position) -> Key {
        Key {
            position,
            bytes: Bytes::new(),
        }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key's bytes as a cheaply clonable buffer.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The key's position on the ring (xxh3-64 of its bytes).
    pub fn position(&self) -> Position {
        self.position
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Key({:?}@{:016x})",
            String::from_utf8_lossy(&self.bytes),
            self.position
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_key(len: usize, limits: Limits, expected: Result<(), LimitError>) {
        let got = limits.key(vec![b'k'; len]).map(|_| ());
        assert_eq!(got, expected, "key of {len} bytes");
    }

    #[test]
    fn key_limits() {
        let limits = Limits::default();
        check_key(0, limits, Err(LimitError::KeyEmpty { max: 1024 }));
        check_key(1, limits, Ok(()));
        check_key(1024, limits, Ok(()));
        check_key(1025, limits, Err(LimitError::KeyTooLarge { got: 1025, max: 1024 }));
        let small = Limits::new(8, 16).expect("valid limits");
        check_key(9, small, Err(LimitError::KeyTooLarge { got: 9, max: 8 }));
    }

    #[test]
    fn value_limits() {
        let limits = Limits::new(8, 16).expect("valid limits");
        assert_eq!(limits.check_value(&[0; 16]), Ok(()));
        assert_eq!(
            limits.check_value(&[0; 17]),
            Err(LimitError::ValueTooLarge { got: 17, max: 16 })
        );
        assert_eq!(limits.check_value(&[]), Ok(()));
    }

    #[test]
    fn limits_above_ceiling_are_refused() {
        assert!(Limits::new(0, 1).is_err());
        assert!(Limits::new(KEY_BYTES_CEILING + 1, 1).is_err());
        assert!(Limits::new(1, VALUE_BYTES_CEILING + 1).is_err());
    }

    #[test]
    fn key_position_is_xxh3_of_bytes() {
        let key = Limits::default().key("abc").expect("valid");
        assert_eq!(key.position(), ringkv_ring::key_position(b"abc"));
    }
}
