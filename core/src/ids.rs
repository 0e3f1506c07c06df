//! Identifiers of the things the scheduler and executors talk about.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, " {}"), self.0)
            }
        }
    };
}

id_type!(
    /// One RDD of a context; parents always have smaller ids than children.
    RddId, "rdd");
id_type!(
    /// One shuffle dependency; its map outputs are kept across jobs.
    ShuffleId, "shuffle");
id_type!(
    /// One stage of the DAG scheduler.
    StageId, "stage");
id_type!(
    /// One job, started by one action.
    JobId, "job");
id_type!(
    /// One broadcast variable.
    BroadcastId, "broadcast");
id_type!(
    /// One accumulator.
    AccumulatorId, "accumulator");
id_type!(
    /// One attempt of one task, unique within a context.
    TaskId, "task");

/// The name of an executor: `"driver"` for the in-process executor of
/// `local[N]`, a number for executor processes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExecutorId(pub String);

impl ExecutorId {
    /// The executor that runs inside the driver process in `local[N]` mode.
    pub fn driver() -> Self {
        ExecutorId("driver".to_string())
    }
}

impl fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "executor {}", self.0)
    }
}
