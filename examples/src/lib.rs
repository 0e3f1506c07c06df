//! Shared helpers of the example driver programs.
