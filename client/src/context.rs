//! [`Context`]: the opaque causal context a read returns and a write hands back.
//!
//! The bytes are the server's encoding of a version vector; the SDK never looks inside.
//! Pass the context of a [`crate::ReadResult`] unchanged to the next `put` or `delete` of
//! the same key so the write replaces exactly the siblings that read saw. For the CLI and
//! other text channels a context has a text form: URL-safe base64 without padding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;

use crate::ClientError;

/// What a client has seen of a key, as an opaque token.
///
/// The empty context means "seen nothing": a write with it is concurrent with everything
/// stored and so adds a sibling instead of replacing one.
///
/// ```
/// use ringkv_client::Context;
/// let context = Context::from_bytes(&b"\x01\x02\x03"[..]);
/// let text = context.to_base64();
/// assert_eq!(text, "AQID");
/// assert_eq!(Context::from_base64(&text)?, context);
/// assert!(Context::from_base64("not base64!").is_err());
/// # Ok::<(), ringkv_client::ClientError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Context(Bytes);

impl Context {
    /// The empty context: a write with it has seen nothing.
    pub fn empty() -> Self {
        Self(Bytes::new())
    }

    /// Wraps bytes received from a server (or saved from an earlier [`Context::as_bytes`]).
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        Self(bytes.into())
    }

    /// The bytes to store or send elsewhere; cheap to clone.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives up the wrapper.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Whether this is the empty context.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text form: URL-safe base64 without padding (the empty context is `""`).
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }

    /// Parses the text form of [`Context::to_base64`].
    ///
    /// # Errors
    /// [`ClientError::InvalidContext`] when `text` is not URL-safe base64 without padding.
    pub fn from_base64(text: &str) -> Result<Self, ClientError> {
        URL_SAFE_NO_PAD
            .decode(text)
            .map(|bytes| Self(Bytes::from(bytes)))
            .map_err(|error| ClientError::InvalidContext(format!("{text:?} is not base64: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8], expected_text: &str) {
        let context = Context::from_bytes(bytes.to_vec());
        assert_eq!(context.to_base64(), expected_text);
        assert_eq!(Context::from_base64(expected_text), Ok(context));
    }

    #[test]
    fn base64_round_trip() {
        check(b"", "");
        check(b"\x00", "AA");
        check(b"\xfb\xff", "-_8");
        check(&[7; 40], "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw");
    }

    #[test]
    fn bad_base64_is_invalid_context() {
        for text in ["a", "AA==", "+/8", "not base64", "é"] {
            match Context::from_base64(text) {
                Err(ClientError::InvalidContext(message)) => assert!(message.contains("base64")),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn empty_context() {
        assert!(Context::empty().is_empty());
        assert_eq!(Context::empty(), Context::default());
        assert!(!Context::from_bytes(&b"x"[..]).is_empty());
    }
}
