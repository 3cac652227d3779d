//! What a read returns ([`ReadResult`], [`SiblingValue`]) and how to turn siblings into one
//! value ([`SiblingResolver`], [`LastWriterWins`]).
//!
//! Concurrent writes to a key survive as siblings; the store never picks a winner behind the
//! caller's back. The caller merges them (a union of sets, the larger counter, the newest
//! timestamp, ...) and writes the result back with the read's context, which replaces exactly
//! the siblings it merged.

use bytes::Bytes;

use crate::received::detach;
use crate::{proto, Context};

/// One live version of a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiblingValue {
    /// The value as written.
    pub value: Bytes,
    /// Hybrid logical timestamp of the write: wall milliseconds `<< 16` | logical counter.
    pub hlc: u64,
    /// Wall-clock milliseconds since the Unix epoch after which the value disappears, when
    /// it was written with a TTL.
    pub expires_at_ms: Option<u64>,
    /// The write's identity, `"actor:counter"`, for display and debugging.
    pub dot: String,
}

/// The answer to a `get`: every live sibling and the causal context covering them.
///
/// An absent key (never written, deleted or expired) is an empty result, not an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadResult {
    /// Live siblings in the server's order; empty when the key is absent.
    pub siblings: Vec<SiblingValue>,
    /// Pass this unchanged to the next `put` or `delete` of the key.
    pub context: Context,
    /// How many replicas answered before the node replied.
    pub replicas_replied: u32,
}

impl ReadResult {
    /// Whether the key is absent (no live sibling).
    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty()
    }

    /// The value when there is exactly one sibling; `None` when the key is absent or has
    /// concurrent siblings (use [`ReadResult::resolve`] for those).
    pub fn value(&self) -> Option<&Bytes> {
        match self.siblings.as_slice() {
            [only] => Some(&only.value),
            _ => None,
        }
    }

    /// Passes all siblings (possibly none) to `resolver` and returns its choice.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use ringkv_client::{LastWriterWins, ReadResult, SiblingValue};
    /// # let sibling = |value: &'static str, hlc| SiblingValue {
    /// #     value: Bytes::from(value), hlc, expires_at_ms: None, dot: format!("n1:{hlc}"),
    /// # };
    /// # let read = ReadResult { siblings: vec![sibling("a", 1), sibling("bb", 2)], ..ReadResult::default() };
    /// // The built-in rule: the newest write wins.
    /// assert_eq!(read.resolve(&LastWriterWins), Some(Bytes::from("bb")));
    /// // Or any closure: here, the longest value.
    /// let longest = read.resolve(&|siblings: &[SiblingValue]| {
    ///     siblings.iter().map(|s| s.value.clone()).max_by_key(|v| v.len())
    /// });
    /// assert_eq!(longest, Some(Bytes::from("bb")));
    /// ```
    pub fn resolve(&self, resolver: &impl SiblingResolver) -> Option<Bytes> {
        resolver.resolve(&self.siblings)
    }

    /// The sibling with the greatest `(hlc, dot)`, the dot breaking ties between writes with
    /// the same timestamp; `None` when the key is absent.
    pub fn last_writer_wins(&self) -> Option<&SiblingValue> {
        last_writer(&self.siblings)
    }
}

impl From<proto::GetResponse> for ReadResult {
    fn from(response: proto::GetResponse) -> Self {
        Self {
            siblings: response
                .siblings
                .into_iter()
                .map(|sibling| SiblingValue {
                    value: detach(sibling.value),
                    hlc: sibling.hlc,
                    expires_at_ms: sibling.expires_at_ms,
                    dot: sibling.dot,
                })
                .collect(),
            context: Context::from_bytes(detach(response.context)),
            replicas_replied: response.replicas_replied,
        }
    }
}

/// Merges concurrent siblings into the one value the caller will write back.
///
/// Implemented by [`LastWriterWins`] and by every closure
/// `Fn(&[SiblingValue]) -> Option<Bytes>`. Returning `None` means "nothing to write".
pub trait SiblingResolver {
    /// Chooses or builds a value from `siblings` (which may be empty).
    fn resolve(&self, siblings: &[SiblingValue]) -> Option<Bytes>;
}

