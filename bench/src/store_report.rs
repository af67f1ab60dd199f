//! The store phase's table, ratios against their targets, and `BENCH` lines.

use crate::database::SLOW_STATEMENT_MS;
use crate::load::{MESSAGE_STEP, STEPS};
use crate::options::Options;
use crate::relay::RelayCounts;
use crate::report::{fmt, trim};
use crate::rounds::median;
use crate::store::{
    round_ratios, StoreRatio, StoreResults, StoreSample, STORE_CONFIGS, STORE_POSTGRES,
    STORE_POSTGRES_FAR, STORE_POSTGRES_ONE_PROXIED, STORE_POSTGRES_TWO, STORE_RATIOS,
};
use crate::LIFECYCLE_CONNS;

/// What the store phase found, for the report.
pub struct StoreReport {
    pub results: StoreResults,
    /// The cluster's description, or why PostgreSQL is left out.
    pub postgres: Result<String, String>,
    /// How two echo services share the load: `nginx` or `two-brokers`.
    pub two_mode: &'static str,
    /// Statements the cluster logged as slow, errors it logged, a few of them.
    pub log_findings: Option<(usize, usize, Vec<String>)>,
    /// With `--pg-statements`: (statement, calls, mean ms, total s).
    pub statements: Vec<(String, u64, f64, f64)>,
    pub warm: f64,
}

impl StoreReport {
    /// The median over rounds of `ratio`, each round's measured side by side.
    pub fn median_ratio(&self, ratio: &StoreRatio) -> f64 {
        median(round_ratios(&self.results, ratio))
    }

    pub fn errors(&self) -> u64 {
        self.results
            .values()
            .flatten()
            .map(|s| s.sample.errors)
            .sum()
    }

    pub fn print(&self, options: &Options, lines: &mut Vec<String>) {
        self.print_setup(options);
        self.print_configurations(lines);
        self.print_ratios(lines);
        self.print_relay(options, lines);
        self.print_database_findings(lines);
        lines.push(format!(
            "BENCH name=store_setup postgres={} two_instances={} db_delay_ms={}",
            if self.postgres.is_ok() { "yes" } else { "n/a" },
            if self.postgres.is_ok() {
                self.two_mode
            } else {
                "n/a"
            },
            trim(options.db_delay.as_secs_f64() * 1000.0)
        ));
    }

    /// The heading, and what each configuration is.
    fn print_setup(&self, options: &Options) {
        println!();
        println!(
            "## The echo service's store: journal and PostgreSQL ({LIFECYCLE_CONNS} connections, medians of {} rounds of {} s)",
            options.rounds, options.secs
        );
        println!();
        match &self.postgres {
            Ok(description) => println!("{description}."),
            Err(why) => println!("PostgreSQL columns n/a: {why}."),
        }
        if self.postgres.is_ok() {
            let round_trip = options.db_delay.as_secs_f64() * 1000.0;
            println!(
                "{STORE_POSTGRES_FAR}: as {STORE_POSTGRES}, its echo service reaching the database through a relay in this program that delays every chunk {} ms each way (--db-delay-ms {}, the round trip).",
                trim(round_trip / 2.0),
                trim(round_trip)
            );
            if self.two_mode == "nginx" {
                println!("{STORE_POSTGRES_ONE_PROXIED}: one echo service on the database behind nginx (keep-alive upstream), one broker.");
                println!("{STORE_POSTGRES_TWO}: two echo services on one database behind the same nginx (round robin), one broker.");
            } else {
                println!("{STORE_POSTGRES_ONE_PROXIED}: left out (it needs nginx).");
                println!("{STORE_POSTGRES_TWO}: two broker and echo service pairs on one database, the connections split between the brokers (nginx not used).");
            }
        }
        println!(
            "Each configuration starts afresh every round (new processes, a fresh DATA_DIR or database) and is warmed up for {} s first.",
            fmt(self.warm, 2)
        );
    }

