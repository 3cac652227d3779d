//! The round ticker every background loop runs on.

use std::time::Duration;

use tokio::sync::watch;

/// The ticks of a background loop: one per interval until the node shuts down. A slow
/// round delays the next tick instead of piling rounds up.
pub(crate) struct Rounds {
    ticker: tokio::time::Interval,
    shutdown: watch::Receiver<bool>,
}

impl Rounds {
    /// Ticks every `interval` until `shutdown` changes.
    pub fn new(interval: Duration, shutdown: watch::Receiver<bool>) -> Rounds {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Rounds { ticker, shutdown }
    }

    /// Waits for the next round; `false` once the node is shutting down.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.ticker.tick() => true,
            _ = self.shutdown.changed() => false,
        }
    }
}
