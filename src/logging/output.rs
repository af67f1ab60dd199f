//! The log's way to standard output, cheap for the thread that logs. A quiet server's lines
//! are written one by one, each before its request's answer is sent. A busy server's lines
//! (20,000 a second or more) wait in memory, and a small thread writes them together a few
//! milliseconds later: hundreds of lines in one call instead of one call each. A line that
//! comes while another is being written waits too. The order of the lines is kept, and
//! [`flush`] writes every line still waiting: the servers call it when they stop and before
//! they exit, so a clean stop loses none.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long waiting lines gather before the writer thread writes them.
const GATHER_FOR: Duration = Duration::from_millis(5);

/// The log is busy from this many lines in a [`PACE_WINDOW`] (20,000 a second): below it, a
/// line costs its thread a write to standard output, which at that pace is a small share
/// of a request's time; above it, that share is what the batches save.
const BUSY_LINES: u32 = 200;
const PACE_WINDOW: Duration = Duration::from_millis(10);

/// Past this many bytes waiting, the thread that adds a line writes them itself: a log that
/// cannot keep up (a slow pipe) slows the servers down instead of filling their memory.
const MAX_WAITING_BYTES: usize = 1024 * 1024;

/// The writer thread's stack: it only moves bytes.
const WRITER_STACK_BYTES: usize = 64 * 1024;

/// The process's log: standard output.
static OUTPUT: Output = Output::new(write_to_stdout);

/// Lines on their way to `sink`.
struct Output {
    state: Mutex<State>,
    /// Signalled when lines start waiting, and when a write ends while a thread waits for it.
    changed: Condvar,
    /// Where the lines go: standard output, or a test's buffer.
    sink: fn(&[u8]),
    /// Whether the writer thread runs; decided when it is started, or at the latest when the
    /// first line has to wait.
    writer_runs: OnceLock<bool>,
}

struct State {
    /// Lines not written yet, in order, each ending with `\n`.
    waiting: Vec<u8>,
    /// The other buffer, empty, kept for its capacity.
    spare: Vec<u8>,
    /// Whether a thread is writing to standard output now.
    writing: bool,
    /// Threads waiting for that write to end.
    blocked: usize,
    pace: Pace,
}

/// How many lines come in a window of [`PACE_WINDOW`], this one's and the one before.
struct Pace {
    window_started: Option<Instant>,
    lines: u32,
    lines_before: u32,
}

impl Pace {
    const fn new() -> Pace {
        Pace {
            window_started: None,
            lines: 0,
            lines_before: 0,
        }
    }

    /// Counts a line that came at `now`; whether the log is busy: this window or the one
    /// before it had [`BUSY_LINES`].
    fn count(&mut self, now: Instant) -> bool {
        let since = self
            .window_started
            .map(|started| now.saturating_duration_since(started));
        if since.is_none_or(|since| since >= PACE_WINDOW) {
            let just_before = since.is_some_and(|since| since < 2 * PACE_WINDOW);
            self.lines_before = if just_before { self.lines } else { 0 };
            self.lines = 0;
            self.window_started = Some(now);
        }
        self.lines = self.lines.saturating_add(1);
        self.lines >= BUSY_LINES || self.lines_before >= BUSY_LINES
    }
}

/// Adds `lines` (each ending with `\n`) to the log, after every line added before.
pub fn write(lines: &[u8]) {
    OUTPUT.write(lines);
}

/// Starts the writer thread now, with the process, rather than when the first line has to
/// wait: a server's thread count is then the same before a burst and during it.
pub fn start_writer() {
    OUTPUT.writer_runs();
}

/// Writes every line still waiting, after the write under way if there is one.
pub fn flush() {
    OUTPUT.flush();
    let _ = std::io::stdout().lock().flush();
}

impl Output {
    const fn new(sink: fn(&[u8])) -> Output {
        Output {
            state: Mutex::new(State {
                waiting: Vec::new(),
                spare: Vec::new(),
                writing: false,
                blocked: 0,
                pace: Pace::new(),
            }),
            changed: Condvar::new(),
            sink,
            writer_runs: OnceLock::new(),
        }
    }

