//! The catalog file: `--check-catalog FILE` for operators and CI, `CATALOG_PATH` to serve
//! another catalog, and start-up refusing an invalid one with a line that names the field.

use crate::common::*;

const CATALOG: &str = include_str!("../../catalog.toml");

fn write_catalog(dir: &TempDir, text: &str) -> String {
    let path = dir.path().join("catalog.toml");
    std::fs::write(&path, text).expect("the catalog file is written");
    path.display().to_string()
}

#[test]
fn check_catalog_accepts_the_embedded_catalogs_file_and_warns_about_its_names() {
    let dir = TempDir::new("check-valid");
    let path = write_catalog(&dir, CATALOG);
    let (code, output) = run_to_end(BROKER, &["--check-catalog", &path], &[]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("valid (2 services)"), "{output}");
    assert!(
        output.contains("services[0].name: 'Echo Service' is not CLI-friendly"),
        "{output}"
    );
}

#[test]
fn check_catalog_refuses_an_invalid_file_naming_the_field_and_exits_1() {
    let dir = TempDir::new("check-invalid");
    let cases = [
        (
            CATALOG.replace("small_0001", "big_0001"),
            "services[1].plans[0].id",
        ),
        (
            CATALOG.replace("name = \"Invert Service\"", "name = \"\""),
            "services[1].name",
        ),
        (
            CATALOG.replace("version = \"1.0.0\"", "version = \"one\""),
            "maintenance_info.version",
        ),
        (
            CATALOG.replace("description = \"Echo back the value received\"\n", ""),
            "description",
        ),
    ];
    for (text, field) in cases {
        let path = write_catalog(&dir, &text);
        let (code, output) = run_to_end(BROKER, &["--check-catalog", &path], &[]);
        assert_eq!(code, Some(1), "{output}");
        assert!(
            output.contains(&path) && output.contains(field),
            "{field}: {output}"
        );
    }
}

#[test]
fn check_catalog_on_a_file_that_cannot_be_read_exits_2_as_bad_configuration() {
    let dir = TempDir::new("check-missing");
    let missing = dir.path().join("missing.toml").display().to_string();
    let (code, output) = run_to_end(BROKER, &["--check-catalog", &missing], &[]);
    assert_eq!(code, Some(2), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "{output}");
    assert!(output.contains("missing.toml"), "{output}");
}

#[test]
fn a_toml_syntax_error_is_one_line_without_escaped_newlines() {
    let dir = TempDir::new("toml-syntax");
    let path = write_catalog(&dir, "[[services]]\nid = \"x\"\nname = \n");
    let port = free_port().to_string();
    let (code, output) = run_to_end(BROKER, &[], &[("CATALOG_PATH", &path), ("PORT", &port)]);
    assert_eq!(code, Some(2), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "{output}");
    assert!(!output.contains("\\n"), "a literal \\n in: {output}");
    assert!(output.contains("line 3"), "{output}");
    let (code, output) = run_to_end(BROKER, &["--check-catalog", &path], &[]);
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "{output}");
}

#[test]
fn an_invalid_catalog_path_stops_start_up_with_one_line_and_exit_code_2() {
    let dir = TempDir::new("start-invalid");
    let path = write_catalog(&dir, &CATALOG.replace("small_0001", "big_0001"));
    let port = free_port().to_string();
    let (code, output) = run_to_end(BROKER, &[], &[("CATALOG_PATH", &path), ("PORT", &port)]);
    assert_eq!(code, Some(2), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "{output}");
    assert!(
        output.contains(&path) && output.contains("services[1].plans[0].id"),
        "{output}"
    );
}

/// The original broker's names ("Echo Service") are the embedded catalog's on purpose: the
/// default start warns of nothing in it, and speaks of no "seed". The same names in a
/// catalog file are the operator's to change, and warned about.
#[test]
fn the_embedded_default_starts_without_catalog_warnings_and_a_file_with_its_names_gets_them() {
    let system = System::start();
    let log = system.broker.log();
    assert!(
        log.contains("catalog: embedded catalog.toml (2 services, 2 plans)"),
        "{log}"
    );
    let catalog_warning = |line: &&str| line.contains("WARN") && line.contains("catalog");
    assert_eq!(log.lines().find(catalog_warning), None, "{log}");
    assert!(!log.to_lowercase().contains("seed"), "{log}");

    let dir = TempDir::new("names");
    let path = write_catalog(&dir, CATALOG);
    let system = System::start_with(&[("CATALOG_PATH", &path)]);
    let log = system.broker.log();
    let warning = log.lines().find(catalog_warning).unwrap_or_default();
    assert!(
        warning.contains("'Echo Service' is not CLI-friendly"),
        "{log}"
    );
}