    /// A row per configuration: its rate and latencies, per step, and where its CPU goes.
    fn print_configurations(&self, lines: &mut Vec<String>) {
        println!();
        println!(
            "| configuration | cycles/s | p50 ms | p99 ms | slowest ms | errors | database connections | echo service MiB at start / peak |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        // Steps in the order of a cycle: provision, bind, message, unbind, deprovision.
        let order = [0, 1, MESSAGE_STEP, 2, 3];
        let mut step_rows = Vec::new();
        let mut cost_rows = Vec::new();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for config in STORE_CONFIGS {
            let label = config.label;
            let samples: &[StoreSample] = self.results.get(label).map_or(&[], Vec::as_slice);
            let of =
                |field: &dyn Fn(&StoreSample) -> f64| median(samples.iter().map(field).collect());
            let per_cycle = |count: Option<f64>, cycles: u64| {
                count.map_or(f64::NAN, |count| count / cycles.max(1) as f64)
            };
            let as_f64 = |count: Option<u64>| count.map(|count| count as f64);
            let rate = of(&|s| s.sample.rate);
            let p50 = of(&|s| s.sample.p50);
            let p99 = of(&|s| s.sample.p99);
            let slowest = samples
                .iter()
                .map(|s| s.sample.max)
                .fold(f64::NAN, f64::max);
            let connections = of(&|s| as_f64(s.database_connections).unwrap_or(f64::NAN));
            let fsyncs = of(&|s| per_cycle(as_f64(s.fsyncs), s.cycles));
            let commits = of(&|s| per_cycle(as_f64(s.commits), s.cycles));
            let echo_cpu = of(&|s| per_cycle(s.echo_cpu, s.cycles) * 1e6);
            let postgres_cpu = of(&|s| per_cycle(s.postgres_cpu, s.cycles) * 1e6);
            let broker_cpu = of(&|s| per_cycle(s.broker_cpu, s.cycles) * 1e6);
            let nginx_cpu = of(&|s| per_cycle(s.nginx_cpu, s.cycles) * 1e6);
            let relay_cpu = of(&|s| per_cycle(s.relay_cpu, s.cycles) * 1e6);
            // The relay runs in this program: what is left is the load generator's.
            let client_cpu = of(&|s| {
                let client = s.client_cpu.zip(s.relay_cpu.or(Some(0.0)));
                per_cycle(client.map(|(all, relay)| (all - relay).max(0.0)), s.cycles) * 1e6
            });
            let all_cpu = of(&|s| {
                let postgres = if config.on_postgres {
                    s.postgres_cpu
                } else {
                    Some(0.0)
                };
                let total = [
                    s.echo_cpu,
                    postgres,
                    s.broker_cpu,
                    s.client_cpu,
                    s.nginx_cpu.or(Some(0.0)),
                ]
                .into_iter()
                .sum::<Option<f64>>();
                per_cycle(total, s.cycles) * 1e6
            });
            let peak = of(&|s| as_f64(s.echo_peak_kb).unwrap_or(f64::NAN));
            let at_start = of(&|s| as_f64(s.echo_start_kb).unwrap_or(f64::NAN));
            let errors = if samples.is_empty() {
                "n/a".to_string()
            } else {
                samples
                    .iter()
                    .map(|s| s.sample.errors)
                    .sum::<u64>()
                    .to_string()
            };
            println!(
                "| {label} | {} | {} | {} | {} | {errors} | {} | {} / {} |",
                fmt(rate, 0),
                fmt(p50, 2),
                fmt(p99, 2),
                fmt(slowest, 1),
                fmt(connections, 0),
                fmt(at_start / 1024.0, 1),
                fmt(peak / 1024.0, 1),
            );
            cost_rows.push(format!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt(client_cpu, 0),
                fmt(broker_cpu, 0),
                fmt(nginx_cpu, 0),
                fmt(relay_cpu, 0),
                fmt(echo_cpu, 0),
                fmt(postgres_cpu, 0),
                fmt(all_cpu, 0),
                fmt(cores as f64 * 1e6 / all_cpu, 0),
                fmt(fsyncs, 2),
                fmt(commits, 2),
            ));
            let mut line = format!(
                "BENCH name=store config={label} conns={LIFECYCLE_CONNS} cps={} p50_ms={} p99_ms={} max_ms={} errors={errors} db_connections={} echo_start_kb={} echo_peak_kb={} cpu_us_per_cycle_client={} cpu_us_per_cycle_broker={} cpu_us_per_cycle_nginx={} cpu_us_per_cycle_relay={} cpu_us_per_cycle_echo={} cpu_us_per_cycle_postgres={} cpu_us_per_cycle_all={} fsyncs_per_cycle={} commits_per_cycle={}",
                fmt(rate, 1),
                fmt(p50, 3),
                fmt(p99, 3),
                fmt(slowest, 1),
                fmt(connections, 0),
                fmt(at_start, 0),
                fmt(peak, 0),
                fmt(client_cpu, 1),
                fmt(broker_cpu, 1),
                fmt(nginx_cpu, 1),
                fmt(relay_cpu, 1),
                fmt(echo_cpu, 1),
                fmt(postgres_cpu, 1),
                fmt(all_cpu, 1),
                fmt(fsyncs, 3),
                fmt(commits, 3),
            );
            let mut cells = Vec::new();
            for &index in &order {
                let p50 = of(&|s| s.sample.step_p50[index]);
                let p99 = of(&|s| s.sample.step_p99[index]);
                cells.push(format!("{} / {}", fmt(p50, 2), fmt(p99, 2)));
                line.push_str(&format!(
                    " p50_{step}_ms={} p99_{step}_ms={}",
                    fmt(p50, 3),
                    fmt(p99, 3),
                    step = STEPS[index]
                ));
            }
            step_rows.push(format!("| {label} | {} |", cells.join(" | ")));
            line.push_str(&format!(" rounds={}", samples.len()));
            lines.push(line);
        }
        println!();
        println!(
            "Database connections: those of the round's database named 'echo-service' in pg_stat_activity at the end of the measured window (median over rounds)."
        );
        println!();
        println!("Per request, p50 / p99 ms:");
        println!();
        println!("| configuration | provision | bind | message | unbind | deprovision |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for row in step_rows {
            println!("{row}");
        }
        println!();
        println!(
            "Where a cycle's time goes: CPU us per cycle, and what the {cores} cores allow at that cost:"
        );
        println!();
        println!(
            "| configuration | load generator | broker | nginx | relay | echo service | PostgreSQL | all | cycles/s the CPU allows | fsyncs per cycle | commits per cycle |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for row in cost_rows {
            println!("{row}");
        }
        println!();
        println!(
            "One cycle: provision, bind, a message to the binding's uri with its credentials (as a bound app sends it), unbind, deprovision (5 requests; p50/p99 are per request)."
        );
        println!(
            "Per cycle, over warm-up and run: fsyncs are the journal's own count (echo_service_journal_fsyncs_total), for PostgreSQL the cluster's WAL syncs (pg_stat_wal.wal_sync); commits are pg_stat_database.xact_commit of the round's database (reads count too); PostgreSQL CPU is the postmaster's and its ended sessions' (Linux); nginx's is its master's and workers'; the relay's is its threads' in this program, apart from the load generator's, and in all since it takes this machine's cores (a network between hosts would not)."
        );
    }

