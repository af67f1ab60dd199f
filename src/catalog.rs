//! The catalog: the services and plans the broker offers (OSB API "Catalog Management").
//!
//! It is read from TOML once at start-up, checked against the spec's MUSTs, and then
//! serialised to the JSON that `GET /v2/catalog` answers. Optional fields that are absent in
//! the TOML are omitted from the JSON, never sent as `null`: the spec's schema has no null.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

/// The catalog file compiled into the binary, so the broker runs from any directory.
pub const EMBEDDED_CATALOG: &str = include_str!("../catalog.toml");

/// How the catalog file is named in messages when it is the embedded one.
pub const EMBEDDED_CATALOG_NAME: &str = "embedded catalog.toml";

/// The largest catalog file read (the embedded one is under 2 KiB; a whole
/// marketplace's would fit).
const MAX_CATALOG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub services: Vec<Service>,
}

/// A service offering.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub description: String,
    pub bindable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances_retrievable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bindings_retrievable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_context_updates: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_updateable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_client: Option<DashboardClient>,
    pub plans: Vec<Plan>,
}

/// Cloud Foundry's dashboard single sign-on client (a catalog extension of the profile).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardClient {
    pub id: String,
    pub secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

/// A service plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bindable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_updateable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding_rotatable: Option<bool>,
    /// How long a binding's credentials work (`"90d"`: a whole number and `s`, `m`, `h` or
    /// `d`); none: until the binding is deleted. The broker's own field, not the spec's: it
    /// is never served in the catalog, only announced on each binding (`metadata.expires_at`).
    #[serde(default, skip_serializing)]
    pub binding_lifetime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_polling_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceInfo {
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Why a catalog was refused: the file, the field and the problem, for one line of log.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogError {
    pub file: String,
    pub field: String,
    pub problem: String,
    /// The file could not be read at all (a configuration problem, not an invalid catalog).
    pub unreadable: bool,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.problem)
        }
    }
}

impl std::error::Error for CatalogError {}

/// A catalog that passed validation, with the warnings (SHOULDs it misses) to log once.
#[derive(Debug, Clone)]
pub struct LoadedCatalog {
    pub catalog: Catalog,
    pub source: String,
    pub warnings: Vec<String>,
}

impl Catalog {
    /// Reads `path`, or the embedded catalog when `path` is `None`, and validates it.
    ///
    /// The embedded catalog loads without warnings: its names are the original broker's
    /// ("Echo Service", with a space) on purpose, and an operator cannot change them without
    /// a catalog file of their own, which is then warned about.
    pub fn load(path: Option<&Path>) -> Result<LoadedCatalog, CatalogError> {
        match path {
            None => Catalog::parse(EMBEDDED_CATALOG, EMBEDDED_CATALOG_NAME).map(|loaded| {
                LoadedCatalog {
                    warnings: Vec::new(),
                    ..loaded
                }
            }),
            Some(path) => {
                let file = path.display().to_string();
                let unreadable = |problem: String| CatalogError {
                    file: file.clone(),
                    field: String::new(),
                    problem,
                    unreadable: true,
                };
                let bytes = crate::settings::read_config_file(path, MAX_CATALOG_BYTES)
                    .map_err(|error| unreadable(error.to_string()))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| unreadable("cannot be read: not UTF-8 text".into()))?;
                Catalog::parse(&text, &file)
            }
        }
    }

    /// Parses TOML text and validates it; `file` only names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<LoadedCatalog, CatalogError> {
        let catalog: Catalog = toml::from_str(text).map_err(|error| CatalogError {
            file: file.to_string(),
            field: String::new(),
            problem: one_line(error.message()) + &toml_location(text, &error),
            unreadable: false,
        })?;
        let warnings = catalog
            .validate()
            .map_err(|(field, problem)| CatalogError {
                file: file.to_string(),
                field,
                problem,
                unreadable: false,
            })?;
        Ok(LoadedCatalog {
            catalog,
            source: file.to_string(),
            warnings,
        })
    }

    /// The JSON body of `GET /v2/catalog`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{\"services\":[]}".to_vec())
    }

    pub fn service(&self, service_id: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|service| service.id == service_id)
    }

    /// Checks every MUST of the spec's catalog section; returns the SHOULDs it misses.
    fn validate(&self) -> Result<Vec<String>, (String, String)> {
        let mut warnings = Vec::new();
        let mut service_ids = HashSet::new();
        let mut service_names = HashSet::new();
        let mut plan_ids = HashSet::new();
        for (s, service) in self.services.iter().enumerate() {
            let at = |field: &str| format!("services[{s}].{field}");
            require_non_empty(&service.id, at("id"))?;
            require_non_empty(&service.name, at("name"))?;
            require_non_empty(&service.description, at("description"))?;
            if !service_ids.insert(service.id.as_str()) {
                return Err((at("id"), format!("'{}' is used twice", service.id)));
            }
            if !service_names.insert(service.name.as_str()) {
                return Err((at("name"), format!("'{}' is used twice", service.name)));
            }
            warn_unless_cli_friendly(&service.name, at("name"), &mut warnings);
            if let Some(client) = &service.dashboard_client {
                require_non_empty(&client.id, at("dashboard_client.id"))?;
                require_non_empty(&client.secret, at("dashboard_client.secret"))?;
            }
            if service.plans.is_empty() {
                return Err((at("plans"), "a service needs at least one plan".into()));
            }
            let mut plan_names = HashSet::new();
            for (p, plan) in service.plans.iter().enumerate() {
                let at = |field: &str| format!("services[{s}].plans[{p}].{field}");
                require_non_empty(&plan.id, at("id"))?;
                require_non_empty(&plan.name, at("name"))?;
                require_non_empty(&plan.description, at("description"))?;
                if !plan_ids.insert(plan.id.as_str()) {
                    return Err((at("id"), format!("'{}' is used twice", plan.id)));
                }
                if !plan_names.insert(plan.name.as_str()) {
                    let problem = format!("'{}' is used twice in this service", plan.name);
                    return Err((at("name"), problem));
                }
                warn_unless_cli_friendly(&plan.name, at("name"), &mut warnings);
                if let Some(info) = &plan.maintenance_info {
                    if !is_semantic_version(&info.version) {
                        let problem = format!("'{}' is not a semantic version", info.version);
                        return Err((at("maintenance_info.version"), problem));
                    }
                }
                if let Some(schemas) = &plan.schemas {
                    validate_schemas(schemas, &at("schemas"))?;
                }
                if let Some(lifetime) = &plan.binding_lifetime {
                    parse_lifetime(lifetime)
                        .map_err(|problem| (at("binding_lifetime"), problem))?;
                }
            }
        }
        Ok(warnings)
    }
}

