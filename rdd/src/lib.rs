//! The Rdd abstraction: lineage, transformations, pair functions, actions.
