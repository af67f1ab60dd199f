//! The broker's side of the echo service's management API: one shared ureq agent (a pool of
//! keep-alive connections used by every worker) with short timeouts, and one method per call.
//! Each call is made for a platform request and forwards its request identity, so that one
//! platform request can be followed through the broker's log and the echo service's.
//!
//! An `https://` echo service is reached over TLS (rustls), its certificate checked against
//! the operating system's trust store, or the CAs of `SSL_CERT_FILE` when that is set.
//!
//! Each method returns what the echo service answered, a [`Reply`]: its status code, which
//! the broker's handlers translate into the OSB API's, and its body, read as the status says.
//! No answer at all (refused, timed out, a failed handshake) is an [`EchoError`] whose text
//! says what failed, for the broker's error description.

use crate::echo::api::{
    BindBody, BindingAttributes, BindingLifetime, BindingView, InstanceAttributes, InstanceUpdate,
    InstanceView, REQUEST_IDENTITY_HEADER,
};
use crate::http::{percent_encode, HttpRequest};
use crate::settings::TlsRoots;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

/// Only a value any HTTP stack accepts is forwarded (printable ASCII, at most 255 bytes: a
/// UUID in practice), so an odd identity never turns a request into a failed call.
fn is_forwardable(identity: &str) -> bool {
    identity.len() <= crate::http::MAX_ID_BYTES
        && identity.bytes().all(|byte| (0x20..0x7f).contains(&byte))
}

/// How long the broker waits for the echo service's answer before answering with an error.
pub const ECHO_SERVICE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting, sending the request, and reading an answer's body may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest answer the broker reads from the echo service.
const MAX_REPLY_BYTES: u64 = 1024 * 1024;

/// Why a call to the echo service failed, with the HTTP status the broker answers (this
/// broker's choice: the spec names no status for the broker's own failure, a 5xx). The
/// status says how the echo service failed, as a gateway's does:
///
/// | the echo service                                             | answer                  |
/// |--------------------------------------------------------------|-------------------------|
/// | answered a status the handler has no arm for, or not HTTP    | 502 Bad Gateway         |
/// | answered a body that is not what its status promises         | 502 Bad Gateway         |
/// | failed the TLS handshake (its certificate is not trusted)    | 502 Bad Gateway         |
/// | cannot be reached: refused, unknown host, connection lost    | 503 Service Unavailable |
/// | answered 503 itself (say, a change it cannot make durable)   | 503 Service Unavailable |
/// | did not answer in time ([`ECHO_SERVICE_TIMEOUT`])            | 504 Gateway Timeout     |
#[derive(Debug, Clone, PartialEq)]
pub struct EchoError {
    pub status: u16,
    pub description: String,
}

/// What the echo service answered to one call.
pub struct Reply {
    pub status: u16,
    body: Vec<u8>,
    /// Where the echo service is and what was asked, for an error's description.
    base_url: String,
    operation: &'static str,
}

/// The agent's TLS: rustls, checking the echo service's certificate against `tls_roots`.
fn agent_tls_config(tls_roots: &TlsRoots) -> TlsConfig {
    let roots = match tls_roots {
        TlsRoots::System => RootCerts::PlatformVerifier,
        TlsRoots::Only(certificates) => RootCerts::Specific(Arc::new(certificates.clone())),
    };
    TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .build()
}

/// A client for one echo service.
pub struct EchoClient {
    agent: ureq::Agent,
    /// Where the echo service is, e.g. `http://127.0.0.1:8090`, without a trailing slash.
    base_url: String,
    /// The `Authorization` header for the management API, if it has credentials.
    authorization: Option<String>,
}

impl EchoClient {
    pub fn new(
        base_url: &str,
        credentials: Option<(String, String)>,
        tls_roots: &TlsRoots,
    ) -> EchoClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(agent_tls_config(tls_roots))
            // Per phase, not `timeout_global`: with a global timeout ureq resolves the host
            // name on a new thread for every call, pooled connection or not.
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_send_request(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(ECHO_SERVICE_TIMEOUT))
            .timeout_recv_body(Some(CONNECT_TIMEOUT))
            // Requests and answers here are a few hundred bytes; ureq's default 128 KiB
            // buffers per pooled connection would be most of the broker's memory.
            .input_buffer_size(4 * 1024)
            .output_buffer_size(4 * 1024)
            .http_status_as_error(false)
            .max_idle_connections(256)
            .max_idle_connections_per_host(256)
            .user_agent(concat!("echo-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        EchoClient {
            agent,
            base_url: base_url.trim_end_matches('/').to_string(),
            authorization: credentials
                .map(|(user, password)| crate::http::basic_authorization(&user, &password)),
        }
    }