#[test]
fn catalog_path_serves_another_catalog() {
    let dir = TempDir::new("serve");
    let renamed = CATALOG.replace("\"Echo Service\"", "\"echo-service\"");
    let path = write_catalog(&dir, &renamed);
    let system = System::start_with(&[("CATALOG_PATH", &path)]);
    let catalog = platform("GET", &system.url("/v2/catalog"), None).json();
    assert_eq!(catalog["services"][0]["name"], "echo-service");
    assert!(system
        .broker
        .log()
        .contains(&format!("catalog: {path} (2 services, 2 plans)")));
}

/// The deployed catalog is the embedded one with one difference: no published dashboard
/// client.
#[test]
fn the_deployed_catalog_is_the_embedded_one_without_its_dashboard_client() {
    let mut embedded: toml::Value = toml::from_str(CATALOG).expect("catalog.toml is TOML");
    let deployed: toml::Value =
        toml::from_str(include_str!("../../catalog-cf.toml")).expect("catalog-cf.toml is TOML");
    let services = embedded["services"].as_array_mut().expect("services");
    for service in services {
        if let Some(table) = service.as_table_mut() {
            table.remove("dashboard_client");
        }
    }
    assert_eq!(deployed, embedded);
}

#[test]
fn beyond_loopback_a_catalog_with_the_published_client_secret_is_refused() {
    let port = free_port().to_string();
    let password = fresh_password();
    let credentials = [
        ("PORT", port.as_str()),
        ("HOST", "0.0.0.0"),
        ("BROKER_USERNAME", "platform"),
        ("BROKER_PASSWORD", password.as_str()),
        ("SERVICE_BASE", "http://127.0.0.1:9"),
    ];
    let (code, output) = run_to_end(BROKER, &[], &credentials);
    assert_eq!(code, Some(2), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "{output}");
    // CATALOG_PATH is unset: the line says first that the secret is the built-in catalog's.
    assert!(
        output.starts_with(
            "error: CATALOG_PATH is unset, and the built-in catalog's dashboard_client secret "
        ) && output.contains("catalog-cf.toml"),
        "{output}"
    );
    assert!(
        !output.contains("secret-1"),
        "the refusal repeats the secret: {output}"
    );

    let dir = TempDir::new("weak-secret");
    let path = dir.path().join("catalog.toml");
    std::fs::write(&path, CATALOG.replace("secret-1", "short1")).expect("the file is written");
    let path = path.display().to_string();
    let mut with_path = credentials.to_vec();
    with_path.push(("CATALOG_PATH", &path));
    let (code, output) = run_to_end(BROKER, &[], &with_path);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.starts_with(
            "error: CATALOG_PATH: the catalog's dashboard_client secret is too easy to guess"
        ),
        "{output}"
    );
}

/// The embedded default on `data`, which a restart finds again, with `extra` variables.
fn broker_on(data: &TempDir, extra: &[(&str, &str)]) -> Process {
    let data_dir = data.path().display().to_string();
    let echo_port = free_port().to_string();
    let mut env = vec![
        ("DATA_DIR", data_dir.as_str()),
        ("ECHO_PORT", echo_port.as_str()),
    ];
    env.extend_from_slice(extra);
    Process::start(BROKER, free_port(), &env)
}

/// The platform's request to `path` on `broker`.
fn to_broker(broker: &Process, method: &str, path: &str, body: Option<&str>) -> Reply {
    platform(method, &format!("{}{path}", broker.url), body)
}

