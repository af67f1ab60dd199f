//! wrk, when installed: `wrk -t1 -c16` on the catalog, the load generator most people reach
//! for, and its report read into the same figures as this program's own.

use crate::options::Options;
use crate::processes::AUTHORIZATION;
use crate::rounds::{Results, Sample, Target};
use crate::usage::total_cpu;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The catalog as wrk measures it: its threads and connections.
pub const WRK_THREADS: usize = 1;
pub const WRK_CONNS: usize = 16;

/// One round of `wrk -t1 -c16` on the catalog against each of `targets`, the order rotated
/// each round as in [`run_rounds`]; each sample under `catalog-wrk`.
pub fn wrk_round(
    results: &mut Results,
    wrk: &Path,
    targets: &[Target],
    options: &Options,
    round: usize,
) {
    for offset in 0..targets.len() {
        let target = &targets[(offset + round) % targets.len()];
        match measure_with_wrk(wrk, target, options.secs) {
            Ok(sample) => results
                .entry(("catalog-wrk", WRK_CONNS, target.label))
                .or_default()
                .push(sample),
            Err(problem) => eprintln!(
                "  note: wrk on {}, round {}: {problem}",
                target.label,
                round + 1
            ),
        }
    }
}

/// `wrk -t1 -c16 --latency` on `GET /v2/catalog` for `secs` (whole seconds, at least 1),
/// with the broker's headers, and the server's CPU time meanwhile.
fn measure_with_wrk(wrk: &Path, target: &Target, secs: f64) -> Result<Sample, String> {
    let seconds = secs.ceil().max(1.0) as u64;
    let cpu_before = total_cpu(&target.pids);
    let mut child = Command::new(wrk)
        .args([
            format!("-t{WRK_THREADS}"),
            format!("-c{WRK_CONNS}"),
            format!("-d{seconds}s"),
            "--latency".into(),
            "-H".into(),
            format!("Authorization: {AUTHORIZATION}"),
            "-H".into(),
            "X-Broker-API-Version: 2.17".into(),
            format!("http://{}/v2/catalog", target.address),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", wrk.display()))?;
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        // wrk prints its report when its run ends: this read ends with it.
        let _ = stdout.read_to_string(&mut output);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds + 15);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("wrk did not end in time".into());
            }
        }
    }
    let cpu_after = total_cpu(&target.pids);
    parse_wrk(&output, seconds as f64, cpu_before.zip(cpu_after))
}

/// A sample from wrk's report: the rate, p50 and p99, and errors (socket errors and
/// answers other than 2xx or 3xx).
fn parse_wrk(report: &str, secs: f64, cpu: Option<(f64, f64)>) -> Result<Sample, String> {
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    let rate: f64 = field("Requests/sec:")
        .and_then(|rate| rate.parse().ok())
        .ok_or_else(|| format!("no rate in wrk's report: {report}"))?;
    let latency_ms = |percentile: &str| {
        field(percentile)
            .and_then(wrk_duration_ms)
            .unwrap_or(f64::NAN)
    };
    let socket_errors: u64 = field("Socket errors:").map_or(0, |errors| {
        errors
            .split(',')
            .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    });
    let not_2xx: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    let requests = (rate * secs).round() as u64;
    Ok(Sample {
        rate,
        p50: latency_ms("50%"),
        p99: latency_ms("99%"),
        max: f64::NAN,
        step_p50: [f64::NAN; 5],
        step_p99: [f64::NAN; 5],
        operations: requests,
        errors: socket_errors + not_2xx,
        requests,
        error_kinds: BTreeMap::new(),
        elapsed: secs,
        setup: 0.0,
        cpu_us: cpu
            .map(|(before, after)| (after - before) * 1e6 / requests.max(1) as f64)
            .filter(|_| requests > 0),
        client_cpu_us: None,
    })
}

/// A duration as wrk prints it (`85.00us`, `1.20ms`, `2.00s`), in milliseconds.
fn wrk_duration_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(number) = text.strip_suffix("us") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix("ms") {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|value| value * scale)
}
