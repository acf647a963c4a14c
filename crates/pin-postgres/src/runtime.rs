//! The store is blocking: refused, with an error, inside an async runtime.
//!
//! The `postgres` client runs each call on a runtime of its own, and tokio panics when a
//! runtime is started on a thread that is already driving asynchronous tasks ("Cannot
//! start a runtime from within a runtime"). So every entry point of the store first asks
//! [`check`], and a call from async code gets [`InsideAsyncRuntime`] instead of a panic.
//!
//! # How it tells
//!
//! A thread of a tokio runtime knows its runtime (`Handle::try_current`), but so do the
//! threads of the runtime's blocking pool (`spawn_blocking`), where blocking is right and
//! the client works. What differs is tokio's cooperative budget: a task (or the future of
//! `block_on`) is polled with a budget of 128 units, a blocking task runs unconstrained.
//! [`check`] takes units one by one and gives each back, never keeping any: running out
//! means a budget, so async code. A future wrapped in `tokio::task::unconstrained` has no
//! budget and is not recognised — there the client still panics.

use std::task::{Context, Poll, Waker};

/// A blocking store method was called from a future polled by a tokio runtime, where the
/// blocking PostgreSQL client cannot run: the source of the
/// [`pin_core::store::StoreError::Backend`] returned then (see the crate docs,
/// "Blocking"). Nothing was done; the same call on a blocking thread
/// (`tokio::task::spawn_blocking`) works.
///
/// Async code is recognised by tokio's cooperative budget, which a task (and the future of
/// `block_on`) runs under and a blocking thread does not; a future wrapped in
/// `tokio::task::unconstrained` has no budget, is not recognised, and there the client
/// still panics.
#[derive(Debug, thiserror::Error)]
#[error(
    "the blocking PostgreSQL store was called from inside an async runtime: run it on a blocking thread (tokio::task::spawn_blocking) or use the async driver; nothing was done"
)]
pub struct InsideAsyncRuntime;

/// More units than any budget tokio gives a task (128).
const PROBE: usize = 1024;

/// `Err` when called from a future polled by a tokio runtime.
pub(crate) fn check() -> Result<(), InsideAsyncRuntime> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(());
    }
    if budgeted() {
        Err(InsideAsyncRuntime)
    } else {
        Ok(())
    }
}

/// Whether the current thread runs under a cooperative budget. Every unit taken is given
/// back: the guards restore the budget as it was, last taken first.
fn budgeted() -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut taken = Vec::new();
    let mut ran_out = false;
    for _ in 0..PROBE {
        match tokio::task::coop::poll_proceed(&mut cx) {
            Poll::Ready(guard) => taken.push(guard),
            Poll::Pending => {
                ran_out = true;
                break;
            }
        }
    }
    while let Some(guard) = taken.pop() {
        drop(guard);
    }
    ran_out
}
