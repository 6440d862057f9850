//! regauth's clock, moved forward by the tests that would otherwise sleep
//! out a lifetime regauth measures in wall-clock seconds: a page session,
//! a refresh token's maximum age, an app password's recheck, a signing
//! key's switch.
//!
//! The clock (`regauth_providers::clock`) is one per process, and the tests
//! of this binary run side by side in it. A test that moves it therefore
//! has it to itself: [`Clock::take`] waits until no other test holds a
//! [`Fixture`](super::Fixture), keeps new ones waiting, and puts the clock
//! back when the test ends. No other test sees time jump, and the
//! processes the tests start (the `regauth` binary, registries, identity
//! providers) keep agreeing with it.
//!
//! Where regauth measures time on timers of its own (the verdict cache's
//! TTL, the readiness report's second), tests forget what is cached, as
//! that time passing would: [`Chain::forget_verdicts`] and
//! [`forget_readiness`].
//!
//! [`Chain::forget_verdicts`]: regauth::identity::Chain::forget_verdicts

use std::cell::Cell;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::Duration;

use regauth::AppState;

/// Who holds the clock now.
struct Holders {
    /// The threads of tests holding fixtures, once per fixture.
    fixtures: Vec<ThreadId>,
    /// The thread of the test moving the clock.
    mover: Option<ThreadId>,
    /// Tests waiting to move it: new fixtures wait behind them.
    waiting: usize,
}

static HOLDERS: Mutex<Holders> = Mutex::new(Holders {
    fixtures: Vec::new(),
    mover: None,
    waiting: 0,
});
static CHANGED: Condvar = Condvar::new();

fn holders() -> MutexGuard<'static, Holders> {
    HOLDERS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wait(guard: MutexGuard<'static, Holders>) -> MutexGuard<'static, Holders> {
    CHANGED.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// A fixture's hold on the clock: while one is held by another test, the
/// clock does not move.
pub(super) struct Share(ThreadId);

impl Share {
    /// Waits while another test moves the clock, or waits to, unless this
    /// test already holds a fixture (its second one) or moves the clock.
    pub(super) fn take() -> Self {
        let me = thread::current().id();
        let mut holders = holders();
        loop {
            let mine = holders.mover == Some(me) || holders.fixtures.contains(&me);
            if mine || (holders.mover.is_none() && holders.waiting == 0) {
                break;
            }
            holders = wait(holders);
        }
        holders.fixtures.push(me);
        Self(me)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut holders = holders();
        if let Some(at) = holders.fixtures.iter().position(|t| *t == self.0) {
            holders.fixtures.swap_remove(at);
        }
        CHANGED.notify_all();
    }
}

/// The clock, held by the test that moves it.
pub struct Clock {
    /// Seconds moved so far, taken back on drop.
    moved: Cell<i64>,
}

impl Clock {
    /// Waits until no other test holds a fixture or the clock, then holds
    /// the clock until dropped. A test takes it before its fixture, so that
    /// two tests waiting to move the clock never wait for each other.
    pub fn take() -> Self {
        let me = thread::current().id();
        let mut holders = holders();
        assert!(
            !holders.fixtures.contains(&me),
            "take the clock before the fixture"
        );
        holders.waiting += 1;
        while holders.mover.is_some() || !holders.fixtures.is_empty() {
            holders = wait(holders);
        }
        holders.waiting -= 1;
        holders.mover = Some(me);
        Self {
            moved: Cell::new(0),
        }
    }

    /// Moves regauth's clock forward by `by` (whole seconds).
    pub fn advance(&self, by: Duration) {
        let seconds = i64::try_from(by.as_secs()).expect("a test-sized duration");
        regauth_providers::clock::advance(seconds);
        self.moved.set(self.moved.get() + seconds);
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        regauth_providers::clock::advance(-self.moved.get());
        holders().mover = None;
        CHANGED.notify_all();
    }
}

/// Forgets `state`'s last readiness report, as the second it is kept for
/// passing would: the next `/readyz` makes a new one.
pub async fn forget_readiness(state: &AppState) {
    *state.readiness.lock().await = None;
}