    /// `PUT /echo/{instance_id}`.
    pub fn provision(
        &self,
        instance_id: &str,
        attributes: &InstanceAttributes,
        platform_request: &HttpRequest,
    ) -> Result<Reply, EchoError> {
        let path = instance_path(instance_id);
        self.send(
            "provision",
            "PUT",
            &path,
            Some(to_body(attributes)),
            platform_request,
        )
    }

    /// `GET /echo/{instance_id}`.
    pub fn fetch_instance(
        &self,
        instance_id: &str,
        platform_request: &HttpRequest,
    ) -> Result<Reply, EchoError> {
        self.send(
            "fetch instance",
            "GET",
            &instance_path(instance_id),
            None,
            platform_request,
        )
    }

    /// `PATCH /echo/{instance_id}`.
    pub fn update(
        &self,
        instance_id: &str,
        update: &InstanceUpdate,
        platform_request: &HttpRequest,
    ) -> Result<Reply, EchoError> {
        let path = instance_path(instance_id);
        self.send(
            "update",
            "PATCH",
            &path,
            Some(to_body(update)),
            platform_request,
        )
    }

    /// `DELETE /echo/{instance_id}?service_id=..&plan_id=..`.
    pub fn deprovision(
        &self,
        instance_id: &str,
        service_id: &str,
        plan_id: &str,
        platform_request: &HttpRequest,
    ) -> Result<Reply, EchoError> {
        let path = instance_path(instance_id) + &ids_query(service_id, plan_id);
        self.send("deprovision", "DELETE", &path, None, platform_request)
    }

    /// `PUT /echo/{instance_id}/{binding_id}`, with the binding's lifetime if it has one.
    pub fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        attributes: &BindingAttributes,
        lifetime: Option<BindingLifetime>,
        platform_request: &HttpRequest,
    ) -> Result<Reply, EchoError> {
        let path = binding_path(instance_id, binding_id);
        let body = BindBody {
            attributes: attributes.clone(),
            lifetime,
        };
        self.send("bind", "PUT", &path, Some(to_body(&body)), platform_request)
    }

    /// `GET /echo/{instance_id}/{binding_id}`.
    pub fn fetch_binding(
        &self,
        instance_id: &str,
        binding_id: &str,
        platform_request: &HttpRequest,
    ) -> Result<Reply, EchoError> {
        let path = binding_path(instance_id, binding_id);
        self.send("fetch binding", "GET", &path, None, platform_request)
    }

    /// `DELETE /echo/{instance_id}/{binding_id}?service_id=..&plan_id=..`.
    pub fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        service_id: &str,
        plan_id: &str,
        platform_request: &HttpRequest,
    ) -> Result<Reply, EchoError> {
        let path = binding_path(instance_id, binding_id) + &ids_query(service_id, plan_id);
        self.send("unbind", "DELETE", &path, None, platform_request)
    }

    /// A URL the broker hands out: the echo service's base, then `segments`, each
    /// percent-encoded, with `user:password@` and `?token=` when given.
    pub fn url(
        &self,
        segments: &[&str],
        login: Option<(&str, &str)>,
        token: Option<&str>,
    ) -> String {
        let base = self.base_url.as_str();
        let mut url = match login {
            Some((user, password)) => {
                let (scheme, host) = base.split_once("://").unwrap_or(("http", base));
                let (user, password) = (percent_encode(user), percent_encode(password));
                format!("{scheme}://{user}:{password}@{host}")
            }
            None => base.to_string(),
        };
        for segment in segments {
            url.push('/');
            url.push_str(&percent_encode(segment));
        }
        if let Some(token) = token {
            url.push_str(&format!("?token={}", percent_encode(token)));
        }
        url
    }

    /// Makes one call for `platform_request`, forwarding its request identity.
    fn send(
        &self,
        operation: &'static str,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        platform_request: &HttpRequest,
    ) -> Result<Reply, EchoError> {
        let url = format!("{}{}", self.base_url, path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(authorization) = &self.authorization {
            builder = builder.header("Authorization", authorization);
        }
        if body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let identity = platform_request.header(REQUEST_IDENTITY_HEADER);
        if let Some(identity) = identity.filter(|identity| is_forwardable(identity)) {
            builder = builder.header(REQUEST_IDENTITY_HEADER, identity);
        }
        let request = builder
            .body(body.unwrap_or_default())
            .map_err(|error| EchoError {
                status: 502,
                description: format!(
                    "cannot build a request to the echo service at {url}: {error}"
                ),
            })?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|error| self.failed(&url, error))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_vec()
            .map_err(|error| self.failed(&url, error))?;
        Ok(Reply {
            status,
            body,
            base_url: self.base_url.clone(),
            operation,
        })
    }

    fn failed(&self, url: &str, error: ureq::Error) -> EchoError {
        let (status, what) = match &error {
            ureq::Error::Timeout(phase) => (504, too_slow(*phase)),
            ureq::Error::Io(io) if is_refused_handshake(url, io) => (
                502,
                format!("failed the TLS handshake ({io}): {HANDSHAKE_HINT}"),
            ),
            ureq::Error::Rustls(_) | ureq::Error::Tls(_) => {
                (502, format!("failed the TLS handshake ({error})"))
            }
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                (503, format!("cannot be reached ({error})"))
            }
            _ => (502, format!("failed: {error}")),
        };
        EchoError {
            status,
            description: format!("the echo service at {url} {what}"),
        }
    }
}

