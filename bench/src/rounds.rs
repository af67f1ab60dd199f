//! Rounds and results: one measured run of a load against a target, and the rounds that
//! interleave every target so that noise hits them alike.

use crate::load::{quantile_ms, run_load, Work};
use crate::options::Options;
use crate::usage::{cpu_seconds, total_cpu};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One round's figures for one server.
#[derive(Debug, Clone)]
pub struct Sample {
    pub rate: f64,
    pub p50: f64,
    pub p99: f64,
    /// The slowest request, in milliseconds.
    pub max: f64,
    /// p50 and p99 by lifecycle step ([`STEPS`]: provision, bind, unbind, deprovision,
    /// message).
    pub step_p50: [f64; 5],
    pub step_p99: [f64; 5],
    /// Operations that succeeded (in the window or not).
    pub operations: u64,
    pub errors: u64,
    pub requests: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// How long the run really took (a stuck request makes it overrun).
    pub elapsed: f64,
    /// How long connecting took.
    pub setup: f64,
    /// Server CPU time (all its processes) per operation, in microseconds.
    pub cpu_us: Option<f64>,
    /// This program's own CPU time per operation, in microseconds.
    pub client_cpu_us: Option<f64>,
}

/// A server under test: where it listens and which processes do its work.
#[derive(Clone)]
pub struct Target {
    pub label: &'static str,
    pub address: SocketAddr,
    /// More addresses of the same service (a second broker): the connections are spread
    /// over `address` and these.
    pub more: Vec<SocketAddr>,
    pub pids: Vec<u32>,
}

impl Target {
    pub fn new(label: &'static str, address: SocketAddr, pids: Vec<u32>) -> Target {
        Target {
            label,
            address,
            more: Vec::new(),
            pids,
        }
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.address];
        all.extend(&self.more);
        all
    }
}

/// Rows keyed by (phase, conns, server).
pub type Results = BTreeMap<(&'static str, usize, &'static str), Vec<Sample>>;

pub fn measure(target: &Target, work: Work, conns: usize, secs: f64, tag: &str) -> Sample {
    let own = std::process::id();
    let cpu_before = total_cpu(&target.pids);
    let own_before = cpu_seconds(own);
    let mut outcome = run_load(&target.addresses(), work, conns, secs, u64::MAX, tag);
    let cpu_after = total_cpu(&target.pids);
    let own_after = cpu_seconds(own);
    let operations = outcome.operations.max(1) as f64;
    let per_operation = |before: Option<f64>, after: Option<f64>| {
        Some((after? - before?) * 1e6 / operations).filter(|_| outcome.operations > 0)
    };
    let cpu_us = per_operation(cpu_before, cpu_after);
    let client_cpu_us = per_operation(own_before, own_after);
    let mut step_p50 = [f64::NAN; 5];
    let mut step_p99 = [f64::NAN; 5];
    for (step, values) in outcome.latencies.iter_mut().enumerate() {
        step_p50[step] = quantile_ms(values, 0.50);
        step_p99[step] = quantile_ms(values, 0.99);
    }
    let mut all: Vec<u32> = outcome.latencies.iter().flatten().copied().collect();
    Sample {
        rate: outcome.rate(),
        p50: quantile_ms(&mut all, 0.50),
        p99: quantile_ms(&mut all, 0.99),
        max: quantile_ms(&mut all, 1.0),
        step_p50,
        step_p99,
        operations: outcome.operations,
        errors: outcome.errors,
        requests: outcome.requests,
        error_kinds: std::mem::take(&mut outcome.error_kinds),
        elapsed: outcome.elapsed,
        setup: outcome.setup,
        cpu_us,
        client_cpu_us,
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|value| value.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

pub fn median_of(samples: &[Sample], field: impl Fn(&Sample) -> f64) -> f64 {
    median(samples.iter().map(field).collect())
}

/// The median over rounds of `server`'s rate divided by `ceiling`'s rate in the same round.
pub fn ratio(
    results: &Results,
    phase: &'static str,
    conns: usize,
    server: &str,
    ceiling: &str,
) -> f64 {
    let (Some(ours), Some(theirs)) = (
        results.get(&(phase, conns, server)),
        results.get(&(phase, conns, ceiling)),
    ) else {
        return f64::NAN;
    };
    median(
        ours.iter()
            .zip(theirs)
            .map(|(ours, theirs)| ours.rate / theirs.rate)
            .collect(),
    )
}

pub fn run_rounds(
    results: &mut Results,
    phase: &'static str,
    work: Work,
    conns: usize,
    targets: &[Target],
    options: &Options,
    round: usize,
) {
    // Rotate the order each round, so no server always runs first or last.
    for offset in 0..targets.len() {
        let target = &targets[(offset + round) % targets.len()];
        let tag = format!("{phase}-{conns}-{}-r{round}", target.label);
        let sample = measure(target, work, conns, options.secs, &tag);
        if sample.errors > 0 || sample.elapsed > options.secs + 1.0 || sample.setup > 1.0 {
            eprintln!(
                "  note: {} {phase} at {conns} conns, round {}: {} errors in {} requests {:?}, {:.1} s (+{:.1} s to connect)",
                target.label,
                round + 1,
                sample.errors,
                sample.requests,
                sample.error_kinds,
                sample.elapsed,
                sample.setup
            );
        }
        results
            .entry((phase, conns, target.label))
            .or_default()
            .push(sample);
    }
}
