//! The retry policy: which failures are worth another attempt ([`classify`]) and how long
//! to wait before it ([`Backoff`]).
//!
//! Only failures that another node, or the same node a moment later, may not repeat are
//! retried: transport errors, `UNAVAILABLE`, and attempts that ran out of time. Anything
//! the server decided about the request itself (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`,
//! ...) comes back at once. The loop that applies the policy is `Client::call` in
//! `client.rs`.

use std::error::Error as _;
use std::time::Duration;

use rand::Rng;
use tonic::{Code, Status};

use crate::ClientError;

/// Exponential backoff with "equal jitter": the delay before retry `k` (1-based) is drawn
/// uniformly from `[d / 2, d]` where `d = min(initial * 2^(k-1), max)`. Half the delay is
/// guaranteed, so retries do not hammer a node that is restarting; the random half spreads
/// out clients that failed at the same moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The delay before retry number `retry` (1 for the first retry).
    pub(crate) fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        debug_assert!(retry >= 1);
        debug_assert!(self.initial <= self.max);
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        let full = self.initial.saturating_mul(factor).min(self.max);
        let half = full / 2;
        let spread_nanos = u64::try_from((full - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rng.random_range(0..=spread_nanos))
    }
}

/// What one failed attempt means for the call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Try the next endpoint; the text describes what went wrong here.
    Unavailable(String),
    /// The attempt ran out of time; try the next endpoint.
    Timeout,
    /// Retrying cannot help: return this error.
    Fatal(ClientError),
}

/// Sorts a failed attempt's status into retry or give up.
pub(crate) fn classify(status: &Status) -> Failure {
    // The channel enforces the grpc-timeout we set on each request on this side too; when
    // it fires first, the status carries `TimeoutExpired` among its causes.
    if caused_by_timeout(status) {
        return Failure::Timeout;
    }
    // A status that carries a source was made on this side of the wire from a transport
    // error (connection refused, reset, protocol error): the node may be down, so another
    // one may answer, whatever code tonic picked for it.
    if status.source().is_some() {
        return Failure::Unavailable(describe(status));
    }
    match status.code() {
        Code::Unavailable => Failure::Unavailable(status.message().to_owned()),
        // Cancelled is what tonic's server answers when the grpc-timeout we send expires.
        Code::DeadlineExceeded | Code::Cancelled => Failure::Timeout,
        Code::InvalidArgument => Failure::Fatal(ClientError::InvalidArgument(status.message().to_owned())),
        code => Failure::Fatal(ClientError::Rpc {
            code,
            message: status.message().to_owned(),
        }),
    }
}

fn caused_by_timeout(status: &Status) -> bool {
    let mut cause = status.source();
    while let Some(error) = cause {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The status message followed by its chain of causes, skipping causes whose text is
/// already in the description (transport errors repeat themselves a lot).
fn describe(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut cause = status.source();
    while let Some(error) = cause {
        let part = error.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn check_backoff(initial_ms: u64, max_ms: u64, retry: u32, expected_full_ms: u64) {
        let backoff = Backoff {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let full = Duration::from_millis(expected_full_ms);
        for _ in 0..100 {
            let delay = backoff.delay(retry, &mut rng);
            assert!(delay >= full / 2, "{delay:?} < half of {full:?}");
            assert!(delay <= full, "{delay:?} > {full:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_max() {
        check_backoff(10, 1000, 1, 10);
        check_backoff(10, 1000, 2, 20);
        check_backoff(10, 1000, 4, 80);
        check_backoff(10, 1000, 8, 1000);
        check_backoff(10, 1000, 40, 1000);
        check_backoff(10, 1000, u32::MAX, 1000);
        check_backoff(0, 0, 3, 0);
    }

    #[test]
    fn backoff_is_jittered_and_reproducible_from_a_seed() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..=5).map(|retry| backoff.delay(retry, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    fn check_classify(status: Status, expected: Failure) {
        assert_eq!(classify(&status), expected);
    }

    #[test]
    fn classification() {
        check_classify(
            Status::unavailable("2 of 3 replicas down"),
            Failure::Unavailable("2 of 3 replicas down".to_owned()),
        );
        check_classify(Status::deadline_exceeded("slow"), Failure::Timeout);
        check_classify(Status::cancelled("Timeout expired"), Failure::Timeout);
        check_classify(
            Status::invalid_argument("key is 2000 bytes, the limit is 1024"),
            Failure::Fatal(ClientError::InvalidArgument(
                "key is 2000 bytes, the limit is 1024".to_owned(),
            )),
        );
        check_classify(
            Status::failed_precondition("leaving"),
            Failure::Fatal(ClientError::Rpc {
                code: Code::FailedPrecondition,
                message: "leaving".to_owned(),
            }),
        );
        // Made locally from an I/O error: a transport failure, retried whatever its code.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let status = Status::from_error(Box::new(io));
        check_classify(status, Failure::Unavailable("reset by peer".to_owned()));
        // The local grpc-timeout of the channel fired.
        let status = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        check_classify(status, Failure::Timeout);
    }
}
