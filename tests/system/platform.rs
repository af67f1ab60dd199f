//! True on its platforms: the echo service keeps its state on a volume the platform binds
//! (Cloud Foundry's `VCAP_SERVICES`, Stackato's `STACKATO_FILESYSTEM`) when no `DATA_DIR`
//! is set, and says so; and beyond loopback no weak password, nor any credential-looking
//! value found in this repository, is accepted.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `VCAP_SERVICES` as Cloud Foundry hands it to an app bound to an NFS volume service
/// instance whose read-write mount is `dir`.
fn vcap_services_with_volume(dir: &str) -> String {
    serde_json::json!({
        "nfs": [{
            "name": "echo-state",
            "label": "nfs",
            "plan": "Existing",
            "credentials": {},
            "volume_mounts": [
                {"container_dir": dir, "mode": "rw", "device_type": "shared"}
            ]
        }]
    })
    .to_string()
}

/// A `VCAP_APPLICATION` as on a platform (only its presence matters).
const VCAP_APPLICATION: &str = r#"{"application_name": "echo-service", "space_name": "dev"}"#;

fn provision_directly(echo: &Process, instance_id: &str) {
    let url = format!("{}/echo/{instance_id}", echo.url);
    let body = r#"{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "o", "space_guid": "s"}"#;
    let reply = call(
        "PUT",
        &url,
        &[("Content-Type", "application/json")],
        Some(body),
    )
    .expect("the echo service answers");
    assert_eq!(reply.status, 200, "{}", reply.text);
}

fn instance_exists(echo: &Process, instance_id: &str) -> bool {
    let url = format!("{}/echo/{instance_id}", echo.url);
    call("GET", &url, &[], None).is_ok_and(|reply| reply.status == 200)
}

/// A restage starts the app in a new container: a new, empty working directory, the same
/// bound volume. Every instance must be found again.
#[test]
fn a_bound_volume_keeps_every_instance_across_a_restart_from_an_empty_working_directory() {
    let volume = TempDir::new("volume");
    let vcap_services = vcap_services_with_volume(&volume.path().display().to_string());
    let env = [
        ("VCAP_SERVICES", vcap_services.as_str()),
        ("VCAP_APPLICATION", VCAP_APPLICATION),
    ];
    let first_container = TempDir::new("container-1");
    let port = free_port();
    let mut echo = Process::start_in(Some(first_container.path()), ECHO_SERVICE, port, &env);
    for instance_id in ["kept-1", "kept-2", "kept-3"] {
        provision_directly(&echo, instance_id);
    }
    let log = echo.log();
    assert!(
        log.contains("the volume of the bound service 'nfs'"),
        "{log}"
    );
    assert!(!log.contains("ephemeral"), "{log}");
    echo.kill();

    let second_container = TempDir::new("container-2");
    let echo = Process::start_in(Some(second_container.path()), ECHO_SERVICE, port, &env);
    for instance_id in ["kept-1", "kept-2", "kept-3"] {
        assert!(instance_exists(&echo, instance_id), "{instance_id} is lost");
    }
    assert!(echo.log().contains("3 instances loaded"), "{}", echo.log());
    let leftovers = std::fs::read_dir(second_container.path()).map_or(0, |dir| dir.count());
    assert_eq!(leftovers, 0, "state was written to the working directory");
}

#[test]
fn the_broker_embedded_echo_service_uses_the_bound_volume_too() {
    let volume = TempDir::new("volume-embedded");
    let vcap_services = vcap_services_with_volume(&volume.path().display().to_string());
    let container = TempDir::new("container-embedded");
    let port = free_port();
    let echo_port = free_port().to_string();
    let env = [
        ("VCAP_SERVICES", vcap_services.as_str()),
        ("ECHO_PORT", echo_port.as_str()),
    ];
    let broker = Process::start_in(Some(container.path()), BROKER, port, &env);
    let url = format!("{}/v2/service_instances/on-the-volume", broker.url);
    assert_eq!(platform("PUT", &url, Some(PROVISION_ECHO)).status, 201);
    let journal_files = std::fs::read_dir(volume.path()).map_or(0, |dir| dir.count());
    assert!(journal_files > 0, "nothing written to the volume");
    let log = broker.log();
    assert!(
        log.contains("the volume of the bound service 'nfs'"),
        "{log}"
    );
}

