//! Which handler of `src/broker.rs` answers which method and path: the router, every route on
//! one screen, in the order of the handlers; a 404 or 405 for what none answers; and the
//! pages beyond the OSB API (the platform's health check, the conversation page, metrics).

use super::{Answer, Broker, BrokerError, MALFORMED, NOT_THE_API};
use crate::http::{HttpRequest, HttpResponse};
use serde_json::json;

/// A route: the handler that answers it, and its name and the title of its section of the
/// spec (for the conversation page and the `route` label of `/metrics`, in `observer.rs`).
pub(super) struct Route<'p> {
    pub(super) name: &'static str,
    pub(super) spec_section: &'static str,
    handler: Box<RouteHandler<'p>>,
}

/// A handler with the route's ids in hand, waiting for the request.
type RouteHandler<'p> = dyn FnOnce(&Broker, &HttpRequest) -> Answer + 'p;

fn to<'p>(
    name: &'static str,
    spec_section: &'static str,
    handler: impl FnOnce(&Broker, &HttpRequest) -> Answer + 'p,
) -> Option<Route<'p>> {
    Some(Route {
        name,
        spec_section,
        handler: Box::new(handler),
    })
}

/// Every route, in the order of the handlers (a rotation is a bind that names its
/// predecessor): the one table that picks a handler and names it.
#[rustfmt::skip]
pub(super) fn route<'p>(method: &str, path: &'p [&'p str]) -> Option<Route<'p>> {
    match (method, path) {
        ("GET", ["v2", "catalog"]) =>
            to("catalog", "Catalog Management", |broker, _| broker.catalog()),
        ("PUT", ["v2", "service_instances", instance_id]) =>
            to("provision", "Provisioning", move |broker, request| broker.provision(instance_id, request)),
        ("GET", ["v2", "service_instances", instance_id]) =>
            to("fetch_instance", "Fetching a Service Instance", move |broker, request| broker.fetch_instance(instance_id, request)),
        ("PATCH", ["v2", "service_instances", instance_id]) =>
            to("update", "Updating a Service Instance", move |broker, request| broker.update(instance_id, request)),
        ("PUT", ["v2", "service_instances", instance_id, "service_bindings", binding_id]) =>
            to("bind", "Binding", move |broker, request| broker.bind(instance_id, binding_id, request)),
        ("GET", ["v2", "service_instances", instance_id, "service_bindings", binding_id]) =>
            to("fetch_binding", "Fetching a Service Binding", move |broker, request| broker.fetch_binding(instance_id, binding_id, request)),
        ("DELETE", ["v2", "service_instances", instance_id, "service_bindings", binding_id]) =>
            to("unbind", "Unbinding", move |broker, request| broker.unbind(instance_id, binding_id, request)),
        ("DELETE", ["v2", "service_instances", instance_id]) =>
            to("deprovision", "Deprovisioning", move |broker, request| broker.deprovision(instance_id, request)),
        ("GET", ["v2", "service_instances", instance_id, "last_operation"]) =>
            to("instance_last_operation", "Polling Last Operation for Service Instances",
               move |broker, request| broker.instance_last_operation(instance_id, request)),
        ("GET", ["v2", "service_instances", instance_id, "service_bindings", binding_id, "last_operation"]) =>
            to("binding_last_operation", "Polling Last Operation for Service Bindings",
               move |broker, request| broker.binding_last_operation(instance_id, binding_id, request)),
        // Beyond the OSB API: the platform's health check, and for people and monitoring
        // what this process answered (`observer.rs`).
        ("GET", ["health"]) => to("health", "", |_, _| Ok(HttpResponse::json(200, &json!({"status": "ok"})))),
        ("GET", []) => to("conversation_page", "", |broker, request| Ok(broker.observer.conversation_page(request))),
        ("GET", ["metrics"]) => to("metrics", "", |broker, _| Ok(broker.observer.metrics())),
        _ => None,
    }
}

/// Finds the request's route and runs its handler.
pub(super) fn run(broker: &Broker, request: &HttpRequest) -> Answer {
    let segments = request.path_segments().ok_or_else(|| {
        let why = "the path is not valid percent-encoded UTF-8";
        BrokerError::BadRequest(MALFORMED, why.into())
    })?;
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    // Bound to a name, so that the route (which borrows `path`) is dropped before `path`.
    let answer = match route(&request.method, &path) {
        Some(route) => (route.handler)(broker, request),
        None => Err(not_routed(&request.method, &path, request.path())),
    };
    answer
}

/// No route: a 405 with the methods the path does answer (`Allow`), or a 404.
fn not_routed(method: &str, path: &[&str], raw_path: &str) -> BrokerError {
    let allowed: Vec<&str> = ["GET", "PUT", "PATCH", "DELETE"]
        .into_iter()
        .filter(|method| route(method, path).is_some())
        .collect();
    if allowed.is_empty() {
        let why = format!("{raw_path} is not part of the API");
        BrokerError::NotFound(NOT_THE_API, why)
    } else {
        BrokerError::MethodNotAllowed(
            format!("{method} is not part of the API at {raw_path}"),
            allowed.join(", "),
        )
    }
}
