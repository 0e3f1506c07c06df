//! Async actions (Spark's `FutureAction`): an action run on a thread of
//! its own, returning a [`JobHandle`] to wait on or cancel.

use crate::job_info::{self, JobProperties};
use crate::rdd::{Rdd, UserFn};
use crate::runner::JobRunner;
use ember_core::{Data, EmberError, Result};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running async action: [`get`](JobHandle::get) waits for its result,
/// [`cancel`](JobHandle::cancel) cancels its jobs (the action then
/// returns [`EmberError::Cancelled`]).
pub struct JobHandle<R> {
    thread: JoinHandle<Result<R>>,
    cancel: Arc<AtomicBool>,
    runner: Arc<dyn JobRunner>,
}

impl<R> JobHandle<R> {
    /// Cancels the action: its running job stops at the next record of
    /// each task, and it starts no other.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.runner.cancel_flagged();
    }

    /// Whether the action has ended (successfully or not).
    pub fn is_done(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the action's result.
    pub fn get(self) -> Result<R> {
        self.thread.join().unwrap_or_else(|payload| {
            Err(EmberError::Other(format!(
                "an async action's thread panicked: {}",
                crate::task::panic_to_error(payload)
            )))
        })
    }
}

impl<T: Data> Rdd<T> {
    /// Runs `action` on a new thread that inherits this thread's job group
    /// and is named by the caller's call site.
    fn spawn_action<R: Send + 'static>(
        &self,
        name: &'static str,
        location: &'static Location<'static>,
        action: impl FnOnce(Rdd<T>) -> Result<R> + Send + 'static,
    ) -> Result<JobHandle<R>> {
        let cancel = Arc::new(AtomicBool::new(false));
        let props = JobProperties {
            cancel: Some(cancel.clone()),
            ..job_info::properties()
        };
        let rdd = self.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ember-{name}-async"))
            .spawn(move || {
                job_info::set_properties(props);
                let _site = job_info::enter_action_at(name, location);
                action(rdd)
            })
            .map_err(|e| EmberError::Other(format!("cannot start a thread for {name}: {e}")))?;
        Ok(JobHandle {
            thread,
            cancel,
            runner: self.runner.clone(),
        })
    }

    /// [`collect`](Rdd::collect) on a thread of its own.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let handle = ctx.range(0, 4, 1, 2)?.collect_async()?;
    /// assert_eq!(handle.get()?, vec![0, 1, 2, 3]);
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn collect_async(&self) -> Result<JobHandle<Vec<T>>> {
        self.spawn_action("collect_async", Location::caller(), |r| r.collect())
    }

    /// [`count`](Rdd::count) on a thread of its own.
    #[track_caller]
    pub fn count_async(&self) -> Result<JobHandle<u64>> {
        self.spawn_action("count_async", Location::caller(), |r| r.count())
    }

    /// [`foreach`](Rdd::foreach) on a thread of its own.
    #[track_caller]
    pub fn foreach_async<F: Fn(T) + UserFn>(&self, f: F) -> Result<JobHandle<()>> {
        self.spawn_action("foreach_async", Location::caller(), move |r| r.foreach(f))
    }
}