    /// The ratios, each the median of the rounds' ratios, with each round's.
    fn print_ratios(&self, lines: &mut Vec<String>) {
        println!();
        println!("Ratios, measured side by side in each round (the median of the rounds' ratios):");
        println!();
        println!("| ratio | median | each round |");
        println!("| --- | ---: | --- |");
        for ratio in &STORE_RATIOS {
            let rounds = round_ratios(&self.results, ratio);
            let each: Vec<String> = rounds.iter().map(|value| fmt(*value, 2)).collect();
            let value = median(rounds);
            let (shown, listed) = if each.is_empty() {
                ("n/a".to_string(), "n/a".to_string())
            } else {
                (each.join(" "), each.join(","))
            };
            println!("| {} | {} | {shown} |", ratio.what, fmt(value, 2));
            lines.push(format!(
                "BENCH name=store_ratio id={} a={} b={} value={} rounds={listed}",
                ratio.id,
                ratio.a,
                ratio.b,
                fmt(value, 3),
            ));
        }
    }

    /// What the relay in front of the database did, summed over the rounds.
    fn print_relay(&self, options: &Options, lines: &mut Vec<String>) {
        let samples = self
            .results
            .get(STORE_POSTGRES_FAR)
            .map_or(&[][..], Vec::as_slice);
        let counts: Vec<RelayCounts> = samples.iter().filter_map(|s| s.relay).collect();
        if counts.is_empty() {
            return;
        }
        let connections: u64 = counts.iter().map(|c| c.connections).sum();
        let chunks: u64 = counts.iter().map(|c| c.chunks).sum();
        let mean = counts
            .iter()
            .map(|c| c.mean_one_way_ms * c.chunks as f64)
            .filter(|weighted| weighted.is_finite())
            .sum::<f64>()
            / chunks.max(1) as f64;
        let set = options.db_delay.as_secs_f64() * 1000.0 / 2.0;
        println!();
        println!(
            "{STORE_POSTGRES_FAR}'s relay over {} rounds: {connections} connections, {chunks} chunks, each delivered on average {} ms after it was read (set: {} ms each way; the rest is the wake-up).",
            counts.len(),
            fmt(mean, 3),
            trim(set)
        );
        lines.push(format!(
            "BENCH name=store_relay config={STORE_POSTGRES_FAR} one_way_ms_set={} one_way_ms_mean={} connections={connections} chunks={chunks} rounds={}",
            trim(set),
            fmt(mean, 3),
            counts.len()
        ));
    }

