//! What the broker still accepts from the original programs it re-implements, the Python
//! broker and echo service of 2014 (Service Broker API v2.3), so that it can run in front of
//! the original echo service as well as its own.
//!
//! The original echo service answers the same paths with the same statuses, but records
//! nothing of what the platform asked for (no service, plan or parameters), gives a binding
//! no user of its own, and keeps no dashboard token. The handlers of `src/broker.rs` answer
//! as the spec says all the same, through the two functions below; elsewhere a fetch
//! answers only the fields that were recorded (all are optional in the spec), a binding
//! without a user of its own gets only its `uri`, `echo_client.rs` reads the original's 409,
//! which carries no record, as a record with nothing in it, and `main.rs` accepts the
//! original broker's login (`user`, `pass`) when none is configured, on loopback only.

use crate::catalog::Service;

/// What the platform asked for when it made an instance or a binding, as the echo service
/// recorded it. The original recorded nothing: a repeat is then taken to ask for the same,
/// an identical repeat (200), as the original broker answered every repeat.
pub(super) fn asked_first<T: Clone>(recorded: Option<T>, asked_now: &T) -> T {
    recorded.unwrap_or_else(|| asked_now.clone())
}

/// The plan an update starts from when the echo service recorded none: the service's first
/// plan (the original's services had one plan each).
pub(super) fn first_plan_id(service: &Service) -> String {
    service
        .plans
        .first()
        .map_or_else(String::new, |plan| plan.id.clone())
}
