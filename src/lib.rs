//! A Cloud Foundry service broker (Open Service Broker API v2.17) and the demo echo service
//! it provisions and binds, re-implementing two Python/Bottle programs from 2014.
//!
//! - [`broker`]: the OSB API request path, one file, top to bottom (start reading here).
//! - [`catalog`]: the catalog model, loading and validation.
//! - [`echo_service`]: the backend: instances, bindings, messages; [`journal`] keeps them on disk.
//! - [`echo_client`] and [`echo_api`]: how the broker calls the echo service.
//! - [`http`]: the HTTP vocabulary both servers share; [`server`]: the serving loop on oxhttp;
//!   [`settings`]: configuration from the environment;
//!   [`logging`]: log lines as text or JSON, with no secrets in them; [`platform`]: what
//!   Cloud Foundry and Stackato offer (a volume for the state) and forbid (published secrets).
//! - [`conversation`] and [`metrics`]: what the broker saw, for people and for monitoring.

pub mod broker;
pub mod catalog;
pub mod conversation;
pub mod dashboard;
pub mod echo_api;
pub mod echo_client;
pub mod echo_service;
pub mod http;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod platform;
pub mod server;
pub mod settings;
