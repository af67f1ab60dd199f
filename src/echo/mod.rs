//! The echo service: the backend the broker provisions and binds, a program of its own
//! (`src/bin/echo-service.rs`) that the broker can also run in its process.
//!
//! - [`service`]: the HTTP API, the instances, bindings and messages, and their undo.
//! - [`api`]: the management API's bodies, the one part the broker's client shares.
//! - [`journal`]: storage: a snapshot and a log on disk, generic over the state it keeps.
//! - [`dashboard`]: the per-instance HTML page, rendered from a plain view.
//!
//! The arrows run one way: `service` uses the other three; `journal` and `dashboard` know
//! nothing of `service`.

pub mod api;
pub mod dashboard;
pub mod journal;
pub mod service;