/// Instances and bindings of plan `big_0001`, then a restart on a catalog that renamed the
/// plan's id to `big_0002`: the platform keeps the instances and goes on sending the old id.
#[test]
fn instances_of_a_plan_that_left_the_catalog_can_be_fetched_updated_unbound_and_deleted() {
    let data = TempDir::new("plan-left-data");
    let before = broker_on(&data, &[]);
    for instance_id in ["kept", "deleted"] {
        let instance = format!("/v2/service_instances/{instance_id}");
        let provisioned = to_broker(&before, "PUT", &instance, Some(PROVISION_ECHO));
        assert_eq!(provisioned.status, 201, "{}", provisioned.text);
        let binding = format!("{instance}/service_bindings/b");
        let bound = to_broker(&before, "PUT", &binding, Some(BIND_ECHO));
        assert_eq!(bound.status, 201, "{}", bound.text);
    }
    drop(before);
    let dir = TempDir::new("plan-left-catalog");
    let path = write_catalog(&dir, &CATALOG.replace("\"big_0001\"", "\"big_0002\""));
    let broker = broker_on(&data, &[("CATALOG_PATH", &path)]);

    let fetched = to_broker(&broker, "GET", "/v2/service_instances/kept", None);
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    assert_eq!(fetched.json()["plan_id"], "big_0001");
    let binding = "/v2/service_instances/kept/service_bindings/b";
    assert_eq!(to_broker(&broker, "GET", binding, None).status, 200);

    let instance = "/v2/service_instances/kept";
    let parameters = r#"{"service_id": "echo_service", "parameters": {"size": 2}}"#;
    let updated = to_broker(&broker, "PATCH", instance, Some(parameters));
    assert_eq!(updated.status, 200, "{}", updated.text);
    let upgrade = r#"{"service_id": "echo_service", "maintenance_info": {"version": "1.0.0"}}"#;
    let refused = to_broker(&broker, "PATCH", instance, Some(upgrade));
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused.text.contains("left the catalog"),
        "{}",
        refused.text
    );
    let moved = r#"{"service_id": "echo_service", "plan_id": "big_0002"}"#;
    let updated = to_broker(&broker, "PATCH", instance, Some(moved));
    assert_eq!(updated.status, 200, "{}", updated.text);
    let fetched = to_broker(&broker, "GET", instance, None).json();
    assert_eq!(fetched["plan_id"], "big_0002");
    assert_eq!(fetched["parameters"], serde_json::json!({"size": 2}));

    let old_ids = "service_id=echo_service&plan_id=big_0001";
    let binding = format!("/v2/service_instances/deleted/service_bindings/b?{old_ids}");
    let unbound = to_broker(&broker, "DELETE", &binding, None);
    assert_eq!(unbound.status, 200, "{}", unbound.text);
    let instance = format!("/v2/service_instances/deleted?{old_ids}");
    let deleted = to_broker(&broker, "DELETE", &instance, None);
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(to_broker(&broker, "DELETE", &instance, None).status, 410);
    // The echo service still checks that the ids are the instance's.
    let binding = format!("/v2/service_instances/kept/service_bindings/b?{old_ids}");
    assert_eq!(to_broker(&broker, "DELETE", &binding, None).status, 400);
}

#[test]
fn a_provision_or_bind_that_names_a_plan_not_in_the_catalog_is_400() {
    let dir = TempDir::new("plan-not-in-catalog");
    let path = write_catalog(&dir, &CATALOG.replace("\"big_0001\"", "\"big_0002\""));
    let system = System::start_with(&[("CATALOG_PATH", &path)]);
    let instance = system.url("/v2/service_instances/new");
    let refused = platform("PUT", &instance, Some(PROVISION_ECHO));
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.text.contains("big_0002"), "{}", refused.text);
    let provision = PROVISION_ECHO.replace("big_0001", "big_0002");
    assert_eq!(platform("PUT", &instance, Some(&provision)).status, 201);
    let binding = format!("{instance}/service_bindings/b");
    let refused = platform("PUT", &binding, Some(BIND_ECHO));
    assert_eq!(refused.status, 400, "{}", refused.text);
}

/// The catalog's version of plan `big_0001` goes from 1.0.0 to 2.0.0: an instance keeps
/// 1.0.0 until the platform upgrades it, and a fetch shows which it has.
#[test]
fn a_fetch_shows_whether_the_upgrade_the_catalog_offers_was_made() {
    let data = TempDir::new("upgrade-data");
    let before = broker_on(&data, &[]);
    let instance = "/v2/service_instances/upgraded";
    assert_eq!(
        to_broker(&before, "PUT", instance, Some(PROVISION_ECHO)).status,
        201
    );
    drop(before);
    let dir = TempDir::new("upgrade-catalog");
    let newer = CATALOG.replacen("version = \"1.0.0\"", "version = \"2.0.0\"", 1);
    let path = write_catalog(&dir, &newer);
    let broker = broker_on(&data, &[("CATALOG_PATH", &path)]);
    let version =
        || to_broker(&broker, "GET", instance, None).json()["maintenance_info"]["version"].clone();
    assert_eq!(version(), "1.0.0");
    let stale = r#"{"service_id": "echo_service", "maintenance_info": {"version": "1.0.0"}}"#;
    let refused = to_broker(&broker, "PATCH", instance, Some(stale));
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(version(), "1.0.0");
    let upgrade = r#"{"service_id": "echo_service", "maintenance_info": {"version": "2.0.0"}}"#;
    let upgraded = to_broker(&broker, "PATCH", instance, Some(upgrade));
    assert_eq!(upgraded.status, 200, "{}", upgraded.text);
    assert_eq!(version(), "2.0.0");
}