impl Service {
    pub fn plan(&self, plan_id: &str) -> Option<&Plan> {
        self.plans.iter().find(|plan| plan.id == plan_id)
    }

    /// Whether instances of `plan` may move to another plan (the plan's flag wins).
    pub fn plan_is_updateable(&self, plan: &Plan) -> bool {
        plan.plan_updateable
            .or(self.plan_updateable)
            .unwrap_or(false)
    }

    /// The plan ids, for error messages that say what would have been valid.
    pub fn plan_ids(&self) -> String {
        let ids: Vec<&str> = self.plans.iter().map(|plan| plan.id.as_str()).collect();
        ids.join(", ")
    }
}

impl Plan {
    /// How long this plan's bindings live, in seconds (checked at load: a malformed value
    /// never gets this far).
    pub fn binding_lifetime_seconds(&self) -> Option<u64> {
        self.binding_lifetime
            .as_deref()
            .and_then(|lifetime| parse_lifetime(lifetime).ok())
    }
}

/// `"90d"`, `"12h"`, `"30m"`, `"45s"`: a whole number of days, hours, minutes or seconds.
/// The longest `binding_lifetime` a plan may have: 100 years. Every store keeps an expiry
/// up to the end of the year 9999, and the echo service refuses one past it, so a longer
/// lifetime would pass this check and then fail every bind.
const LONGEST_LIFETIME_DAYS: u64 = 36_500;

fn parse_lifetime(text: &str) -> Result<u64, String> {
    let units = [('s', 1), ('m', 60), ('h', 3_600), ('d', 86_400)];
    let seconds = units.iter().find_map(|(unit, unit_seconds)| {
        let number = text.strip_suffix(*unit)?;
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        number.parse::<u64>().ok()?.checked_mul(*unit_seconds)
    });
    match seconds {
        Some(seconds) if seconds > LONGEST_LIFETIME_DAYS * 86_400 => Err(format!(
            "'{text}' is longer than a binding's lifetime may be: at most {LONGEST_LIFETIME_DAYS}d (100 years)"
        )),
        Some(seconds) if seconds > 0 => Ok(seconds),
        _ => Err(format!(
            "'{text}' is not a lifetime: a whole number above 0 and a unit, s, m, h or d (e.g. \"90d\")"
        )),
    }
}

fn require_non_empty(value: &str, field: String) -> Result<(), (String, String)> {
    if value.trim().is_empty() {
        Err((field, "must be a non-empty string".into()))
    } else {
        Ok(())
    }
}

