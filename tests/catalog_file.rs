//! The catalog file: `--check-catalog FILE` for operators and CI, `CATALOG_PATH` to serve
//! another catalog, and start-up refusing an invalid one with a line that names the field.

mod common;
use common::*;

const CATALOG: &str = include_str!("../catalog.toml");

fn write_catalog(dir: &TempDir, text: &str) -> String {
    let path = dir.path().join("catalog.toml");
    std::fs::write(&path, text).expect("the catalog file is written");
    path.display().to_string()
}

#[test]
fn check_catalog_accepts_the_seed_catalog_and_warns_about_its_names() {
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

/// The deployed catalog is the seed's with one difference: no published dashboard client.
#[test]
fn the_deployed_catalog_is_the_embedded_one_without_its_dashboard_client() {
    let mut embedded: toml::Value = toml::from_str(CATALOG).expect("catalog.toml is TOML");
    let deployed: toml::Value =
        toml::from_str(include_str!("../catalog-cf.toml")).expect("catalog-cf.toml is TOML");
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
    assert!(
        output.contains("CATALOG_PATH") && output.contains("catalog-cf.toml"),
        "{output}"
    );
    assert!(
        !output.contains("secret-1"),
        "the refusal repeats the secret: {output}"
    );
}