#[test]
fn stackato_filesystem_is_used_and_an_explicit_data_dir_wins() {
    let filesystem = TempDir::new("stackato-fs");
    let filesystem_path = filesystem.path().display().to_string();
    let container = TempDir::new("container-stackato");
    let echo = Process::start_in(
        Some(container.path()),
        ECHO_SERVICE,
        free_port(),
        &[("STACKATO_FILESYSTEM", &filesystem_path)],
    );
    provision_directly(&echo, "on-stackato");
    assert!(
        echo.log().contains("Stackato's filesystem service"),
        "{}",
        echo.log()
    );
    assert!(std::fs::read_dir(filesystem.path()).is_ok_and(|mut dir| dir.next().is_some()));

    let explicit = TempDir::new("explicit");
    let explicit_path = explicit.path().display().to_string();
    let echo = Process::start_in(
        Some(container.path()),
        ECHO_SERVICE,
        free_port(),
        &[
            ("STACKATO_FILESYSTEM", &filesystem_path),
            ("DATA_DIR", &explicit_path),
        ],
    );
    assert!(!instance_exists(&echo, "on-stackato"));
    assert!(echo.log().contains("(DATA_DIR)"), "{}", echo.log());
}

#[test]
fn the_ephemeral_default_on_a_platform_is_a_warning() {
    let container = TempDir::new("container-ephemeral");
    let echo = Process::start_in(
        Some(container.path()),
        ECHO_SERVICE,
        free_port(),
        &[("VCAP_APPLICATION", VCAP_APPLICATION)],
    );
    let log = echo.log();
    let warning = log
        .lines()
        .find(|line| line.contains("WARN") && line.contains("ephemeral"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(warning.contains("echo-data"), "{warning}");
}

#[test]
fn malformed_vcap_services_stops_start_up_naming_the_variable() {
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &[("VCAP_SERVICES", "{not json")]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.trim().starts_with("error: VCAP_SERVICES: "),
        "{output}"
    );
}

/// Runs `binary` with `env` and expects exit 2 with one line naming `variable`.
fn assert_refused(binary: &str, env: &[(&str, &str)], variable: &str) -> String {
    let (code, output) = run_to_end(binary, &[], env);
    assert_eq!(code, Some(2), "{env:?}: {output}");
    assert_eq!(output.trim().lines().count(), 1, "{env:?}: {output}");
    assert!(output.contains(variable), "{env:?}: {output}");
    output
}

/// The repository's own files when git cannot list them (a source archive): these files, and
/// every file under these folders. `fallback_covers_every_tracked_file_with_a_credential`
/// keeps the list complete.
const FALLBACK_FILES: [&str; 18] = [
    "README.md",
    "CONTRIBUTING.md",
    "Cargo.toml",
    "manifest.yml",
    "vars.example.yml",
    "catalog.toml",
    "catalog-cf.toml",
    "Procfile",
    ".gitignore",
    ".cfignore",
    ".ci",
    "bench",
    "docs",
    "examples",
    "scripts",
    "src",
    "testkit",
    "tests",
];

/// The files git tracks under `root`, or `None` where git is not installed or `root` is not
/// in a repository.
fn tracked_files(root: &Path) -> Option<Vec<PathBuf>> {
    let output = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let listed = String::from_utf8_lossy(&output.stdout).to_string();
    let files = listed
        .split('\0')
        .filter(|path| !path.is_empty())
        .map(|path| root.join(path))
        .collect();
    Some(files)
}

/// The files of [`FALLBACK_FILES`] under `root`, the folders' walked.
fn fallback_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = FALLBACK_FILES.iter().map(|path| root.join(path)).collect();
    while let Some(path) = pending.pop() {
        match std::fs::read_dir(&path) {
            Ok(entries) => pending.extend(entries.flatten().map(|entry| entry.path())),
            Err(_) => files.push(path),
        }
    }
    files
}

/// The repository's text files with their paths: the files git tracks, which anyone who
/// clones it can read, else the fallback list. Nothing else is read: beside them a reader
/// keeps secrets of their own (the walk-through's `./echo-data`, a `vars.yml`, a
/// `vcap.json`).
fn repository_files() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths = tracked_files(root).unwrap_or_else(|| fallback_files(root));
    paths
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            Some((path, text))
        })
        .collect()
}

/// A value as the text writes it: quotes, brackets and trailing punctuation taken off, and
/// what follows an `&` (the next parameter of a query string).
fn bare_value(text: &str) -> &str {
    let text = text.trim_start_matches(['"', '\'', '`', ' ', '{', '(', '[']);
    let end = text
        .find(|c: char| c.is_whitespace() || "\"'`,;)]}&".contains(c))
        .unwrap_or(text.len());
    &text[..end]
}

