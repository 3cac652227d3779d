//! Per-request options: how many replicas must answer ([`Consistency`]), how long to wait,
//! and for writes, how long the value lives.
//!
//! Every field is optional; `None` means "the node's configured default" for consistency
//! and "the client's request timeout" for the timeout, so `ReadOptions::default()` behaves
//! exactly like [`crate::Client::get`]. This module also converts options to their wire form
//! and rejects values that would mean something else on the wire (a zero TTL would read as
//! "no expiry").

use std::time::Duration;

use crate::{proto, ClientError};

/// The longest timeout a request or the client may be given.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// How many replicas must answer a read (R) or acknowledge a write (W).
///
/// Requests that carry no consistency (`None` in the options) use the node's configured
/// default, which is [`Consistency::Quorum`] unless the operator changed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// One replica: lowest latency, may read stale data.
    One,
    /// A majority of the N replicas (N / 2 + 1).
    Quorum,
    /// Every one of the N replicas.
    All,
    /// Exactly this many replicas, at least 1 and at most N (the server checks N).
    Count(u32),
}

impl Consistency {
    fn to_proto(self) -> Result<proto::Consistency, ClientError> {
        let (level, count) = match self {
            Self::One => (proto::Level::One, 0),
            Self::Quorum => (proto::Level::Quorum, 0),
            Self::All => (proto::Level::All, 0),
            Self::Count(0) => {
                return Err(ClientError::InvalidArgument(
                    "consistency count must be at least 1".to_owned(),
                ))
            }
            Self::Count(count) => (proto::Level::Count, count),
        };
        Ok(proto::Consistency {
            level: level.into(),
            count,
        })
    }
}

/// Options of [`crate::Client::get_with`].
///
/// ```
/// use std::time::Duration;
/// use ringkv_client::{Consistency, ReadOptions};
/// let options = ReadOptions {
///     consistency: Some(Consistency::One),
///     ..ReadOptions::default()
/// };
/// assert_eq!(options.timeout, None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// How many replicas must answer; `None` is the node's default.
    pub consistency: Option<Consistency>,
    /// How long this call may take per attempt, sent to the node as its coordinator timeout;
    /// `None` is the client's request timeout (and the node's own default).
    pub timeout: Option<Duration>,
}

/// Options of [`crate::Client::put_with`] and [`crate::Client::delete_with`].
///
/// ```
/// use std::time::Duration;
/// use ringkv_client::{Consistency, WriteOptions};
/// let options = WriteOptions {
///     consistency: Some(Consistency::All),
///     ttl: Some(Duration::from_secs(60)),
///     ..WriteOptions::default()
/// };
/// assert_eq!(options.timeout, None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// How many replicas must acknowledge; `None` is the node's default.
    pub consistency: Option<Consistency>,
    /// How long this call may take per attempt, sent to the node as its coordinator timeout;
    /// `None` is the client's request timeout (and the node's own default).
    pub timeout: Option<Duration>,
    /// How long the value lives, rounded up to whole milliseconds; `None` means forever.
    /// Puts only: a delete with a TTL is rejected as an invalid argument.
    pub ttl: Option<Duration>,
}

/// The consistency field of a request. `None` is sent as an explicit `LEVEL_DEFAULT` so the
/// node sees the same thing whether or not it treats an absent message as the default.
pub(crate) fn consistency_to_proto(
    consistency: Option<Consistency>,
) -> Result<Option<proto::Consistency>, ClientError> {
    match consistency {
        None => Ok(Some(proto::Consistency::default())),
        Some(consistency) => consistency.to_proto().map(Some),
    }
}

/// The wire `timeout_ms` (0 = node default) for an optional per-request timeout.
pub(crate) fn timeout_to_proto(timeout: Option<Duration>) -> Result<u32, ClientError> {
    let Some(timeout) = timeout else {
        return Ok(0);
    };
    check_timeout(timeout).map_err(ClientError::InvalidArgument)?;
    let millis = millis_rounded_up(timeout);
    // TIMEOUT_MAX is far below u32::MAX milliseconds, so this cannot fail after the check.
    Ok(u32::try_from(millis).unwrap_or(u32::MAX))
}

/// The wire `ttl_ms` (0 = no expiry) for an optional TTL.
pub(crate) fn ttl_to_proto(ttl: Option<Duration>) -> Result<u64, ClientError> {
    match ttl {
        None => Ok(0),
        Some(ttl) if ttl.is_zero() => Err(ClientError::InvalidArgument("ttl must be positive".to_owned())),
        Some(ttl) => u64::try_from(millis_rounded_up(ttl))
            .map_err(|_| ClientError::InvalidArgument(format!("ttl of {ttl:?} does not fit in 64-bit milliseconds"))),
    }
}

/// Checks a timeout against `(0, TIMEOUT_MAX]`, describing the problem on failure.
pub(crate) fn check_timeout(timeout: Duration) -> Result<(), String> {
    if timeout.is_zero() {
        return Err("timeout must be positive".to_owned());
    }
    if timeout > TIMEOUT_MAX {
        return Err(format!("timeout is {timeout:?}, the limit is {TIMEOUT_MAX:?}"));
    }
    Ok(())
}

// Rounding up keeps a sub-millisecond duration from turning into 0, which means "default"
// for timeouts and "never expires" for TTLs.
fn millis_rounded_up(duration: Duration) -> u128 {
    duration.as_nanos().div_ceil(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_consistency(consistency: Option<Consistency>, expected: Option<(proto::Level, u32)>) {
        let got = consistency_to_proto(consistency)
            .ok()
            .flatten()
            .map(|c| (c.level(), c.count));
        assert_eq!(got, expected);
    }

    #[test]
    fn consistency_maps_to_level_and_count() {
        check_consistency(None, Some((proto::Level::Default, 0)));
        check_consistency(Some(Consistency::One), Some((proto::Level::One, 0)));
        check_consistency(Some(Consistency::Quorum), Some((proto::Level::Quorum, 0)));
        check_consistency(Some(Consistency::All), Some((proto::Level::All, 0)));
        check_consistency(Some(Consistency::Count(2)), Some((proto::Level::Count, 2)));
        check_consistency(Some(Consistency::Count(0)), None);
    }

    #[test]
    fn timeouts_round_up_and_are_bounded() {
        assert_eq!(timeout_to_proto(None), Ok(0));
        assert_eq!(timeout_to_proto(Some(Duration::from_micros(1))), Ok(1));
        assert_eq!(timeout_to_proto(Some(Duration::from_millis(250))), Ok(250));
        assert_eq!(timeout_to_proto(Some(TIMEOUT_MAX)), Ok(3_600_000));
        assert!(timeout_to_proto(Some(Duration::ZERO)).is_err());
        assert!(timeout_to_proto(Some(TIMEOUT_MAX + Duration::from_millis(1))).is_err());
    }

    #[test]
    fn ttls_round_up_and_zero_is_rejected() {
        assert_eq!(ttl_to_proto(None), Ok(0));
        assert_eq!(ttl_to_proto(Some(Duration::from_nanos(1))), Ok(1));
        assert_eq!(ttl_to_proto(Some(Duration::from_secs(60))), Ok(60_000));
        assert_eq!(
            ttl_to_proto(Some(Duration::ZERO)),
            Err(ClientError::InvalidArgument("ttl must be positive".to_owned()))
        );
    }
}
