//! Executor runtime: runs tasks, serves shuffle blocks, talks to the driver.