impl Reply {
    /// The instance the answer carries. The original echo service's 409 has no body worth
    /// reading: an unreadable 409 is an instance with nothing recorded.
    pub fn instance(&self, instance_id: &str) -> Result<InstanceView, EchoError> {
        match self.parse::<InstanceView>() {
            Err(_) if self.status == 409 => Ok(InstanceView {
                instance_id: instance_id.to_string(),
                state: None,
                attributes: None,
                dashboard_token: None,
                bindings: 0,
                messages: 0,
            }),
            view => view,
        }
    }

    /// The binding the answer carries; an unreadable 409 is a binding with nothing recorded.
    pub fn binding(&self, binding_id: &str) -> Result<BindingView, EchoError> {
        match self.parse::<BindingView>() {
            Err(_) if self.status == 409 => Ok(empty_binding(binding_id)),
            view => view,
        }
    }

    /// What an error answer says went wrong.
    pub fn description(&self) -> String {
        description_of(self)
    }

    /// A status the call does not expect: 502, or 503 when the echo service says it is
    /// unavailable (say, its storage cannot take changes), which is temporary, so the
    /// platform retries.
    pub fn unexpected(&self) -> EchoError {
        let status = if self.status == 503 { 503 } else { 502 };
        EchoError {
            status,
            description: format!(
                "the echo service at {} answered {} to the {}: {}",
                self.base_url,
                self.status,
                self.operation,
                self.description()
            ),
        }
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, EchoError> {
        serde_json::from_slice(&self.body).map_err(|error| EchoError {
            status: 502,
            description: format!(
                "the echo service at {} answered {} with a body that is not what it promises: {error}",
                self.base_url, self.status
            ),
        })
    }
}

/// What to check when the echo service's certificate is refused.
const HANDSHAKE_HINT: &str = "its certificate is not trusted (SSL_CERT_FILE or the system's trust store) or not issued for this host name";

/// rustls reports a refused handshake (an untrusted certificate, one for another host name)
/// as invalid data: the echo service answered, but could not prove it is the echo service.
fn is_refused_handshake(url: &str, error: &std::io::Error) -> bool {
    url.starts_with("https://") && error.kind() == std::io::ErrorKind::InvalidData
}

fn instance_path(instance_id: &str) -> String {
    format!("/echo/{}", percent_encode(instance_id))
}

fn binding_path(instance_id: &str, binding_id: &str) -> String {
    format!(
        "/echo/{}/{}",
        percent_encode(instance_id),
        percent_encode(binding_id)
    )
}

fn ids_query(service_id: &str, plan_id: &str) -> String {
    format!(
        "?service_id={}&plan_id={}",
        percent_encode(service_id),
        percent_encode(plan_id)
    )
}

fn to_body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn empty_binding(binding_id: &str) -> BindingView {
    BindingView {
        lifetime: None,
        id: binding_id.to_string(),
        app: None,
        state: None,
        attributes: None,
        username: None,
        password: None,
    }
}

/// The `description` (or the original's `error`) of an error answer, else a note that it had none.
fn description_of(reply: &Reply) -> String {
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    body.get("description")
        .or_else(|| body.get("error"))
        .and_then(|text| text.as_str())
        .map_or_else(|| "no description".to_string(), str::to_string)
}
/// What the echo service was too slow for, with the time it was given (the timeout of the
/// phase that expired: 5 s for the answer to begin, 2 s for the rest).
fn too_slow(phase: ureq::Timeout) -> String {
    let (what, allowed) = match phase {
        ureq::Timeout::RecvResponse => ("did not answer", ECHO_SERVICE_TIMEOUT),
        ureq::Timeout::RecvBody => ("did not send its whole answer", CONNECT_TIMEOUT),
        ureq::Timeout::Resolve | ureq::Timeout::Connect => {
            ("could not be connected to", CONNECT_TIMEOUT)
        }
        _ => ("did not take the request", CONNECT_TIMEOUT),
    };
    format!("{what} within {} s", allowed.as_secs())
}
