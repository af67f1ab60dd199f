//! The log's way to standard output, cheap for the thread that logs. A line is written at
//! once when no other is being written, as a quiet server's lines are. A line that comes
//! while another is being written waits in memory with the lines after it, and a small
//! thread writes them together a few milliseconds later: a busy server writes hundreds of
//! lines in one call instead of one call each. The order of the lines is kept, and
//! [`flush`] writes every line still waiting: the servers call it when they stop and before
//! they exit, so a clean stop loses none.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// How long waiting lines gather before the writer thread writes them.
const GATHER_FOR: Duration = Duration::from_millis(5);

/// Past this many bytes waiting, the thread that adds a line writes them itself: a log that
/// cannot keep up (a slow pipe) slows the servers down instead of filling their memory.
const MAX_WAITING_BYTES: usize = 1024 * 1024;

/// The writer thread's stack: it only moves bytes.
const WRITER_STACK_BYTES: usize = 64 * 1024;

static OUTPUT: Output = Output {
    state: Mutex::new(State {
        waiting: Vec::new(),
        spare: Vec::new(),
        writing: false,
        blocked: 0,
    }),
    changed: Condvar::new(),
};

/// Whether the writer thread runs; decided when the first line has to wait.
static WRITER_RUNS: OnceLock<bool> = OnceLock::new();

struct Output {
    state: Mutex<State>,
    /// Signalled when lines start waiting, and when a write ends while a thread waits for it.
    changed: Condvar,
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
}

/// Adds `lines` (each ending with `\n`) to the log, after every line added before.
pub fn write(lines: &[u8]) {
    let mut state = OUTPUT.lock();
    if !state.writing && state.waiting.is_empty() {
        state.writing = true;
        drop(state);
        write_to_stdout(lines);
        OUTPUT.end_writing(None);
        return;
    }
    let first = state.waiting.is_empty();
    state.waiting.extend_from_slice(lines);
    let overflowing = state.waiting.len() >= MAX_WAITING_BYTES;
    drop(state);
    if overflowing || (first && !writer_runs()) {
        OUTPUT.write_waiting();
    } else if first {
        OUTPUT.changed.notify_all();
    }
}

/// Writes every line still waiting, after the write under way if there is one.
pub fn flush() {
    while OUTPUT.write_waiting() {}
    let _ = std::io::stdout().lock().flush();
}

impl Output {
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
        write_to_stdout(&batch);
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
}

/// Starts the writer thread the first time it is needed; whether it runs. Without it (the
/// system refused a thread), every line is written by the thread that logs it.
fn writer_runs() -> bool {
    *WRITER_RUNS.get_or_init(|| {
        std::thread::Builder::new()
            .name("log-writer".into())
            .stack_size(WRITER_STACK_BYTES)
            .spawn(|| OUTPUT.run_writer())
            .is_ok()
    })
}

/// Writes `bytes` whole; a closed or broken standard output is not worth a panic.
fn write_to_stdout(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
}
