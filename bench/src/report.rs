//! The report: the table, the targets with pass or miss, and one `BENCH key=value ...` line
//! per figure for scripts.

use crate::client::CLIENT_TIMEOUT;
use crate::load::burst_summary;
use crate::options::Options;
use crate::rounds::{median, median_of, ratio, Results, Sample};
use crate::store::{FAR_VS_NEAR, MEMORY_VS_JOURNAL, POSTGRES_VS_JOURNAL, TWO_VS_ONE_PROXIED};
use crate::store_report::StoreReport;
use crate::usage::mib;
use crate::wrk::{WRK_CONNS, WRK_THREADS};
use crate::BURST_CONNS;
use std::collections::BTreeMap;

pub fn fmt(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".into()
    }
}

/// A goal and what was measured: pass or miss, and by how much.
struct Goal {
    id: &'static str,
    what: &'static str,
    goal: String,
    measured: String,
    /// Positive: better than the goal by this fraction; negative: worse.
    margin: f64,
    /// For a goal of no errors at all: how many there were.
    errors: Option<u64>,
}

fn no_errors(id: &'static str, what: &'static str, errors: Option<u64>) -> Goal {
    Goal {
        id,
        what,
        goal: "0".into(),
        measured: errors.map_or_else(|| "n/a".into(), |count| count.to_string()),
        margin: f64::NAN,
        errors,
    }
}

fn at_least(id: &'static str, what: &'static str, measured: f64, goal: f64, unit: &str) -> Goal {
    Goal {
        id,
        what,
        goal: format!(">= {}{unit}", trim(goal)),
        measured: with_unit(measured, unit),
        margin: measured / goal - 1.0,
        errors: None,
    }
}

fn at_most(id: &'static str, what: &'static str, measured: f64, goal: f64, unit: &str) -> Goal {
    Goal {
        id,
        what,
        goal: format!("<= {}{unit}", trim(goal)),
        measured: with_unit(measured, unit),
        margin: 1.0 - measured / goal,
        errors: None,
    }
}

/// `value` and its unit, or `n/a` alone.
fn with_unit(value: f64, unit: &str) -> String {
    if value.is_finite() {
        format!("{}{unit}", trim(value))
    } else {
        "n/a".into()
    }
}

pub fn trim(value: f64) -> String {
    if !value.is_finite() {
        "n/a".into()
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

pub struct Report<'a> {
    pub options: &'a Options,
    pub results: &'a Results,
    pub has_nginx: bool,
    pub catalog_bytes: usize,
    pub memory: &'a [(&'static str, Option<u64>)],
    pub embedded_hwm: Option<u64>,
    pub embedded_catalog: &'a Sample,
    pub embedded_lifecycle: &'a Sample,
    pub startup: &'a [(&'static str, Vec<f64>)],
    pub bursts: &'a [(&'static str, Vec<Option<f64>>)],
    pub sizes: &'a [(&'static str, Option<u64>)],
    pub live: Option<u64>,
    pub leaked: Option<u64>,
    pub log_bytes: u64,
    pub load_at_end: String,
    pub elapsed: f64,
    pub store: &'a StoreReport,
}

