//! Group commit for many writer tasks on one core.
//!
//! A server that handles a whole network round in one task already groups
//! its writes (one batch per round, one [`DurableStore::commit`]). This is
//! for the other shape: many tasks on one executor each awaiting their own
//! durable write. Writers add their ops to the one open batch; the first
//! writer to find no commit running becomes the leader and commits the open
//! batch, and keeps committing whatever batch filled up meanwhile, while the
//! others wait for the round their ops joined. N concurrent writers thus
//! cost about one segment and one fdatasync per round instead of N.
//!
//! The store is borrowed mutably for the duration of a commit (the API of
//! [`DurableStore::commit`] holds `&mut` across the write):
//! [`GroupCommitter::with_store`] returns `None` while a commit runs.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

use crate::{Batch, Error};

use super::durable_store::DurableStore;
use super::error::PersistError;
use super::file_io::{DmaLayer, FileLayer};

/// Ops one group (one segment, one fdatasync) may hold.
pub const GROUP_OPS_MAX: usize = 1024;
/// Key, value and expiry bytes one group may hold. The engine sizes a
/// batch's buffers up front and the segment keeps them until merged, so a
/// group reserves this much of the store's quota however little it fills:
/// small enough that a stack of barely filled groups stays cheap, large
/// enough for a round of typical writes. Bigger writes go through
/// [`DurableStore::commit`] directly.
pub const GROUP_BYTES_MAX: usize = 256 << 10;
/// Outcomes of recent rounds kept for writers that have not looked yet; a
/// writer looks within one scheduling pass of its round finishing, so this
/// is far more than ever needed.
const ROUND_RESULTS_MAX: usize = 1024;
/// Writers that may wait at once; one per connection at most.
pub const GROUP_WAITERS_MAX: usize = 65_536;

pub struct GroupCommitter<L: FileLayer = DmaLayer> {
    durable: RefCell<DurableStore<L>>,
    open: RefCell<Option<Batch>>,
    /// Round the open batch will be committed as.
    open_round: Cell<u64>,
    /// Every round up to this one has finished.
    done_round: Cell<u64>,
    leading: Cell<bool>,
    failed_rounds: RefCell<VecDeque<(u64, String)>>,
    waiters: RefCell<Vec<Waker>>,
}

impl<L: FileLayer> GroupCommitter<L> {
    pub fn new(durable: DurableStore<L>) -> Self {
        GroupCommitter {
            durable: RefCell::new(durable),
            open: RefCell::new(None),
            open_round: Cell::new(1),
            done_round: Cell::new(0),
            leading: Cell::new(false),
            failed_rounds: RefCell::new(VecDeque::with_capacity(ROUND_RESULTS_MAX)),
            waiters: RefCell::new(Vec::with_capacity(64)),
        }
    }

    /// Reads (or anything else) on the store; `None` while a commit holds it.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut DurableStore<L>) -> T) -> Option<T> {
        let mut durable = self.durable.try_borrow_mut().ok()?;
        Some(f(&mut durable))
    }

    pub fn into_inner(self) -> DurableStore<L> {
        assert!(!self.leading.get());
        self.durable.into_inner()
    }

    /// Adds ops (at most `ops` ops and `bytes` bytes, through `fill`) to the
    /// open group and returns once that group is durable. An error from
    /// `fill` fails only this writer, before anything is added.
    pub async fn write(
        &self,
        ops: usize,
        bytes: usize,
        fill: impl FnOnce(&mut Batch) -> Result<(), Error>,
    ) -> Result<(), PersistError> {
        if ops > GROUP_OPS_MAX || bytes > GROUP_BYTES_MAX {
            return Err(PersistError::Engine(Error::BatchTooLarge {
                ops,
                bytes,
                ops_max: GROUP_OPS_MAX,
                bytes_max: GROUP_BYTES_MAX,
            }));
        }
        let mut fill = Some(fill);
        let round = loop {
            if self.open.borrow().is_none() && !self.leading.get() {
                let batch = self
                    .durable
                    .borrow_mut()
                    .store_mut()
                    .new_batch(GROUP_OPS_MAX, GROUP_BYTES_MAX)
                    .map_err(PersistError::Engine)?;
                *self.open.borrow_mut() = Some(batch);
            }
            let added = {
                let mut open = self.open.borrow_mut();
                match open.as_mut() {
                    Some(batch) if batch.ops_left() >= ops && batch.bytes_left() >= bytes => {
                        // `fill` should add its ops only after checking
                        // them: ops added before an error still commit
                        // with the group.
                        let fill = fill.take().expect("filled once");
                        fill(batch).map_err(PersistError::Engine)?;
                        true
                    }
                    _ => false,
                }
            };
            if added {
                break self.open_round.get();
            }
            // No room (or no batch while a commit runs): wait for the round
            // in flight, then try again.
            if !self.leading.get() {
                self.lead().await;
            } else {
                self.wait_for(self.done_round.get() + 1).await;
            }
        };
        if !self.leading.get() {
            self.lead().await;
        }
        self.wait_for(round).await;
        match self
            .failed_rounds
            .borrow()
            .iter()
            .find(|(r, _)| *r == round)
        {
            Some((_, reason)) => Err(PersistError::WriteFailed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Commits open batches until none is left.
    #[allow(clippy::await_holding_refcell_ref)] // see the commit below
    async fn lead(&self) {
        assert!(!self.leading.get());
        self.leading.set(true);
        loop {
            let Some(batch) = self.open.borrow_mut().take() else {
                break;
            };
            let round = self.open_round.get();
            self.open_round.set(round + 1);
            // Writers arriving during the commit join the next round.
            let next = self
                .durable
                .borrow_mut()
                .store_mut()
                .new_batch(GROUP_OPS_MAX, GROUP_BYTES_MAX);
            if let Ok(next) = next {
                *self.open.borrow_mut() = Some(next);
            }
            // The store stays borrowed for the whole commit: that is the
            // `&mut` the commit API asks for; `with_store` sees it busy.
            let result = self.durable.borrow_mut().commit(batch).await;
            if let Err(error) = result {
                let mut failed = self.failed_rounds.borrow_mut();
                if failed.len() == ROUND_RESULTS_MAX {
                    failed.pop_front();
                }
                failed.push_back((round, error.to_string()));
            }
            self.done_round.set(round);
            for waker in self.waiters.borrow_mut().drain(..) {
                waker.wake();
            }
            if self.open.borrow().as_ref().is_some_and(|b| b.is_empty()) {
                // Nobody joined: keep the empty batch for the next writer
                // rather than commit nothing.
                break;
            }
        }
        self.leading.set(false);
    }

    async fn wait_for(&self, round: u64) {
        poll_fn(|cx| {
            if self.done_round.get() >= round {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            assert!(
                waiters.len() < GROUP_WAITERS_MAX,
                "too many waiting writers"
            );
            waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}
