//! Measurements from /proc (Linux): memory, CPU time, threads, the machine and its load;
//! elsewhere they are "n/a".

use std::fs;

/// A `/proc/PID/status` field in kB (VmHWM: peak resident set; VmRSS: resident now).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// User plus system CPU time of a process, in seconds (assumes USER_HZ = 100, as on Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_ticks(pid, 11..13)
}

/// The same plus the CPU time of its children that have ended (and been waited for).
pub fn cpu_seconds_with_children(pid: u32) -> Option<f64> {
    stat_ticks(pid, 11..15)
}

/// CPU seconds of this process's live threads whose names start with `prefix` (Linux). From
/// each thread's `schedstat` (nanoseconds on a CPU): a thread's `stat` counts clock ticks
/// that caught it running, and threads that run in bursts of microseconds were measured at 0
/// ticks after 150 ms on a CPU.
pub fn own_threads_cpu(prefix: &str) -> Option<f64> {
    let tasks = fs::read_dir(format!("/proc/{}/task", std::process::id())).ok()?;
    let mut nanoseconds: u64 = 0;
    for task in tasks.flatten() {
        let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        // A thread that ends meanwhile has no schedstat left: its time is not counted.
        let Ok(schedstat) = fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        nanoseconds += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanoseconds as f64 / 1e9)
}

/// The sum of `/proc/PID/stat` fields `range` (counted after the command name), in seconds.
fn stat_ticks(pid: u32, range: std::ops::Range<usize>) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let mut ticks: u64 = 0;
    for index in range {
        ticks += fields.get(index)?.parse::<u64>().ok()?;
    }
    Some(ticks as f64 / 100.0)
}

/// The children of a process (Linux, `/proc/PID/task/PID/children`).
pub fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn total_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

pub fn mib(kb: Option<u64>) -> String {
    kb.map_or_else(|| "n/a".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map_or_else(
            || "unknown CPU".to_string(),
            |(_, name)| name.trim().to_string(),
        );
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or_else(
            || "unknown memory".to_string(),
            |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
        );
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
        |_| std::env::consts::OS.to_string(),
        |text| format!("{} {}", std::env::consts::OS, text.trim()),
    );
    format!("{cores} cores, {model}, {memory}, {kernel}")
}

pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| {
            let parts: Vec<&str> = text.split_whitespace().take(3).collect();
            (parts.len() == 3).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| "n/a".into())
}
