//! Bytes received from a node, made independent of the buffer they arrived in.
//!
//! prost decodes `bytes` fields as slices of tonic's receive buffer, so a 40-byte context
//! kept by the caller would keep that whole buffer (kilobytes, shared with other
//! responses) alive. Callers keep a context for as long as they keep the key, often one per
//! key of a cache, and the load generator showed what follows: 16 clients holding a
//! context for each of 10,000 keys pinned over a gigabyte of receive buffers. So every
//! received context, and every value under [`SHARE_FROM_BYTES`], is copied into its own
//! allocation; larger values fill most of their buffer and keep sharing it.

use bytes::Bytes;

/// Values at least this long keep sharing the receive buffer instead of being copied.
pub const SHARE_FROM_BYTES: usize = 64 * 1024;

/// `bytes` in an allocation of its own, unless it is at least [`SHARE_FROM_BYTES`] long.
pub(crate) fn detach(bytes: Bytes) -> Bytes {
    if bytes.len() >= SHARE_FROM_BYTES {
        return bytes;
    }
    Bytes::copy_from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bytes_stop_sharing_their_buffer_and_large_ones_keep_it() {
        let buffer = Bytes::from(vec![7u8; 2 * SHARE_FROM_BYTES]);
        let small = detach(buffer.slice(0..40));
        assert_eq!(small, buffer.slice(0..40));
        assert_ne!(small.as_ptr(), buffer.as_ptr(), "a small slice was copied");
        let large = detach(buffer.slice(0..SHARE_FROM_BYTES));
        assert_eq!(large.as_ptr(), buffer.as_ptr(), "a large slice shares the buffer");
    }
}