/// Keeps the sibling with the greatest `(hlc, dot)`; see [`ReadResult::last_writer_wins`].
///
/// Simple, and right for caches; it silently discards the other concurrent writes, so
/// prefer a merging resolver for data where every write matters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastWriterWins;

impl SiblingResolver for LastWriterWins {
    fn resolve(&self, siblings: &[SiblingValue]) -> Option<Bytes> {
        last_writer(siblings).map(|sibling| sibling.value.clone())
    }
}

impl<F> SiblingResolver for F
where
    F: Fn(&[SiblingValue]) -> Option<Bytes>,
{
    fn resolve(&self, siblings: &[SiblingValue]) -> Option<Bytes> {
        self(siblings)
    }
}

fn last_writer(siblings: &[SiblingValue]) -> Option<&SiblingValue> {
    siblings.iter().max_by(|a, b| (a.hlc, &a.dot).cmp(&(b.hlc, &b.dot)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sibling(value: &'static str, hlc: u64, dot: &str) -> SiblingValue {
        SiblingValue {
            value: Bytes::from(value),
            hlc,
            expires_at_ms: None,
            dot: dot.to_owned(),
        }
    }

    fn read(siblings: Vec<SiblingValue>) -> ReadResult {
        ReadResult {
            siblings,
            ..ReadResult::default()
        }
    }

    fn check_lww(siblings: Vec<SiblingValue>, expected: Option<&str>) {
        let read = read(siblings);
        let winner = read.last_writer_wins().map(|s| s.value.clone());
        assert_eq!(winner, expected.map(|v| Bytes::copy_from_slice(v.as_bytes())));
        assert_eq!(read.resolve(&LastWriterWins), winner);
    }

    #[test]
    fn last_writer_wins_orders_by_hlc_then_dot() {
        check_lww(vec![], None);
        check_lww(vec![sibling("a", 5, "n1:1")], Some("a"));
        check_lww(
            vec![
                sibling("a", 5, "n1:1"),
                sibling("b", 9, "n2:1"),
                sibling("c", 7, "n3:4"),
            ],
            Some("b"),
        );
        // Equal timestamps: the greater dot wins, whatever the order of arrival.
        check_lww(vec![sibling("a", 5, "n2:1"), sibling("b", 5, "n1:9")], Some("a"));
        check_lww(vec![sibling("b", 5, "n1:9"), sibling("a", 5, "n2:1")], Some("a"));
    }

    #[test]
    fn value_only_for_a_single_sibling() {
        assert_eq!(read(vec![]).value(), None);
        assert!(read(vec![]).is_empty());
        assert_eq!(read(vec![sibling("a", 1, "n1:1")]).value(), Some(&Bytes::from("a")));
        assert_eq!(
            read(vec![sibling("a", 1, "n1:1"), sibling("b", 2, "n1:2")]).value(),
            None
        );
    }

    #[test]
    fn closure_resolver_sees_every_sibling() {
        let read = read(vec![
            sibling("x", 3, "n1:1"),
            sibling("y", 1, "n2:1"),
            sibling("z", 2, "n3:1"),
        ]);
        // A set-union resolver: concatenate the sorted distinct values.
        let union = |siblings: &[SiblingValue]| {
            let mut values: Vec<&[u8]> = siblings.iter().map(|s| s.value.as_ref()).collect();
            values.sort_unstable();
            values.dedup();
            Some(Bytes::from(values.concat()))
        };
        assert_eq!(read.resolve(&union), Some(Bytes::from("xyz")));
        assert_eq!(read.resolve(&|_: &[SiblingValue]| None), None);
    }

    #[test]
    fn converts_from_the_wire() {
        let response = proto::GetResponse {
            siblings: vec![proto::Sibling {
                value: Bytes::from("v"),
                hlc: 42,
                expires_at_ms: Some(1000),
                dot: "n1:3".to_owned(),
            }],
            context: Bytes::from("ctx"),
            replicas_replied: 2,
        };
        let read = ReadResult::from(response);
        assert_eq!(
            read.siblings,
            vec![SiblingValue {
                value: Bytes::from("v"),
                hlc: 42,
                expires_at_ms: Some(1000),
                dot: "n1:3".to_owned(),
            }]
        );
        assert_eq!(read.context, Context::from_bytes(&b"ctx"[..]));
        assert_eq!(read.replicas_replied, 2);
    }
}
