//! Context, DAG scheduler, task scheduler and backends; the ember command line.