/// Every value the text `line` sets for something named like a credential (`password:`,
/// `BROKER_PASSWORD=`, `"secret" = `, `token:`), the password of `user:password@` in a URL
/// and of `-u user:password`, and the password argument of `cf create-service-broker`.
fn credential_values(line: &str) -> Vec<String> {
    let mut values = Vec::new();
    let lower = line.to_ascii_lowercase();
    for key in ["password", "passwd", "secret", "token"] {
        for (at, _) in lower.match_indices(key) {
            let rest = &line[at + key.len()..];
            let rest =
                rest.trim_start_matches(|c: char| c.is_alphanumeric() || "_-\"'` ".contains(c));
            if let Some(value) = rest.strip_prefix([':', '=']) {
                values.push(bare_value(value.trim_start_matches('=')).to_string());
            }
        }
    }
    for (at, _) in line.match_indices("://") {
        let authority = bare_value(&line[at + 3..]);
        if let Some((userinfo, _)) = authority.split_once('@') {
            values.extend(
                userinfo
                    .split_once(':')
                    .map(|(_, password)| password.to_string()),
            );
        }
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    for pair in words.windows(2) {
        if pair[0] == "-u" {
            values.extend(
                bare_value(pair[1])
                    .split_once(':')
                    .map(|(_, p)| p.to_string()),
            );
        }
    }
    if let Some(at) = words
        .iter()
        .position(|word| *word == "create-service-broker")
    {
        values.extend(words.get(at + 3).map(|word| bare_value(word).to_string()));
    }
    values.retain(|value| !value.is_empty());
    values
}

/// The rule stays true as the repository changes: whatever credential-looking value any of
/// its files holds (README and docs, manifest, vars.example.yml, catalogs, sources, tests),
/// the real binary refuses it beyond loopback. Tests that need a password that is accepted
/// make a fresh one at run time (`fresh_password`).
///
/// A value the binary accepts lets it go on with its start: to `DATABASE_URL`, which is no
/// database's, so it stops there too (exit 2), before it opens any state or listens; the
/// failure then names each such value and the file it came from.
#[test]
fn beyond_loopback_every_credential_looking_value_in_the_repository_is_refused() {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for (path, text) in repository_files() {
        for value in text.lines().flat_map(credential_values) {
            if !found.iter().any(|(known, _)| *known == value) {
                found.push((value, path.clone()));
            }
        }
    }
    for expected in [
        "pass",
        "THE-BROKER-PASSWORD",
        "change-me-broker-password",
        "secret-1",
    ] {
        assert!(
            found.iter().any(|(value, _)| value == expected),
            "the search finds {expected}"
        );
    }
    let port = free_port().to_string();
    let mut accepted = Vec::new();
    for (password, path) in &found {
        let env = [
            ("PORT", port.as_str()),
            ("HOST", "0.0.0.0"),
            ("ECHO_USERNAME", "broker"),
            ("ECHO_PASSWORD", password.as_str()),
            ("DATABASE_URL", "not-a-database"),
        ];
        let (code, output) = run_to_end(ECHO_SERVICE, &[], &env);
        let refused = code == Some(2)
            && output.trim().lines().count() == 1
            && output.contains("ECHO_PASSWORD: this value ");
        if !refused {
            accepted.push(format!(
                "'{password}' (from {}): {}",
                path.display(),
                output.trim()
            ));
        }
    }
    assert!(
        accepted.is_empty(),
        "beyond loopback the echo service accepts:\n{}",
        accepted.join("\n")
    );
}

/// Only what git tracks is scanned: an untracked file, such as the `vars.yml` the deploy
/// steps make, is a reader's own and never read.
#[test]
fn the_scan_reads_the_files_git_tracks_and_no_other() {
    let repository = TempDir::new("repository");
    let root = repository.path();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !git(&["init", "--quiet"]) {
        eprintln!("skipped: git is not installed");
        return;
    }
    std::fs::write(root.join("README.md"), "published\n").expect("a file is written");
    std::fs::write(root.join("vars.yml"), "broker-password: mine\n").expect("a file is written");
    assert!(git(&["add", "README.md"]), "git add");
    assert_eq!(tracked_files(root), Some(vec![root.join("README.md")]));
    let not_a_repository = TempDir::new("not-a-repository");
    assert_eq!(tracked_files(not_a_repository.path()), None);
}

/// Without git the scan reads the fallback list: it holds every tracked file in which the
/// scan finds a value, and names only files that exist.
#[test]
fn fallback_covers_every_tracked_file_with_a_credential() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(tracked) = tracked_files(root) else {
        eprintln!("skipped: git cannot list the repository's files here");
        return;
    };
    for path in FALLBACK_FILES {
        assert!(root.join(path).exists(), "{path} does not exist");
    }
    let fallback = fallback_files(root);
    for path in tracked {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().flat_map(credential_values).next().is_some() {
            assert!(
                fallback.contains(&path),
                "{} is not in FALLBACK_FILES",
                path.display()
            );
        }
    }
}

