//! Helpers for the integration tests in `tests/tests/` and other crates'
//! multi-host tests: [`testnet`] makes test hosts on this machine.

pub mod testnet;
