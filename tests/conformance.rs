//! The Open Service Broker API v2.17 conformance suite: one module per section of the spec,
//! each test named for the behaviour it asserts, against the real broker binary with its
//! embedded echo service (one per test, on free loopback ports).
//!
//! Every answer goes through `support::osb`, which checks `Content-Type`, that the body is
//! JSON, and that it fits the spec's schema for its route and status (`schema.rs`, the
//! OpenAPI document's schemas as code), so no test can receive a body unchecked.

mod common;

#[path = "conformance/schema.rs"]
mod schema;
#[path = "conformance/support.rs"]
mod support;

#[path = "conformance/binding.rs"]
mod binding;
#[path = "conformance/catalog.rs"]
mod catalog;
#[path = "conformance/deprovisioning.rs"]
mod deprovisioning;
#[path = "conformance/errors.rs"]
mod errors;
#[path = "conformance/fetching_binding.rs"]
mod fetching_binding;
#[path = "conformance/fetching_instance.rs"]
mod fetching_instance;
#[path = "conformance/headers.rs"]
mod headers;
#[path = "conformance/last_operation.rs"]
mod last_operation;
#[path = "conformance/provisioning.rs"]
mod provisioning;
#[path = "conformance/rotation.rs"]
mod rotation;
#[path = "conformance/unbinding.rs"]
mod unbinding;
#[path = "conformance/updating.rs"]
mod updating;
