//! A Cloud Foundry service broker (Open Service Broker API v2.17) and the demo echo service
//! it provisions and binds, re-implementing two Python/Bottle programs from 2014.
//!
//! Two programs, and what they share:
//!
//! - The broker (`src/main.rs`): [`broker`], the OSB API request path, one file, top to
//!   bottom (start reading here); [`catalog`], the catalog model, loading and validation;
//!   [`echo_client`], its calls to the echo service; [`observer`], what it does with what it
//!   answered (metrics, the debug log), and [`conversation`], the page that shows it;
//!   [`osb`], the API's header names, which the broker and the observer share.
//! - The echo service (`src/bin/echo-service.rs`, or inside the broker's process): [`echo`],
//!   its service, management API types, journal and dashboard.
//! - Shared by both servers: [`http`], the HTTP vocabulary; [`server`], the HTTP/1.1
//!   connection layer (on httparse); [`settings`], configuration from the environment (the
//!   CAs that TLS trusts among it); [`logging`], log lines as text or JSON, with no secrets
//!   in them; [`platform`], what Cloud Foundry and Stackato offer (a volume for the state)
//!   and forbid (published secrets); [`metrics`], the Prometheus text; [`redact`], the one
//!   rule that keeps secrets off every page and log line.

// The broker.
pub mod broker;
pub mod catalog;
pub mod conversation;
pub mod echo_client;
pub mod osb;

// The echo service.
pub mod echo;

// What both servers share.
pub mod http;
pub mod logging;
pub mod metrics;
pub mod observer;
pub mod platform;
pub mod redact;
pub mod server;
pub mod settings;
