//! The idle timer shared by the buffered and the splice relay.
//!
//! One `Sleep` per connection. Activity only records the time; when the sleep fires,
//! it is re-armed at `last activity + timeout` if bytes moved meanwhile, so the hot
//! path never touches the timer wheel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Tracks the last activity of a connection against an optional idle timeout.
pub(crate) struct IdleWatch {
    timeout: Option<Duration>,
    last_activity: Instant,
    seen: u64,
}

impl IdleWatch {
    /// A watch for `timeout` and the sleep to pin next to it (`None` without a timeout).
    pub(crate) fn new(timeout: Option<Duration>) -> (Self, Option<Sleep>) {
        let now = Instant::now();
        let sleep = timeout.map(tokio::time::sleep);
        (
            Self {
                timeout,
                last_activity: now,
                seen: 0,
            },
            sleep,
        )
    }

    /// Records the connection's progress (any monotonically growing count of bytes
    /// moved); a change counts as activity now.
    pub(crate) fn observe(&mut self, progress: u64) {
        if self.timeout.is_some() && progress != self.seen {
            self.seen = progress;
            self.last_activity = Instant::now();
        }
    }

    /// Ready once the connection has been idle for the timeout; never without one.
    pub(crate) fn poll_expired(
        &self,
        sleep: Pin<&mut Option<Sleep>>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let (Some(mut sleep), Some(timeout)) = (sleep.as_pin_mut(), self.timeout) else {
            return Poll::Pending;
        };
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let Some(deadline) = self.last_activity.checked_add(timeout) else {
                // Too far in the future to ever fire.
                return Poll::Pending;
            };
            if deadline <= Instant::now() {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(deadline);
        }
    }
}