    fn write(&'static self, lines: &[u8]) {
        let now = Instant::now();
        let mut state = self.lock();
        let busy = state.pace.count(now);
        // A quiet log writes the line at once (nothing may go before the lines waiting, or
        // the one being written); a busy one leaves it to the writer thread.
        if !busy && !state.writing && state.waiting.is_empty() {
            state.writing = true;
            drop(state);
            (self.sink)(lines);
            self.end_writing(None);
            return;
        }
        let first = state.waiting.is_empty();
        state.waiting.extend_from_slice(lines);
        let overflowing = state.waiting.len() >= MAX_WAITING_BYTES;
        drop(state);
        if overflowing || (first && !self.writer_runs()) {
            self.write_waiting();
        } else if first {
            self.changed.notify_all();
        }
    }

    fn flush(&self) {
        while self.write_waiting() {}
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the lines waiting in one call; whether there were any.
    fn write_waiting(&self) -> bool {
        let mut state = self.lock();
        while state.writing {
            state.blocked += 1;
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.blocked -= 1;
        }
        if state.waiting.is_empty() {
            return false;
        }
        let mut batch = std::mem::take(&mut state.spare);
        std::mem::swap(&mut batch, &mut state.waiting);
        state.writing = true;
        drop(state);
        (self.sink)(&batch);
        batch.clear();
        self.end_writing(Some(batch));
        true
    }

    /// Ends a write, keeping `spare` for its capacity; wakes whoever needs to know.
    fn end_writing(&self, spare: Option<Vec<u8>>) {
        let mut state = self.lock();
        state.writing = false;
        if let Some(spare) = spare {
            state.spare = spare;
        }
        let wake = state.blocked > 0 || !state.waiting.is_empty();
        drop(state);
        if wake {
            self.changed.notify_all();
        }
    }

    /// The writer thread: waits for lines, lets more gather, writes them all.
    fn run_writer(&self) -> ! {
        loop {
            let mut state = self.lock();
            while state.waiting.is_empty() {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            drop(state);
            std::thread::sleep(GATHER_FOR);
            self.write_waiting();
        }
    }

    /// Starts the writer thread the first time it is needed; whether it runs. Without it
    /// (the system refused a thread), every line is written by the thread that logs it.
    fn writer_runs(&'static self) -> bool {
        *self.writer_runs.get_or_init(|| {
            std::thread::Builder::new()
                .name("log-writer".into())
                .stack_size(WRITER_STACK_BYTES)
                .spawn(|| self.run_writer())
                .is_ok()
        })
    }
}

/// Writes `bytes` whole; a closed or broken standard output is not worth a panic.
fn write_to_stdout(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    static KEPT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    fn keep(bytes: &[u8]) {
        KEPT.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
    }

    /// Eight threads log 2,000 lines each as fast as they can (busy: most lines wait for
    /// the writer thread); after a flush every line is there, whole, each thread's in order.
    #[test]
    fn lines_from_many_threads_all_arrive_in_order_by_the_flush() {
        let output: &'static Output = Box::leak(Box::new(Output::new(keep)));
        std::thread::scope(|scope| {
            for thread in 0..8 {
                scope.spawn(move || {
                    for n in 0..2_000 {
                        output.write(format!("{thread} {n}\n").as_bytes());
                    }
                });
            }
        });
        output.flush();
        let kept = String::from_utf8(KEPT.lock().expect("not poisoned").clone()).expect("UTF-8");
        let mut next = [0; 8];
        for line in kept.lines() {
            let (thread, n) = line.split_once(' ').expect("a whole line");
            let thread: usize = thread.parse().expect("a thread");
            assert_eq!(n.parse::<usize>().ok(), Some(next[thread]), "{line}");
            next[thread] += 1;
        }
        assert_eq!(next, [2_000; 8]);
    }

    #[test]
    fn the_log_is_busy_from_20000_lines_a_second_and_quiet_again_below() {
        let start = Instant::now();
        let mut pace = Pace::new();
        // One line a millisecond: quiet.
        let quiet = (0..50).any(|n| pace.count(start + Duration::from_millis(n)));
        assert!(!quiet);
        // 200 lines in the next 10 ms: busy from the 200th, and for the window after it.
        let at = start + Duration::from_millis(60);
        let busy: Vec<bool> = (0..200)
            .map(|n| pace.count(at + Duration::from_micros(n * 40)))
            .collect();
        assert!(!busy[198] && busy[199]);
        assert!(pace.count(at + Duration::from_millis(12)));
        // A window later with a single line, and a pause: quiet again.
        assert!(!pace.count(at + Duration::from_millis(25)));
        assert!(!pace.count(at + Duration::from_millis(60)));
    }
}