#[test]
fn beyond_loopback_a_weak_or_published_password_is_refused_by_both_binaries_naming_the_rule() {
    let port = free_port().to_string();
    let port = port.as_str();
    let own = fresh_password();
    for (password, problem) in [
        ("THE-BROKER-PASSWORD", "too easy to guess"),
        ("secret", "too easy to guess"),
        ("change-me-echo-password", "too easy to guess"),
    ] {
        let output = assert_refused(
            BROKER,
            &[
                ("PORT", port),
                ("HOST", "0.0.0.0"),
                ("BROKER_USERNAME", "platform"),
                ("BROKER_PASSWORD", password),
                ("SERVICE_BASE", "http://127.0.0.1:9"),
            ],
            "BROKER_PASSWORD",
        );
        assert!(output.contains(problem), "{output}");
        assert!(output.contains("at least 16 characters"), "{output}");
        assert_refused(
            BROKER,
            &[
                ("PORT", port),
                ("HOST", "0.0.0.0"),
                ("BROKER_USERNAME", "platform"),
                ("BROKER_PASSWORD", own.as_str()),
                ("ECHO_USERNAME", "broker"),
                ("ECHO_PASSWORD", password),
                ("SERVICE_BASE", "http://127.0.0.1:9"),
            ],
            "ECHO_PASSWORD",
        );
    }
    // A strong-looking value from the README's samples is published all the same.
    let readme = include_str!("../../README.md");
    let sample = readme
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|word| word.len() >= 32 && word.chars().any(|c| c.is_ascii_digit()))
        .expect("the README shows a random credential");
    let output = assert_refused(
        ECHO_SERVICE,
        &[
            ("PORT", port),
            ("HOST", "0.0.0.0"),
            ("ECHO_USERNAME", "broker"),
            ("ECHO_PASSWORD", sample),
        ],
        "ECHO_PASSWORD",
    );
    assert!(output.contains("published"), "{output}");
}

#[test]
fn the_password_rule_is_in_both_helps() {
    for binary in [BROKER, ECHO_SERVICE] {
        let (code, help) = run_to_end(binary, &["--help"], &[]);
        assert_eq!(code, Some(0));
        assert!(
            help.contains("at least 16 characters with letters and digits"),
            "{help}"
        );
    }
}

/// Beyond loopback a fresh strong password passes the check: the service goes on to the
/// next step of its start (here a `DATA_DIR` that is a file, so it never listens).
#[test]
fn beyond_loopback_a_fresh_strong_password_is_accepted() {
    let data = TempDir::new("not-a-dir");
    let file = data.path().join("file");
    std::fs::write(&file, "").expect("a file is written");
    let port = free_port().to_string();
    let file_text = file.display().to_string();
    let password = fresh_password();
    let output = assert_refused(
        ECHO_SERVICE,
        &[
            ("PORT", port.as_str()),
            ("HOST", "0.0.0.0"),
            ("ECHO_USERNAME", "broker"),
            ("ECHO_PASSWORD", password.as_str()),
            ("DATA_DIR", file_text.as_str()),
            ("LOG_LEVEL", "error"),
        ],
        "DATA_DIR",
    );
    assert!(!output.contains("ECHO_PASSWORD"), "{output}");
}

#[test]
fn on_loopback_the_default_credentials_still_work() {
    let system = System::start_with(&[
        ("HOST", "127.0.0.1"),
        ("BROKER_USERNAME", "user"),
        ("BROKER_PASSWORD", "pass"),
    ]);
    assert_eq!(
        platform("GET", &system.url("/v2/catalog"), None).status,
        200
    );
}

/// The deployment files keep what the platform needs: no DATA_DIR pinned to the ephemeral
/// app directory (a bound volume must take effect), the deployed catalog without the
/// published dashboard client, and management calls never over a public http:// route.
#[test]
fn the_deployment_files_leave_state_to_a_volume_and_keep_management_calls_off_public_http() {
    let manifest = include_str!("../../manifest.yml");
    let settings = |text: &'static str| {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .collect::<Vec<_>>()
    };
    let manifest_lines = settings(manifest);
    assert!(!manifest_lines
        .iter()
        .any(|line| line.starts_with("DATA_DIR:")));
    assert!(manifest_lines.contains(&"CATALOG_PATH: catalog-cf.toml"));
    let vars = settings(include_str!("../../vars.example.yml"));
    let service_base = vars
        .iter()
        .find_map(|line| line.strip_prefix("service-base:"))
        .map(str::trim)
        .expect("vars.example.yml sets service-base");
    let internal = service_base.starts_with("http://") && service_base.contains(".apps.internal");
    assert!(
        service_base.starts_with("https://") || internal,
        "{service_base}"
    );
}
