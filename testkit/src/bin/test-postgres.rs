//! A throwaway PostgreSQL server on 127.0.0.1, in one command: to try the echo service on
//! PostgreSQL (the README's "On PostgreSQL"), and for the store matrix (docs/testing.md),
//! whose tests run every echo service on it when `ECHO_TEST_DATABASE_URL` holds its URL.
//! `scripts/test-postgres.sh` runs it.
//!
//! ```text
//! test-postgres [start]   start one in a fresh temp dir; print its URL, and on standard
//!                         error the line to paste to run the broker on it and the one that
//!                         stops it
//! test-postgres stop DIR  stop it and remove DIR
//! test-postgres run CMD…  start one, run CMD with ECHO_TEST_DATABASE_URL set, stop it
//!                         whatever happens; CMD's exit status
//! ```

use std::path::Path;
use std::process::{Command, ExitCode};
use testkit::{stop_kept, Cluster, ClusterOptions};

const USAGE: &str = "usage: test-postgres [start] | stop DIR | run COMMAND...";

/// The echo services of the tests that run at once each hold connections, hence the
/// generous maximum.
const MAX_CONNECTIONS: u32 = 300;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        None | Some("start") if args.len() <= 1 => start(),
        Some("stop") if args.len() == 2 => {
            stop_kept(Path::new(&args[1])).map(|()| ExitCode::SUCCESS)
        }
        Some("run") if args.len() > 1 => run(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    outcome.unwrap_or_else(|problem| {
        eprintln!("test-postgres: {problem}");
        ExitCode::FAILURE
    })
}

fn launch() -> Result<Cluster, String> {
    let options = ClusterOptions {
        max_connections: MAX_CONNECTIONS,
        ..ClusterOptions::default()
    };
    Cluster::launch(&options).map_err(|error| error.to_string())
}

/// Starts a server that outlives this program: its URL on standard output, and on standard
/// error how to use it and how to stop it.
fn start() -> Result<ExitCode, String> {
    let cluster = launch()?;
    let url = cluster.url("postgres");
    let dir = cluster.keep_running();
    println!("{url}");
    eprintln!(
        "test-postgres: a throwaway PostgreSQL server runs on 127.0.0.1, its data in {}",
        dir.display()
    );
    eprintln!("  run the broker on it:        DATABASE_URL='{url}' cargo run --release");
    eprintln!(
        "  stop it (its data goes too): {} stop {}",
        command_name(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// How to call this program again: `TEST_POSTGRES_COMMAND` (the script that runs it says
/// its own name there), else this program's path.
fn command_name() -> String {
    std::env::var("TEST_POSTGRES_COMMAND")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::args().next())
        .unwrap_or_else(|| "test-postgres".to_string())
}

/// Runs `command` with `ECHO_TEST_DATABASE_URL` set to a fresh server's URL, and stops the
/// server when it ends, by Ctrl-C too: the command gets the Ctrl-C, this program waits for
/// it and then stops the server (which runs in a session of its own, out of the terminal's
/// reach).
fn run(command: &[String]) -> Result<ExitCode, String> {
    let cluster = launch()?;
    if let Err(error) = ctrlc::set_handler(|| {}) {
        eprintln!("test-postgres: Ctrl-C will leave the server running ({error})");
    }
    let status = Command::new(&command[0])
        .args(&command[1..])
        .env("ECHO_TEST_DATABASE_URL", cluster.url("postgres"))
        .status()
        .map_err(|error| format!("cannot run {}: {error}", command[0]))?;
    drop(cluster);
    Ok(exit_code(status))
}

/// The command's exit status as this program's; a command ended by a signal is a failure.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}
