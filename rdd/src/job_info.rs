//! What the jobs a thread starts are called and what they belong to
//! (Spark's local properties): the call site of the action, the job group
//! and description of `Context::set_job_group`, and the cancel flag of an
//! async action's handle.

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where a driver program called an action: `count at pipeline.rs:63`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSite {
    /// The action's name.
    pub action: &'static str,
    /// The caller's source location.
    pub location: &'static Location<'static>,
}

impl std::fmt::Display for CallSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.location.file();
        // The file name only, as Spark shows it.
        let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
        write!(f, "{} at {name}:{}", self.action, self.location.line())
    }
}

/// The properties jobs started on this thread carry.
#[derive(Clone, Debug, Default)]
pub struct JobProperties {
    /// The job group (`Context::set_job_group`), cancelled as a whole.
    pub group: Option<String>,
    /// The description the group's jobs are shown with.
    pub description: Option<String>,
    /// Set by an async action's handle when it is cancelled.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl JobProperties {
    /// Whether the async action these jobs run for was cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    }
}

thread_local! {
    static PROPERTIES: RefCell<JobProperties> = RefCell::new(JobProperties::default());
    /// The outermost action running on this thread (an action built on
    /// others, such as `first` on `take`, is named by the outer one).
    static CALL_SITE: Cell<Option<CallSite>> = const { Cell::new(None) };
}

/// The properties of the jobs this thread starts.
pub fn properties() -> JobProperties {
    PROPERTIES.with(|p| p.borrow().clone())
}

/// Replaces the properties of the jobs this thread starts.
pub fn set_properties(props: JobProperties) {
    PROPERTIES.with(|p| *p.borrow_mut() = props);
}

/// The call site of the action running on this thread, if any.
pub fn call_site() -> Option<CallSite> {
    CALL_SITE.with(Cell::get)
}

/// Marks an action as running on this thread until the guard is dropped;
/// an action inside another keeps the outer one's call site.
#[must_use = "the call site lasts as long as the guard"]
pub struct ActionGuard {
    outermost: bool,
}

/// Enters action `action`, called from the caller's caller (actions are
/// `#[track_caller]`, so this is where the driver program called it).
#[track_caller]
pub fn enter_action(action: &'static str) -> ActionGuard {
    enter_action_at(action, Location::caller())
}

/// Enters action `action` called at `location` (an async action's thread
/// enters with the location its handle was made at).
pub fn enter_action_at(action: &'static str, location: &'static Location<'static>) -> ActionGuard {
    let outermost = call_site().is_none();
    if outermost {
        CALL_SITE.with(|c| c.set(Some(CallSite { action, location })));
    }
    ActionGuard { outermost }
}

impl Drop for ActionGuard {
    fn drop(&mut self) {
        if self.outermost {
            CALL_SITE.with(|c| c.set(None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outermost_action_names_the_call_site_by_file_name_and_line() {
        assert_eq!(call_site(), None);
        let line = line!() + 1;
        let outer = enter_action("first");
        {
            let _inner = enter_action("take");
            let site = call_site().unwrap();
            assert_eq!(site.to_string(), format!("first at job_info.rs:{line}"));
        }
        assert_eq!(call_site().unwrap().action, "first");
        drop(outer);
        assert_eq!(call_site(), None);
    }
}
