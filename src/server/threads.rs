//! Connection threads, counted until the operating system has ended them.
//!
//! A counter decremented at the end of a thread's work drops before the thread is gone (its
//! stack is unwound, its thread-locals destroyed and the kernel task reaped after that), so
//! a bound kept on such a counter does not bound real threads. Here a thread stays counted
//! until it has been joined: a reaper joins each one as it says it is done, and only then
//! forgets it.
//!
//! Each thread is registered with its connection's slot and socket, so that a server at
//! its bound can end the oldest displaced connection at once instead of waiting for it, and
//! a stopping server can reach the connections it still has.

use super::slots::{Phase, Slot};
use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a waiter looks again, besides being woken when a thread ends.
const RECHECK: Duration = Duration::from_millis(10);

/// The connection threads of one server.
pub struct Threads {
    /// The most threads alive at once.
    most: usize,
    running: Mutex<HashMap<u64, Running>>,
    /// Signalled whenever a thread has been joined.
    ended: Condvar,
    /// Where a finishing thread says so (its id), for the reaper.
    finished: Sender<u64>,
    next_id: std::sync::atomic::AtomicU64,
}

/// One connection thread that has not been joined yet.
struct Running {
    /// `None` once the reaper has taken it to join it.
    handle: Option<JoinHandle<()>>,
    slot: Arc<Slot>,
    /// The connection's socket, to end it from outside (`None` in tests without one).
    socket: Weak<TcpStream>,
}

impl Threads {
    /// The registry of a server named `name`, with its reaper thread.
    pub fn start(name: &str, most: usize) -> std::io::Result<Arc<Threads>> {
        let (finished, done) = mpsc::channel();
        let threads = Arc::new(Threads {
            most,
            running: Mutex::new(HashMap::new()),
            ended: Condvar::new(),
            finished,
            next_id: std::sync::atomic::AtomicU64::new(0),
        });
        let reaping = Arc::downgrade(&threads);
        std::thread::Builder::new()
            .name(format!("{name}-reaper"))
            .stack_size(64 * 1024)
            .spawn(move || {
                for id in done {
                    let Some(threads) = reaping.upgrade() else {
                        return;
                    };
                    threads.reap(id);
                }
            })?;
        Ok(threads)
    }

    /// Starts `work` on a thread of its own (with `stack` bytes of stack), counted until it
    /// has ended.
    pub fn spawn(
        &self,
        name: String,
        stack: usize,
        slot: Arc<Slot>,
        socket: Weak<TcpStream>,
        work: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let finished = self.finished.clone();
        // Registered before the thread can say it is done: the reaper waits for this lock.
        let mut running = self.lock();
        let handle = std::thread::Builder::new()
            .name(name)
            .stack_size(stack)
            .spawn(move || {
                let _done = SaysWhenDone { finished, id };
                work();
            })?;
        running.insert(
            id,
            Running {
                handle: Some(handle),
                slot,
                socket,
            },
        );
        Ok(())
    }

    /// How many threads are alive (or ending, not yet joined).
    pub fn alive(&self) -> usize {
        self.lock().len()
    }

    /// Waits until a new thread may start without passing the bound. At the bound, the
    /// oldest displaced connection is ended at once (its thread lets go within moments) and
    /// its end awaited: displaced connections never make a newcomer wait for their grace.
    /// (One whose late request is being handled is left to finish it.) Returns early when
    /// `give_up` says so (the server is stopping).
    pub fn make_room(&self, give_up: &AtomicBool) {
        let mut running = self.lock();
        while running.len() >= self.most && !give_up.load(Ordering::SeqCst) {
            let ending = running.values().any(|thread| {
                thread.slot.is_cut_off() && thread.handle.is_some() && !is_handled(&thread.slot)
            });
            if !ending {
                cut_off_oldest_displaced(&running);
            }
            running = self.wait(running, RECHECK);
        }
    }

    /// Ends the oldest displaced connection at once, if there is one: for when the process
    /// runs out of file descriptors. Whether there was one.
    pub fn cut_off_oldest_displaced(&self) -> bool {
        cut_off_oldest_displaced(&self.lock())
    }

    /// Waits until every thread has ended, or `until`; whether they all have.
    pub fn wait_until_all_ended(&self, until: Instant) -> bool {
        self.wait_until_all(until, |_| false)
    }

    /// Waits until `settled` holds for the slot of every thread still alive, or `until`;
    /// whether it does.
    pub fn wait_until_all(&self, until: Instant, settled: impl Fn(&Slot) -> bool) -> bool {
        let mut running = self.lock();
        while !running.values().all(|thread| settled(&thread.slot)) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            running = self.wait(running, left.min(RECHECK));
        }
        true
    }

    /// Calls `visit` with the slot and socket of every thread still alive.
    pub fn each_alive(&self, mut visit: impl FnMut(&Slot, Option<Arc<TcpStream>>)) {
        for thread in self.lock().values() {
            visit(&thread.slot, thread.socket.upgrade());
        }
    }

    /// Joins the thread `id` (which said it is done), then forgets it.
    fn reap(&self, id: u64) {
        let handle = self
            .lock()
            .get_mut(&id)
            .and_then(|thread| thread.handle.take());
        if let Some(handle) = handle {
            // A panic was caught inside; joining only waits for the thread to be gone.
            let _ = handle.join();
        }
        self.lock().remove(&id);
        self.ended.notify_all();
    }

    fn wait<'a>(
        &self,
        running: MutexGuard<'a, HashMap<u64, Running>>,
        at_most: Duration,
    ) -> MutexGuard<'a, HashMap<u64, Running>> {
        self.ended
            .wait_timeout(running, at_most)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Running>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Ends the connection displaced longest ago (not yet ended, and not being handled: its
/// thread would go on until its handler returns); whether there was one.
fn cut_off_oldest_displaced(running: &HashMap<u64, Running>) -> bool {
    let oldest = running
        .values()
        .filter(|thread| {
            thread.slot.displaced() && !thread.slot.is_cut_off() && !is_handled(&thread.slot)
        })
        .min_by_key(|thread| thread.slot.displaced_at_ms());
    match oldest {
        Some(thread) => {
            cut_off(&thread.slot, thread.socket.upgrade().as_deref());
            true
        }
        None => false,
    }
}

/// Whether a connection's request is in its handler's hands.
fn is_handled(slot: &Slot) -> bool {
    matches!(slot.phase(), Phase::Busy | Phase::AnsweredByStop)
}

/// Ends a connection from outside its thread: every wait of its thread gives up at the next
/// look, and shutting the socket down wakes a blocked read or write at once (on Linux;
/// elsewhere the thread notices within one short wait).
pub fn cut_off(slot: &Slot, socket: Option<&TcpStream>) {
    slot.cut_off();
    if let Some(socket) = socket {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// Tells the reaper that a thread is done, whether its work returned or panicked.
struct SaysWhenDone {
    finished: Sender<u64>,
    id: u64,
}

impl Drop for SaysWhenDone {
    fn drop(&mut self) {
        let _ = self.finished.send(self.id);
    }
}
