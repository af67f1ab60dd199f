//! The tests of the whole system that share one test binary: each file here is a module of
//! it, so `tests/common` and the crate are compiled and linked once for all of them (a test
//! binary of its own costs seconds of linking). Those that need the machine to themselves,
//! or whose time bounds would feel other tests' load, are binaries of their own beside this
//! folder: the flood, hostile clients, HTTP connections, the graceful stop, durability,
//! storage faults, the journal at scale, the PostgreSQL store and the store contract; and the
//! conformance suite, which CI runs again for each older API version.
//!
//! One module: `cargo test --test system security::` (a module path is a filter).

#[path = "../common/mod.rs"]
mod common;

mod backend_faults;
mod bound_app;
mod catalog_file;
mod concurrency;
mod conversation;
mod https_backend;
mod layering;
mod operations;
mod original_backend;
mod platform;
mod postgres_harness;
mod property;
mod protocol_table;
mod proxied_backend;
mod security;
mod walkthrough;
