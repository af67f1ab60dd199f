//! A bound app, as small as one can be: it finds its echo service binding and sends one
//! message.
//!
//! What Cloud Foundry does for it: `cf bind-service my-app my-echo` asks the broker for a
//! binding (`PUT /v2/service_instances/.../service_bindings/...`), stores the credentials
//! the broker answers, and from the app's next start (`cf restage my-app`) puts them in the
//! app's environment as `VCAP_SERVICES`: a JSON object with one list per service offering,
//! keyed by the offering's label (its catalog name):
//!
//! ```json
//! {"Echo Service": [{
//!     "name": "my-echo", "instance_name": "my-echo", "label": "Echo Service", "plan": "large",
//!     "credentials": {
//!         "uri": "http://app-1a2b:9f8e@echo-service.apps.example.com/echo/INSTANCE/BINDING",
//!         "username": "app-1a2b", "password": "9f8e"}}]}
//! ```
//!
//! Try it with the `VCAP_SERVICES` that `cf env my-app` shows:
//!
//! ```text
//! VCAP_SERVICES='{"Echo Service": [...]}' cargo run --example bound_app -- "hello, echo"
//! ```

use base64::Engine;
use serde_json::Value;
use std::time::Duration;

/// The labels of the offerings this app can use: both answer `POST {"message": ...}`.
pub const ECHO_LABELS: [&str; 2] = ["Echo Service", "Invert Service"];

/// What the app needs from its binding.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoBinding {
    /// The service instance's name, as given to `cf create-service`.
    pub name: String,
    /// The offering, e.g. "Echo Service".
    pub label: String,
    /// Where to post messages, without the user and password.
    pub url: String,
    pub username: String,
    pub password: String,
}

/// The `VCAP_SERVICES` document, or what to do when it is missing (unset or blank).
pub fn vcap_services_document(value: Option<String>) -> Result<String, String> {
    value
        .filter(|value| !value.trim().is_empty())
        .ok_or_else(|| {
            "VCAP_SERVICES is not set: run this as an app bound to an echo service (cf run-task), \
         or set it yourself, e.g. VCAP_SERVICES=\"$(cat vcap.json)\" (see docs/cloud-foundry.md, step 7)"
                .to_string()
        })
}

/// Finds the first echo (or invert) binding in a `VCAP_SERVICES` document.
pub fn find_echo_binding(vcap_services: &str) -> Result<EchoBinding, String> {
    let services: Value = serde_json::from_str(vcap_services)
        .map_err(|error| format!("VCAP_SERVICES is not JSON: {error}"))?;
    let entry = ECHO_LABELS
        .iter()
        .filter_map(|label| services.get(label)?.as_array()?.first())
        .next()
        .ok_or_else(|| {
            format!("VCAP_SERVICES has no binding of {ECHO_LABELS:?}; run `cf bind-service`")
        })?;
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    let credentials = &entry["credentials"];
    let uri = credentials["uri"]
        .as_str()
        .ok_or("the binding's credentials have no uri")?;
    // The uri carries the user and password too (`http://USER:PASSWORD@host/...`); an HTTP
    // client sends them as a header, so take them out of the URL.
    let (url, userinfo) = split_userinfo(uri);
    let (username, password) = match (credentials["username"].as_str(), userinfo) {
        (Some(username), _) => (username.to_string(), text(&credentials["password"])),
        (None, Some(userinfo)) => userinfo,
        (None, None) => return Err("the binding's credentials have no username".into()),
    };
    Ok(EchoBinding {
        name: text(&entry["name"]),
        label: text(&entry["label"]),
        url,
        username,
        password,
    })
}

/// `http://user:password@host/path` becomes `http://host/path` and `(user, password)`.
pub fn split_userinfo(uri: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return (uri.to_string(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (
                format!("{scheme}://{host}{}", &rest[authority_end..]),
                Some((percent_decode(user), percent_decode(password))),
            )
        }
        None => (uri.to_string(), None),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Sends `message` with the binding's credentials and returns the service's `response`.
pub fn send_message(binding: &EchoBinding, message: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let pair = format!("{}:{}", binding.username, binding.password);
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    let mut response = agent
        .post(&binding.url)
        .header("Authorization", &authorization)
        .send_json(serde_json::json!({ "message": message }))
        .map_err(|error| format!("POST {}: {error}", binding.url))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|error| format!("POST {}: reading the answer: {error}", binding.url))?;
    if status != 200 {
        return Err(format!("POST {}: {status} {body}", binding.url));
    }
    let answer: Value =
        serde_json::from_str(&body).map_err(|_| format!("the answer is not JSON: {body}"))?;
    answer["response"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("the answer has no response: {body}"))
}

fn main() {
    let message = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let message = if message.is_empty() {
        "hello from a bound app".to_string()
    } else {
        message
    };
    let vcap_services = vcap_services_document(std::env::var("VCAP_SERVICES").ok());
    let result = vcap_services.and_then(|document| find_echo_binding(&document));
    let result = result.and_then(|binding| {
        println!("{} '{}': POST {}", binding.label, binding.name, binding.url);
        send_message(&binding, &message)
    });
    match result {
        Ok(response) => println!("sent:     {message}\nresponse: {response}"),
        Err(problem) => {
            eprintln!("error: {problem}");
            std::process::exit(1);
        }
    }
}