pub fn report(report: Report) {
    let Report {
        options,
        results,
        has_nginx,
        ..
    } = report;
    println!();
    println!(
        "## Throughput and latency (medians of {} rounds of {} s; catalog body {} bytes)",
        options.rounds, options.secs, report.catalog_bytes
    );
    println!();
    println!(
        "| phase | conns | server | rate/s | p50 ms | p99 ms | errors | server CPU us/op | vs oxhttp | vs tiny_http | vs nginx |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut lines = Vec::new();
    for ((phase, conns, server), samples) in results {
        let rate = median_of(samples, |s| s.rate);
        let p50 = median_of(samples, |s| s.p50);
        let p99 = median_of(samples, |s| s.p99);
        let errors: u64 = samples.iter().map(|s| s.errors).sum();
        let cpu = median_of(samples, |s| s.cpu_us.unwrap_or(f64::NAN));
        let client_cpu = median_of(samples, |s| s.client_cpu_us.unwrap_or(f64::NAN));
        let vs_oxhttp = ratio(results, phase, *conns, server, "bare-oxhttp");
        let vs_tiny_http = ratio(results, phase, *conns, server, "bare-tiny_http");
        let vs_nginx = ratio(results, phase, *conns, server, "nginx");
        let unit = if *phase == "lifecycle" {
            "cycles"
        } else {
            "req"
        };
        println!(
            "| {phase} | {conns} | {server} | {} {unit} | {} | {} | {errors} | {} | {} | {} | {} |",
            fmt(rate, 0),
            fmt(p50, 2),
            fmt(p99, 2),
            fmt(cpu, 0),
            fmt(vs_oxhttp, 2),
            fmt(vs_tiny_http, 2),
            if has_nginx {
                fmt(vs_nginx, 2)
            } else {
                "n/a".into()
            },
        );
        let mut line = format!(
            "BENCH name={phase} server={server} conns={conns} rps={} p50_ms={} p99_ms={} errors={errors} server_cpu_us_per_op={} client_cpu_us_per_op={} ratio_vs_oxhttp={} ratio_vs_tiny_http={} ratio_vs_nginx={} rounds={}",
            fmt(rate, 1),
            fmt(p50, 3),
            fmt(p99, 3),
            fmt(cpu, 1),
            fmt(client_cpu, 1),
            fmt(vs_oxhttp, 3),
            fmt(vs_tiny_http, 3),
            fmt(vs_nginx, 3),
            samples.len()
        );
        if *phase == "lifecycle" {
            let step = |i: usize| fmt(median_of(samples, |s| s.step_p99[i]), 3);
            line.push_str(&format!(
                " p99_provision_ms={} p99_bind_ms={} p99_unbind_ms={} p99_deprovision_ms={}",
                step(0),
                step(1),
                step(2),
                step(3)
            ));
        }
        lines.push(line);
    }
    println!();
    println!("Lifecycle rows: one cycle is provision, bind, unbind, deprovision (4 requests; p50/p99 are per request).");
    println!("catalog-wrk rows: wrk -t{WRK_THREADS} -c{WRK_CONNS} on the catalog (broker at LOG_LEVEL=warn, broker-info at the default info; errors are wrk's socket errors and non-2xx answers).");
    println!("The ceilings answer every lifecycle request with a canned {{}}, so their cycle rate is a quarter of their request rate.");
    if let (Some(live), Some(leaked)) = (report.live, report.leaked) {
        println!("Live instances: {live} in broker-10k's echo service; {leaked} left in broker's after its lifecycles.");
    }
    println!(
        "broker-info wrote {:.1} MB of log lines.",
        report.log_bytes as f64 / 1e6
    );

    println!();
    if report.bursts.is_empty() {
        println!("(The new-connection burst phase runs without --quick only.)");
    } else {
        println!(
            "## New connections: {BURST_CONNS} opened at once after 6 s idle, one catalog request each"
        );
        println!();
        println!(
            "| server | slowest first answer ms | median ms | unanswered in {} s |",
            CLIENT_TIMEOUT.as_secs()
        );
        println!("| --- | ---: | ---: | ---: |");
    }
    for (server, times) in report.bursts {
        let answered: Vec<f64> = times.iter().flatten().copied().collect();
        println!(
            "| {server} | {} | {} | {} |",
            fmt(answered.last().copied().unwrap_or(f64::NAN), 1),
            fmt(median(answered.clone()), 2),
            times.len() - answered.len()
        );
        lines.push(format!(
            "BENCH name=burst server={server} conns={BURST_CONNS} {}",
            burst_summary(times)
        ));
    }

    println!();
    println!("## Memory (MiB; VmHWM = peak resident, VmRSS = resident now)");
    println!();
    println!("| process | MiB |");
    println!("| --- | ---: |");
    for (what, kb) in report.memory {
        println!("| {what} | {} |", mib(*kb));
        lines.push(format!(
            "BENCH name=memory process=\"{what}\" kb={}",
            kb.map_or_else(|| "n/a".to_string(), |kb| kb.to_string())
        ));
    }
    println!(
        "| echo-broker, embedded echo service (default), peak after {} catalog/s and {} cycles/s | {} |",
        fmt(report.embedded_catalog.rate, 0),
        fmt(report.embedded_lifecycle.rate, 0),
        mib(report.embedded_hwm)
    );
    lines.push(format!(
        "BENCH name=memory process=\"echo-broker embedded, peak\" kb={} catalog_rps={} lifecycle_cps={}",
        report.embedded_hwm.map_or_else(|| "n/a".to_string(), |kb| kb.to_string()),
        fmt(report.embedded_catalog.rate, 1),
        fmt(report.embedded_lifecycle.rate, 1)
    ));

    println!();
    println!("## Start-up: spawn to the first 200 (ms)");
    println!();
    println!("| program | median | min | max | starts |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut startup_median = BTreeMap::new();
    for (label, times) in report.startup {
        let low = times.iter().copied().fold(f64::INFINITY, f64::min);
        let high = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mid = median(times.clone());
        startup_median.insert(*label, mid);
        println!(
            "| {label} | {} | {} | {} | {} |",
            fmt(mid, 1),
            fmt(low, 1),
            fmt(high, 1),
            times.len()
        );
        lines.push(format!(
            "BENCH name=startup program=\"{label}\" median_ms={} min_ms={} max_ms={} starts={}",
            fmt(mid, 2),
            fmt(low, 2),
            fmt(high, 2),
            times.len()
        ));
    }

    println!();
    println!("## Release binaries");
    println!();
    for (name, bytes) in report.sizes {
        let text = bytes.map_or_else(
            || "n/a".to_string(),
            |b| format!("{:.2} MiB ({b} bytes)", b as f64 / 1048576.0),
        );
        println!("- {name}: {text}");
        lines.push(format!(
            "BENCH name=size file={name} bytes={}",
            bytes.map_or_else(|| "n/a".to_string(), |b| b.to_string())
        ));
    }

    report.store.print(options, &mut lines);

    // ---- Targets ----
    let rate = |phase: &'static str, conns: usize, server: &'static str| {
        results
            .get(&(phase, conns, server))
            .map_or(f64::NAN, |samples| median_of(samples, |s| s.rate))
    };
    let p99 = |phase: &'static str, conns: usize, server: &'static str| {
        results
            .get(&(phase, conns, server))
            .map_or(f64::NAN, |samples| median_of(samples, |s| s.p99))
    };
    let lifecycle_errors: u64 = results
        .get(&("lifecycle", 16, "broker"))
        .map_or(0, |samples| samples.iter().map(|s| s.errors).sum());
    let kb_mib = |kb: Option<u64>| kb.map_or(f64::NAN, |kb| kb as f64 / 1024.0);
    // The ratios to the bare servers are in the table: the broker does more per request
    // (routing, auth, metrics, the conversation page); the targets are against nginx, and
    // against the build given with --before.
    let mut goals = Vec::new();
    if has_nginx {
        goals.push(at_least(
            "catalog16_vs_nginx",
            "catalog at 16 conns vs nginx (same bytes, same load generator)",
            ratio(results, "catalog", 16, "broker", "nginx"),
            1.0,
            "x",
        ));
    }
    if results.contains_key(&("catalog-wrk", WRK_CONNS, "broker-info")) {
        goals.push(at_least(
            "catalog16_wrk_default_vs_nginx",
            "catalog with wrk -t1 -c16, the default LOG_LEVEL=info (broker-info) vs nginx",
            ratio(results, "catalog-wrk", WRK_CONNS, "broker-info", "nginx"),
            0.9,
            "x",
        ));
    }
    if results.contains_key(&("lifecycle", 16, "broker-before")) {
        goals.push(at_least(
            "lifecycle16_vs_before",
            "lifecycles/s at 16 conns vs the --before build",
            ratio(results, "lifecycle", 16, "broker", "broker-before"),
            1.0,
            "x",
        ));
    }
    goals.extend([
        at_most(
            "catalog16_p99",
            "catalog p99 at 16 conns",
            p99("catalog", 16, "broker"),
            2.0,
            " ms",
        ),
        at_least(
            "lifecycle16_rate",
            "lifecycles/s at 16 conns (every change fsynced)",
            rate("lifecycle", 16, "broker"),
            2500.0,
            "/s",
        ),
        at_most(
            "lifecycle16_p99",
            "lifecycle p99 per request at 16 conns",
            p99("lifecycle", 16, "broker"),
            10.0,
            " ms",
        ),
        no_errors(
            "lifecycle16_errors",
            "lifecycle errors (non-2xx or failed)",
            Some(lifecycle_errors),
        ),
        at_least(
            "lifecycle10k_vs_empty",
            "lifecycles/s with 10k live vs empty",
            ratio(results, "lifecycle", 16, "broker-10k", "broker"),
            0.8,
            "x",
        ),
        at_most(
            "broker_rss",
            "broker peak RSS, whole run: 64 conns, and the burst unless --quick (own process)",
            kb_mib(report.memory[0].1),
            8.0,
            " MiB",
        ),
        at_most(
            "echo10k_rss",
            "echo service RSS holding 10k instances",
            kb_mib(report.memory[2].1),
            16.0,
            " MiB",
        ),
        at_most(
            "startup",
            "start-up to first 200 (embedded broker)",
            startup_median
                .get("echo-broker (embedded echo service)")
                .copied()
                .unwrap_or(f64::NAN),
            10.0,
            " ms",
        ),
    ]);
    let store = report.store;
    let store_ran = !store.results.is_empty();
    goals.extend([
        at_least(
            "store_postgres_vs_journal",
            "lifecycles/s with a message, postgres vs journal (same rounds)",
            store.median_ratio(&POSTGRES_VS_JOURNAL),
            0.5,
            "x",
        ),
        at_least(
            "store_far_vs_postgres",
            "lifecycles/s with a message, postgres-far (the database a round trip away) vs postgres",
            store.median_ratio(&FAR_VS_NEAR),
            0.5,
            "x",
        ),
        at_least(
            "store_x2_vs_x1_proxied",
            "lifecycles/s with a message, two echo services vs one, both behind nginx (postgres-x2 vs postgres-x1-proxied)",
            store.median_ratio(&TWO_VS_ONE_PROXIED),
            1.0,
            "x",
        ),
        at_most(
            "store_postgres_memory",
            "echo service peak memory, postgres vs journal",
            store.median_ratio(&MEMORY_VS_JOURNAL),
            1.0,
            "x",
        ),
        no_errors(
            "store_errors",
            "store phase errors, all configurations (non-2xx or failed)",
            store_ran.then(|| store.errors()),
        ),
    ]);
    println!();
    println!("## Targets");
    println!();
    println!("| target | goal | measured | result |");
    println!("| --- | --- | --- | --- |");
    for goal in &mut goals {
        let result = if let Some(errors) = goal.errors {
            goal.margin = if errors == 0 { 0.0 } else { -1.0 };
            if errors == 0 {
                "pass".to_string()
            } else {
                "MISS".to_string()
            }
        } else if !goal.margin.is_finite() {
            "n/a".to_string()
        } else if goal.margin >= 0.0 {
            format!("pass (by {:.0} %)", goal.margin * 100.0)
        } else {
            format!("MISS (by {:.0} %)", -goal.margin * 100.0)
        };
        println!(
            "| {} | {} | {} | {result} |",
            goal.what, goal.goal, goal.measured
        );
        lines.push(format!(
            "BENCH name=target id={} goal=\"{}\" measured=\"{}\" result={}",
            goal.id,
            goal.goal,
            goal.measured,
            result
                .split_whitespace()
                .next()
                .unwrap_or("n/a")
                .to_lowercase()
        ));
    }
    println!();
    for line in &lines {
        println!("{line}");
    }
    println!();
    println!(
        "load average at end: {}; the run took {:.0} s. Other work on the machine moves these figures: take them on a quiet machine.",
        report.load_at_end, report.elapsed
    );
}