    /// The echo services' pools and logs, PostgreSQL's log, and its statements.
    fn print_database_findings(&self, lines: &mut Vec<String>) {
        println!();
        for (label, samples) in &self.results {
            let pools: Vec<[u64; 4]> = samples.iter().filter_map(|s| s.pool).collect();
            if !pools.is_empty() {
                let sum = |index: usize| pools.iter().map(|pool| pool[index]).sum::<u64>();
                println!(
                    "{label}: its echo services' database pools over {} rounds: {} connections opened, {} connect failures, {} calls timed out, {} found every connection busy.",
                    pools.len(),
                    sum(0),
                    sum(1),
                    sum(2),
                    sum(3)
                );
                lines.push(format!(
                    "BENCH name=store_pool config={label} connects={} connect_failures={} timeouts={} busy={} rounds={}",
                    sum(0),
                    sum(1),
                    sum(2),
                    sum(3),
                    pools.len()
                ));
            }
        }
        for (label, samples) in &self.results {
            let logged: usize = samples.iter().map(|s| s.echo_log_lines).sum();
            if logged > 0 {
                println!(
                    "{label}: its echo services logged {logged} lines at LOG_LEVEL=warn, e.g.:"
                );
                for example in samples.iter().flat_map(|s| &s.echo_log_examples).take(3) {
                    println!("    {example}");
                }
            }
        }
        if let Some((slow, errors, examples)) = &self.log_findings {
            println!(
                "PostgreSQL's log: {slow} statements slower than {SLOW_STATEMENT_MS} ms, {errors} ERROR or FATAL lines{}",
                if examples.is_empty() { "." } else { ", e.g.:" }
            );
            for example in examples {
                println!("    {example}");
            }
            lines.push(format!(
                "BENCH name=store_postgres_log slow_statements={slow} errors={errors} slow_ms={SLOW_STATEMENT_MS}"
            ));
        }
        if !self.statements.is_empty() {
            println!();
            println!("pg_stat_statements over every PostgreSQL round (warm-ups included):");
            println!();
            println!("| statement | calls | mean ms | total s |");
            println!("| --- | ---: | ---: | ---: |");
            for (statement, calls, mean, total) in &self.statements {
                println!(
                    "| `{}` | {calls} | {} | {} |",
                    statement.replace('|', "\\|"),
                    fmt(*mean, 3),
                    fmt(*total, 2)
                );
            }
        }
    }
}
