//! [`ClientError`]: everything a call of the SDK can fail with.
//!
//! Each variant carries what a caller needs to decide what to do next: the server's own
//! message for a rejected argument, the attempts and endpoints behind an `Unavailable`, the
//! time spent behind a `Timeout`. [`ClientError::is_retryable`] tells whether trying the same
//! call again later may succeed. Normal outcomes of an eventually consistent store, such as
//! siblings on a read, are values (see [`crate::ReadResult`]), never errors.

use std::time::Duration;

/// The error type of every fallible call in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// An endpoint given to the builder is not a usable `host:port` address, or the list is
    /// empty. Returned by [`crate::ClientBuilder::build`] before any connection is made.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as the caller wrote it (empty when no endpoint was given).
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A builder setting is out of range (a zero timeout, too many retries, ...).
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),

    /// The request was rejected as malformed. The message is the server's `INVALID_ARGUMENT`
    /// text verbatim (for example `key is 2000 bytes, the limit is 1024`), or the SDK's own
    /// check of an option (for example a zero TTL) that never left the process.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No endpoint could serve the request: every attempt ended in a transport error or an
    /// `UNAVAILABLE` status (for example too few replicas answered). Retrying later may work.
    #[error(
        "unavailable after {attempts} attempt(s) on {}: {message}",
        .endpoints.join(", ")
    )]
    Unavailable {
        /// The last failure: the server's status message or the transport error text.
        message: String,
        /// How many attempts were made, the first one included.
        attempts: u32,
        /// The endpoints tried, in the order they were first tried, each once.
        endpoints: Vec<String>,
    },

    /// The last attempt did not answer in time (the client's request timeout, or the
    /// deadline the server enforced for it). Retrying later may work.
    #[error("timed out after {after:?} and {attempts} attempt(s)")]
    Timeout {
        /// The time the whole call took, backoffs included.
        after: Duration,
        /// How many attempts were made, the first one included.
        attempts: u32,
    },

    /// A [`crate::Context`] could not be parsed from its text form.
    #[error("invalid context: {0}")]
    InvalidContext(String),

    /// Any other status the server answered with (`FAILED_PRECONDITION`, `INTERNAL`, ...).
    /// These are not retried.
    #[error("rpc failed with {code:?}: {message}")]
    Rpc {
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's status message.
        message: String,
    },
}

impl ClientError {
    /// Whether the same call may succeed if it is made again later: true for
    /// [`ClientError::Unavailable`] and [`ClientError::Timeout`], false for everything the
    /// caller has to fix or that the server refused outright.
    ///
    /// ```
    /// use ringkv_client::ClientError;
    /// let error = ClientError::InvalidArgument("key is empty".to_owned());
    /// assert!(!error.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: ClientError, expected_message: &str, expected_retryable: bool) {
        assert_eq!(error.to_string(), expected_message);
        assert_eq!(error.is_retryable(), expected_retryable);
    }

    #[test]
    fn messages_and_retryability() {
        check(
            ClientError::InvalidArgument("key is 2000 bytes, the limit is 1024".to_owned()),
            "invalid argument: key is 2000 bytes, the limit is 1024",
            false,
        );
        check(
            ClientError::Unavailable {
                message: "not enough replicas".to_owned(),
                attempts: 2,
                endpoints: vec!["a:1".to_owned(), "b:2".to_owned()],
            },
            "unavailable after 2 attempt(s) on a:1, b:2: not enough replicas",
            true,
        );
        check(
            ClientError::Timeout {
                after: Duration::from_millis(1500),
                attempts: 1,
            },
            "timed out after 1.5s and 1 attempt(s)",
            true,
        );
        check(
            ClientError::InvalidEndpoint {
                endpoint: "nope".to_owned(),
                reason: "missing port".to_owned(),
            },
            "invalid endpoint \"nope\": missing port",
            false,
        );
        check(
            ClientError::Rpc {
                code: tonic::Code::FailedPrecondition,
                message: "node is leaving".to_owned(),
            },
            "rpc failed with FailedPrecondition: node is leaving",
            false,
        );
    }
}
