//! The walk-through end to end, through the real broker and its embedded echo service:
//! catalog, provision, bind, a bound app's message, the dashboard, unbind, deprovision; and
//! the README's own console samples of it, run as a reader pastes them and compared with the
//! output the README shows.

use crate::common::*;
use std::process::{Command, Stdio};

#[test]
fn the_walkthrough_runs_end_to_end_on_the_embedded_default() {
    let system = System::start();

    let catalog = platform("GET", &system.url("/v2/catalog"), None);
    assert_eq!(catalog.status, 200);
    let names: Vec<String> = catalog.json()["services"]
        .as_array()
        .expect("services is an array")
        .iter()
        .map(|service| service["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["Echo Service", "Invert Service"]);

    let provisioned = platform(
        "PUT",
        &system.url("/v2/service_instances/mynewinstance"),
        Some(PROVISION_ECHO),
    );
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    let dashboard_url = provisioned.json()["dashboard_url"]
        .as_str()
        .expect("dashboard_url")
        .to_string();
    assert!(dashboard_url.starts_with(&format!(
        "{}/echo/dashboard/mynewinstance?token=",
        system.echo_url
    )));

    let bound = platform(
        "PUT",
        &system.url("/v2/service_instances/mynewinstance/service_bindings/myappid"),
        Some(BIND_ECHO),
    );
    assert_eq!(bound.status, 201, "{}", bound.text);
    let uri = bound.json()["credentials"]["uri"]
        .as_str()
        .expect("credentials.uri")
        .to_string();
    assert!(uri.ends_with("/echo/mynewinstance/myappid"), "{uri}");

    let echoed = post_message(&uri, "hello, broker");
    assert_eq!(echoed.status, 200, "{}", echoed.text);
    assert_eq!(echoed.json()["response"], "hello, broker");

    let dashboard = call("GET", &dashboard_url, &[], None).expect("dashboard answers");
    assert_eq!(dashboard.status, 200);
    assert_eq!(
        dashboard.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(dashboard.text.starts_with("<!DOCTYPE html>"));
    assert!(dashboard.text.contains("mynewinstance") && dashboard.text.contains("hello, broker"));

    let unbound = platform(
        "DELETE",
        &system.url(&format!(
            "/v2/service_instances/mynewinstance/service_bindings/myappid?{ECHO_IDS}"
        )),
        None,
    );
    assert_eq!(
        (unbound.status, unbound.json()),
        (200, serde_json::json!({}))
    );
    assert_eq!(post_message(&uri, "still there?").status, 401);

    let deprovisioned = platform(
        "DELETE",
        &system.url(&format!("/v2/service_instances/mynewinstance?{ECHO_IDS}")),
        None,
    );
    assert_eq!(
        (deprovisioned.status, deprovisioned.json()),
        (200, serde_json::json!({}))
    );
    assert_eq!(
        call("GET", &dashboard_url, &[], None)
            .expect("echo answers")
            .status,
        404
    );
}

#[test]
fn invert_service_answers_the_message_reversed_character_by_character() {
    let system = System::start();
    let provisioned = platform(
        "PUT",
        &system.url("/v2/service_instances/inv"),
        Some(PROVISION_INVERT),
    );
    assert_eq!(provisioned.status, 201);
    let bind = r#"{"service_id": "invert_service", "plan_id": "small_0001", "app_guid": "app"}"#;
    let bound = platform(
        "PUT",
        &system.url("/v2/service_instances/inv/service_bindings/b"),
        Some(bind),
    );
    let uri = bound.json()["credentials"]["uri"]
        .as_str()
        .expect("uri")
        .to_string();
    let echoed = post_message(&uri, "héllo wörld ✓");
    assert_eq!(echoed.json()["response"], "✓ dlröw olléh");
}

/// One `$ command` of a README console block and the output shown under it.
#[derive(Debug)]
struct Sample {
    command: String,
    shown: String,
}

/// The ```console blocks of the README's walk-through section (from its heading to the next
/// `## ` heading), in reading order.
fn walkthrough_samples(readme: &str) -> Vec<Sample> {
    let start = readme
        .find("\n## Walk-through")
        .expect("the README has a walk-through");
    let section = &readme[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut samples: Vec<Sample> = Vec::new();
    let mut in_console = false;
    let mut continues = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            samples.push(Sample {
                command: command.to_string(),
                shown: String::new(),
            });
        } else if let Some(sample) = samples.last_mut() {
            if continues {
                sample.command.push('\n');
                sample.command.push_str(line);
            } else {
                sample.shown.push_str(line);
                sample.shown.push('\n');
            }
        }
        continues = line.ends_with('\\');
    }
    samples
}

/// Runs `commands` in one `sh`, as a reader pastes them one after another, and returns each
/// one's output.
fn run_in_one_shell(commands: &[String]) -> Vec<String> {
    const END: &str = "@@end-of-sample@@";
    let script: String = commands
        .iter()
        .map(|command| format!("{command}\nprintf '\\n%s\\n' '{END}'\n"))
        .collect();
    let output = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    text.split(&format!("\n{END}\n"))
        .map(str::to_string)
        .collect()
}

/// `text` with what differs from run to run replaced: random hex (tokens, passwords,
/// generated user names) of 12 characters and more.
fn without_random_values(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            run.push(c);
            continue;
        }
        if run.len() >= 12 {
            out.push_str("<random>");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.trim_end().to_string()
}

fn tool_missing(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
}

/// The README's walk-through, pasted in order against a fresh system: every console sample
/// shows what the system answers (random values aside). The system runs on free ports, so
/// the README's 8080 and 8090 are replaced in the commands and in the echo service's URLs it
/// shows; and with the management pair the README says to set to read the echo service's
/// metrics.
#[test]
fn the_readme_walkthrough_shows_what_the_system_answers() {
    if cfg!(windows)
        || ["sh", "curl", "sed", "grep"]
            .iter()
            .any(|tool| tool_missing(tool))
    {
        eprintln!("skipped: the README's walk-through needs sh, curl, sed and grep");
        return;
    }
    let samples = walkthrough_samples(include_str!("../../README.md"));
    assert!(samples.len() >= 10, "{samples:#?}");
    let system = System::start_with(&[("ECHO_USERNAME", "echo"), ("ECHO_PASSWORD", "echo-pass")]);
    let broker = format!("127.0.0.1:{}", system.broker.port);
    let echo = system.echo_url.trim_start_matches("http://").to_string();
    let on_these_ports = |text: &str| {
        text.replace("localhost:8080", &broker)
            .replace("localhost:8090", &echo)
            .replace("127.0.0.1:8090", &echo)
    };
    let commands: Vec<String> = samples
        .iter()
        .map(|sample| on_these_ports(&sample.command))
        .collect();
    let outputs = run_in_one_shell(&commands);
    for (sample, output) in samples.iter().zip(&outputs) {
        // The README shows each answer on lines of its own: the prompt after it starts a
        // new line.
        assert!(
            sample.shown.trim().is_empty() || output.ends_with('\n'),
            "\n$ {}\nends its answer without a newline:\n{output}",
            sample.command
        );
        // The harness's own readiness checks (`GET /health`) are counted in the metrics; a
        // reader's run has none.
        let output: String = output
            .lines()
            .filter(|line| !line.contains("route=\"health\""))
            .map(|line| format!("{line}\n"))
            .collect();
        // The catalog names the dashboard's redirect URI as written in catalog.toml.
        let shown = sample.shown.replace("127.0.0.1:8090", &echo);
        assert_eq!(
            without_random_values(&output),
            without_random_values(&shown),
            "\n$ {}\nshows what the system does not answer; it answers:\n{output}\n",
            sample.command
        );
    }
}

/// The README's line that copies a journal into a database runs the echo service from
/// where cargo builds it, after the command that builds it, with the flag it takes.
#[test]
fn the_readme_runs_the_echo_service_from_where_cargo_builds_it() {
    let readme = include_str!("../../README.md");
    let text = readme.lines().collect::<Vec<_>>().join(" ");
    let spans: Vec<&str> = text.split('`').skip(1).step_by(2).collect();
    let imports: Vec<&&str> = spans
        .iter()
        .filter(|span| span.contains("--import-journal"))
        .collect();
    assert!(!imports.is_empty(), "the README shows no --import-journal");
    for span in imports {
        assert!(
            [
                "target/release/echo-service --import-journal echo-data",
                "cargo run --release --bin echo-service -- --import-journal echo-data",
            ]
            .contains(span),
            "{span}"
        );
    }
    let built = text
        .find("cargo build --release --bins")
        .expect("the README says how to build both programs");
    let run = text
        .find("target/release/echo-service")
        .expect("the README names the built echo service");
    assert!(
        built < run,
        "the README runs target/release/echo-service before building it"
    );
    // Cargo builds the binary of that name (here in the tests' profile), and it takes the flag.
    let name = std::path::Path::new(ECHO_SERVICE)
        .file_stem()
        .and_then(|stem| stem.to_str());
    assert_eq!(name, Some("echo-service"));
    let (code, help) = run_to_end(ECHO_SERVICE, &["--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(help.contains("--import-journal DIR"), "{help}");
}

/// The README stays short enough to read in one sitting; the rest is in docs/.
#[test]
fn the_readme_stays_within_300_lines() {
    let lines = include_str!("../../README.md").lines().count();
    assert!(lines <= 300, "the README has {lines} lines");
}