/// A platform retries a provision whose answer it lost, after the operator raised the
/// plan's maintenance_info version: the retry asks for what the first request asked, so it
/// is an identical repeat (200), and only a version it names is checked against the catalog.
#[test]
fn an_identical_provision_repeated_after_the_catalog_raised_its_version_is_200() {
    let data = TempDir::new("retry-data");
    let before = broker_on(&data, &[]);
    let instance = "/v2/service_instances/retried";
    let first = to_broker(&before, "PUT", instance, Some(PROVISION_ECHO));
    assert_eq!(first.status, 201, "{}", first.text);
    drop(before);
    let dir = TempDir::new("retry-catalog");
    let newer = CATALOG.replacen("version = \"1.0.0\"", "version = \"2.0.0\"", 1);
    let broker = broker_on(&data, &[("CATALOG_PATH", &write_catalog(&dir, &newer))]);

    let repeated = to_broker(&broker, "PUT", instance, Some(PROVISION_ECHO));
    assert_eq!(repeated.status, 200, "{}", repeated.text);
    let token = |reply: &Reply| {
        let url = reply.json()["dashboard_url"]
            .as_str()
            .unwrap_or("")
            .to_string();
        url.split("token=").nth(1).unwrap_or("").to_string()
    };
    assert_eq!(token(&repeated), token(&first), "the same instance");
    let stale = PROVISION_ECHO.replace(
        "\"space_guid\": \"IT\"",
        "\"space_guid\": \"IT\", \"maintenance_info\": {\"version\": \"1.0.0\"}",
    );
    let refused = to_broker(&broker, "PUT", instance, Some(&stale));
    assert_eq!(refused.status, 422, "{}", refused.text);
}

/// Binding a plan that has left the catalog is refused (the broker's choice), so a binding
/// of a rotatable plan cannot be renewed once the plan is removed; it keeps working until it
/// expires, and the platform can fetch and delete it.
#[test]
fn a_binding_of_a_rotatable_plan_that_left_the_catalog_cannot_be_rotated_and_stays_deletable() {
    let data = TempDir::new("rotatable-left-data");
    let before = broker_on(&data, &[]);
    let instance = "/v2/service_instances/kept";
    let provisioned = to_broker(&before, "PUT", instance, Some(PROVISION_INVERT));
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    let old = format!("{instance}/service_bindings/old");
    let bind = r#"{"service_id": "invert_service", "plan_id": "small_0001"}"#;
    let bound = to_broker(&before, "PUT", &old, Some(bind));
    assert_eq!(bound.status, 201, "{}", bound.text);
    drop(before);
    let dir = TempDir::new("rotatable-left-catalog");
    let path = write_catalog(&dir, &CATALOG.replace("\"small_0001\"", "\"small_0002\""));
    let broker = broker_on(&data, &[("CATALOG_PATH", &path)]);

    let new = format!("{instance}/service_bindings/new");
    let rotate = r#"{"predecessor_binding_id": "old"}"#;
    let refused = to_broker(&broker, "PUT", &new, Some(rotate));
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("small_0001") && refused.text.contains("its plans: small_0002"),
        "{}",
        refused.text
    );
    let fetched = to_broker(&broker, "GET", &old, None);
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    let uri = fetched.json()["credentials"]["uri"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let message = post_message(&uri, "still here");
    assert_eq!(message.status, 200, "{}", message.text);
    let ids = "service_id=invert_service&plan_id=small_0001";
    let unbound = to_broker(&broker, "DELETE", &format!("{old}?{ids}"), None);
    assert_eq!(unbound.status, 200, "{}", unbound.text);
}
