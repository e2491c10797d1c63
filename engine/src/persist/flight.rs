//! A flush in flight: one fdatasync group of commits written and synced by
//! a glommio task of its own while the core goes on applying batches.
//!
//! Why a task: a flush awaited where it is due leaves the core idle for the
//! whole write and sync. On the async-mode ingest benchmark the ingest
//! thread was blocked on its flushes 36-41 % of its wall time, while the
//! disk sat idle whenever the core worked (BENCHMARKS.md, "Fifth session").
//! Since the commits of one group are written concurrently (sync groups,
//! see `segment_log`), the task hands all of a group's writes to the kernel
//! in one reactor turn, syncs in another, and is done.
//!
//! The price is reactor turns: glommio hands queued I/O to the kernel and
//! reaps completions only between tasks, so a core that never waits would
//! leave a flight where it is. [`TurnPacer`] tells the owner when to give
//! the reactor a turn while a flight is on its way.
//!
//! Dropping a log with a flight on its way is a crash as far as the file
//! is concerned (the group was never acknowledged as durable), but its
//! writes are still landing. A reopen of the same directory in the same
//! thread (tests stage crashes that way) first waits for them
//! ([`wait_for_abandoned`]), so no write of the dropped log lands after
//! recovery has read the file.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::task::JoinHandle;

use super::error::PersistError;

/// How long a flight may wait for a reactor turn: the owner gives one
/// (a 1 us timer, which parks the executor once: ~40 us on the development
/// VM) when none happened for this long. A flight needs about three turns
/// (writes out, writes reaped and the sync out, the sync reaped), so it
/// lands within a few of these after the disk is done.
pub const FLIGHT_TURN_INTERVAL: Duration = Duration::from_micros(500);
/// The timer that makes the executor poll its reactor once.
const TURN_TIMER: Duration = Duration::from_micros(1);

/// A flight's outcome: the log's position after its last commit.
pub(super) type FlightResult<P> = Result<P, PersistError>;

/// The task writing one group.
pub(super) struct Flight<P: 'static> {
    handle: JoinHandle<FlightResult<P>>,
}

impl<P: 'static> Flight<P> {
    pub fn new(handle: JoinHandle<FlightResult<P>>) -> Flight<P> {
        Flight { handle }
    }

    /// The outcome once the task is done. A flight task never panics
    /// without the whole executor going down, and is never cancelled.
    pub fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<FlightResult<P>> {
        std::pin::Pin::new(&mut self.handle)
            .poll(cx)
            .map(|outcome| outcome.expect("a flight task runs to its end"))
    }

    /// The log holding it is gone: its writes still land, and a reopen of
    /// `dir` waits for them.
    pub fn abandon(self, dir: &Path) {
        ABANDONED.with(|abandoned| {
            abandoned
                .borrow_mut()
                .push((dir.to_path_buf(), Box::new(self.handle)))
        });
    }
}

/// A detached flight of a dropped log, type-erased (its position type is
/// the log's).
trait Abandoned {
    fn poll_landed(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

impl<P> Abandoned for JoinHandle<FlightResult<P>> {
    fn poll_landed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        std::pin::Pin::new(self).poll(cx).map(|_| ())
    }
}

thread_local! {
    /// Flights of logs dropped on this thread while on their way.
    static ABANDONED: RefCell<Vec<(PathBuf, Box<dyn Abandoned>)>> =
        const { RefCell::new(Vec::new()) };
}

/// Waits until no flight of a log dropped on this thread is still writing
/// into `dir`.
pub(super) async fn wait_for_abandoned(dir: &Path) {
    poll_fn(|cx| {
        ABANDONED.with(|abandoned| {
            let mut abandoned = abandoned.borrow_mut();
            abandoned.retain_mut(|(flight_dir, flight)| {
                flight_dir != dir || flight.poll_landed(cx).is_pending()
            });
            if abandoned.iter().any(|(flight_dir, _)| flight_dir == dir) {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
    })
    .await
}

/// Paces the reactor turns a flight needs (see the module docs).
#[derive(Debug)]
pub struct TurnPacer {
    last_turn: Instant,
}

impl Default for TurnPacer {
    fn default() -> Self {
        TurnPacer {
            last_turn: Instant::now(),
        }
    }
}

impl TurnPacer {
    /// Gives the reactor a turn if the executor is about to take one
    /// anyway (its preempt timer fired) or none happened for
    /// [`FLIGHT_TURN_INTERVAL`]; otherwise returns at once.
    pub async fn turn_if_due(&mut self, now: Instant) {
        if glommio::executor().need_preempt() {
            glommio::yield_if_needed().await;
            self.last_turn = now;
        } else if now.duration_since(self.last_turn) >= FLIGHT_TURN_INTERVAL {
            glommio::timer::sleep(TURN_TIMER).await;
            self.last_turn = Instant::now();
        }
    }

    /// Gives the reactor a turn now (a flight just started: its writes go
    /// to the kernel in this turn).
    pub async fn turn_now(&mut self) {
        glommio::timer::sleep(TURN_TIMER).await;
        self.last_turn = Instant::now();
    }

    /// A wait for I/O just gave the reactor a turn.
    pub fn turned(&mut self, now: Instant) {
        self.last_turn = now;
    }
}