/// The spec RECOMMENDS names of letters, digits, periods and hyphens only; the original
/// broker's "Echo Service" has a space, so this is a warning, not an error.
fn warn_unless_cli_friendly(name: &str, field: String, warnings: &mut Vec<String>) {
    let friendly = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !friendly {
        warnings.push(format!(
            "{field}: '{name}' is not CLI-friendly (the spec recommends only letters, digits, '.' and '-')"
        ));
    }
}

/// `MAJOR.MINOR.PATCH`, each a number without leading zeros, with optional `-pre` and `+build`.
fn is_semantic_version(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |part: &&str| {
        !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part.len() == 1 || !part.starts_with('0'))
    };
    parts.len() == 3 && parts.iter().all(numeric) && !version.ends_with(['-', '+'])
}

/// Each `parameters` schema MUST declare `$schema` and MUST NOT exceed 64 kB.
fn validate_schemas(schemas: &Map<String, Value>, field: &str) -> Result<(), (String, String)> {
    let mut found = Vec::new();
    let schemas = Value::Object(schemas.clone());
    collect_parameter_schemas(&schemas, field, &mut found);
    for (path, schema) in found {
        if schema.get("$schema").is_none() {
            return Err((path, "a parameters schema must declare \"$schema\"".into()));
        }
        if serde_json::to_vec(schema).map_or(0, |bytes| bytes.len()) > 64 * 1024 {
            return Err((path, "a parameters schema must not exceed 64 kB".into()));
        }
    }
    Ok(())
}

fn collect_parameter_schemas<'a>(value: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    if let Value::Object(map) = value {
        for (key, child) in map {
            let child_path = format!("{path}.{key}");
            if key == "parameters" {
                out.push((child_path, child));
            } else {
                collect_parameter_schemas(child, &child_path, out);
            }
        }
    }
}

/// " (line L, column C)" for a TOML error, so the operator can find the problem.
/// toml's messages can span lines ("invalid string\nexpected ..."); a refusal is one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn toml_location(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" (line {line}, column {column})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_loads_without_warnings_and_a_file_with_its_names_gets_them() {
        let loaded = Catalog::load(None).expect("embedded catalog loads");
        assert_eq!(loaded.catalog.services.len(), 2);
        assert_eq!(loaded.warnings, Vec::<String>::new());
        let file = Catalog::parse(EMBEDDED_CATALOG, "catalog.toml").expect("the file loads");
        assert!(file.warnings.iter().any(|w| w.contains("Echo Service")));
    }

    #[test]
    fn binding_lifetimes_are_a_whole_number_and_a_unit() {
        let seconds = |text: &str| parse_lifetime(text);
        assert_eq!(seconds("90d"), Ok(90 * 86_400));
        assert_eq!(seconds("12h"), Ok(12 * 3_600));
        assert_eq!(seconds("30m"), Ok(1_800));
        assert_eq!(seconds("5s"), Ok(5));
        assert_eq!(seconds("36500d"), Ok(36_500 * 86_400), "100 years");
        let too_long = seconds("36501d").expect_err("over 100 years");
        assert!(too_long.contains("at most 36500d"), "{too_long}");
        for bad in [
            "99999999999d",
            "876001h",
            "",
            "d",
            "0d",
            "90",
            "1.5h",
            "-1d",
            "90 d",
            "90D",
            "1w",
            "99999999999999999999d",
        ] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_malformed_binding_lifetime_stops_the_catalog_naming_the_plan() {
        let text = EMBEDDED_CATALOG.replace(
            "binding_lifetime = \"90d\"",
            "binding_lifetime = \"90 days\"",
        );
        let refused = Catalog::parse(&text, "test.toml").expect_err("refused");
        assert_eq!(refused.field, "services[1].plans[0].binding_lifetime");
        assert!(
            refused.problem.contains("'90 days' is not a lifetime"),
            "{refused}"
        );
        let served = serde_json::to_string(&Catalog::load(None).expect("loads").catalog)
            .expect("serialises");
        assert!(served.contains("\"binding_rotatable\":true"), "{served}");
        assert!(
            !served.contains("binding_lifetime"),
            "the broker's own field is not served"
        );
    }

    #[test]
    fn semantic_versions_are_recognised() {
        for good in ["1.0.0", "0.1.2", "10.20.30-rc.1", "1.2.3+build.5"] {
            assert!(is_semantic_version(good), "{good}");
        }
        for bad in ["", "1", "1.0", "01.0.0", "1.0.x", "1.0.0-", "a.b.c"] {
            assert!(!is_semantic_version(bad), "{bad}");
        }
    }

    #[test]
    fn duplicate_plan_ids_name_the_field() {
        let text = EMBEDDED_CATALOG.replace("small_0001", "big_0001");
        let error = Catalog::parse(&text, "x.toml").expect_err("duplicate id refused");
        assert_eq!(error.field, "services[1].plans[0].id");
    }
}
