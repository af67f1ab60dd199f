//! What one request's log line costs the thread that answers the request: this program
//! writes the line a `GET /v2/catalog` gets at `LOG_LEVEL=info` (through the same
//! `logging::request` the servers call) many times, from 1 thread and then from 16 at once,
//! and prints on standard error the time per line, on the clock and in CPU time of the
//! whole process (Linux), the flush at the end included.
//!
//! ```text
//! cargo run --release --example log_line_cost > /tmp/lines.log     # to a file, as in the benchmark
//! LOG_FORMAT=json cargo run --release --example log_line_cost > /tmp/lines.log
//! ```
//!
//! Standard output takes the lines: send it to a file or a pipe, as a deployed server's is;
//! a terminal measures the terminal. docs/performance.md has the figures.

use echo_broker::logging::{self, RequestContext};
use std::time::{Duration, Instant};

/// Lines per measurement, split between the threads.
const LINES: usize = 400_000;

/// How many times each measurement runs; the fastest counts (the others met other work).
const REPEATS: usize = 5;

fn main() {
    let format = echo_broker::settings::log_format().unwrap_or_else(|problem| {
        eprintln!("log_line_cost: {problem}");
        std::process::exit(2);
    });
    logging::init(log::LevelFilter::Info, format);
    let context = RequestContext {
        request_identity: Some("4f1c7a2e-1b9d-4c55-9a3e-0d2b7c6e8f10".into()),
        user: None,
    };
    for threads in [1, 16] {
        let (wall, cpu) = (0..REPEATS)
            .map(|_| measure(threads, &context))
            .fold((f64::MAX, f64::MAX), |(wall, cpu), (w, c)| {
                (wall.min(w), cpu.min(c))
            });
        let cpu = if cpu == f64::MAX {
            "n/a".to_string()
        } else {
            format!("{:.0} ns", cpu * 1e9 / LINES as f64)
        };
        eprintln!(
            "log_line_cost: {threads:>2} thread(s): {:.0} ns of clock per line, {cpu} of CPU per line ({LINES} lines, fastest of {REPEATS})",
            wall * 1e9 / LINES as f64,
        );
    }
}

/// Seconds on the clock and of CPU (the process) for `LINES` lines over `threads` threads.
fn measure(threads: usize, context: &RequestContext) -> (f64, f64) {
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..LINES / threads {
                    logging::request(
                        "broker",
                        "GET",
                        "/v2/catalog",
                        200,
                        Duration::from_micros(120),
                        context,
                    );
                }
            });
        }
    });
    log::logger().flush();
    let wall = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, process_cpu_seconds()) {
        (Some(before), Some(after)) => after - before,
        _ => f64::MAX,
    };
    (wall, cpu)
}

/// User and system CPU seconds of this process so far (Linux: `/proc/self/stat`, USER_HZ 100).
fn process_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)?
        .iter()
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    Some(ticks as f64 / 100.0)
}
