//! The graceful stop of one server ([`ServerHandle::stop`]), and what a program needs around
//! it: waiting for the signal to stop ([`StopSignal`]) and stopping its servers one
//! after another within one deadline ([`stop_in_order`]). The programs decide which server
//! stops first.

use super::answer::{self, Persistence, Refusal};
use super::slots::{Phase, Slot};
use super::{threads, Server, ServerHandle, ANSWER_ALLOWANCE};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a stopping process waits for the requests it is answering: Cloud Foundry sends
/// SIGKILL 10 s after SIGTERM, so every server is done well before that.
pub const STOP_GRACE: Duration = Duration::from_secs(8);

/// How long before a stop's deadline every answer must be out: then the handlers still
/// running get a 503 in their place, and the process exits with time to spare.
pub(super) const STOP_MARGIN: Duration = Duration::from_millis(1500);

/// How long a stopping server waits, once its answers are due, for the connections it ended
/// and for the writes under way (each gives up within one wait for room).
const ENDED_WITHIN: Duration = Duration::from_millis(300);

/// How a server's stop ended.
#[derive(Debug)]
#[must_use]
pub struct Stopped {
    /// The server's name, as its log lines give it.
    pub name: &'static str,
    /// Requests answered with a 503 in their handler's place: their handlers could not
    /// finish before the answers were due.
    pub answered_in_place: usize,
    /// Whether every request read was answered (by its handler or in its place) and every
    /// connection ended by the deadline.
    pub finished: bool,
    /// Connection threads still alive when the stop returned.
    pub still_open: usize,
}

impl Stopped {
    /// Whether the stop ended clean: every request read was answered by its handler, and
    /// every connection ended in time.
    pub fn clean(&self) -> bool {
        self.finished && self.answered_in_place == 0
    }
}

impl ServerHandle {
    /// Stops the server by `until`, as Go's `Server.Shutdown` does by its context's
    /// deadline: stops taking connections and closes idle ones; reads requests only while
    /// they can still be answered in time; waits for every request already read to be
    /// answered. When the answers are due (1.5 s before `until`), a handler still running
    /// gets a 503 written in its place, and every other connection is ended.
    pub fn stop(self, until: Instant) -> Stopped {
        self.server.stop(until)
    }
}

impl Server {
    fn stop(&self, until: Instant) -> Stopped {
        let due = self.begin_stop(until);
        let listening = || self.listening.load(Ordering::SeqCst);
        let stopped = |answered_in_place, finished| Stopped {
            name: self.name,
            answered_in_place,
            finished,
            still_open: self.threads.alive(),
        };
        if self.threads.wait_until_all_ended(due) && !wait_while(due, listening) {
            return stopped(0, true);
        }
        let answered_in_place = self.answer_what_is_left();
        let ended = |slot: &Slot| slot.phase() == Phase::AnsweredByStop;
        let settled = (Instant::now() + ENDED_WITHIN).min(until);
        let all_answered = self.threads.wait_until_all(settled, ended);
        stopped(
            answered_in_place,
            all_answered && !wait_while(settled, listening),
        )
    }

    /// Sets the stop's times (when the answers are due, until when requests are read) and
    /// wakes the accept loop, which closes the listener. When the answers are due.
    fn begin_stop(&self, until: Instant) -> Instant {
        let now = Instant::now();
        let due = until.checked_sub(STOP_MARGIN).unwrap_or(now).max(now);
        let handling = self.longest_handling + ANSWER_ALLOWANCE;
        let reading_until = due.checked_sub(handling).unwrap_or(now).max(now);
        let store = |field: &AtomicU64, at: Instant| {
            field.store(self.ms_since_epoch(at), Ordering::SeqCst);
        };
        store(&self.answers_due_ms, due);
        store(&self.reading_until_ms, reading_until);
        store(&self.stop_started_ms, now);
        self.stopping.store(true, Ordering::SeqCst);
        // The accept loop is blocked in `accept`: a connection of our own wakes it, and it
        // closes the listener (this connection, served like any, ends at once).
        let _ = TcpStream::connect_timeout(&self.wake_address, Duration::from_secs(1));
        due
    }

    /// When a stopping server's answers are due: a 503 for each request whose handler is
    /// still running (its own answer, if it comes, is dropped), and every connection that
    /// is not writing (lingering, reading) ended at once. A write under way is left to
    /// finish its chunk: one that came just now still goes out, and one blocked on a client
    /// that does not read gives up within one wait for room. How many requests got the 503.
    fn answer_what_is_left(&self) -> usize {
        let mut answered = 0;
        self.threads.each_alive(|slot, socket| {
            if slot.answer_for_the_handler() {
                answered += 1;
                if let Some(socket) = &socket {
                    answer_in_the_handlers_place(socket);
                }
            } else if !matches!(slot.phase(), Phase::AnsweredByStop | Phase::Writing) {
                threads::cut_off(slot, socket.as_deref());
            }
        });
        if answered > 0 {
            log::warn!(
                target: self.name,
                "answered {answered} requests with 503: their handlers could not finish before the stop"
            );
        }
        answered
    }
}

/// Writes the 503 of a request whose handler could not finish before the stop, at once and
/// without waiting for a client that does not read, then says FIN. The handler's thread is
/// left to the process's exit.
fn answer_in_the_handlers_place(socket: &TcpStream) {
    use std::io::Write;
    let refusal = Refusal::unfinished_at_stop();
    let bytes = answer::encode(&refusal.response, Persistence::Close, false);
    let _ = socket.set_nonblocking(true);
    let _ = (&*socket).write_all(&bytes);
    let _ = socket.shutdown(std::net::Shutdown::Write);
}

/// Waits while `condition` holds, until `until`; whether it still holds.
fn wait_while(until: Instant, condition: impl Fn() -> bool) -> bool {
    while condition() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

/// SIGTERM, SIGINT or SIGHUP (Ctrl-C, Ctrl-Break or closing the console on Windows), handled
/// from [`StopSignal::install`] on. A program installs it before its server answers, so
/// that the thread that waits for signals is there before the first request: a server's
/// threads are then the same from its first answer to its last.
pub struct StopSignal {
    /// `None` if the signals cannot be handled.
    received: Option<std::sync::mpsc::Receiver<()>>,
}

impl StopSignal {
    /// Handles the stop signals from now on; a signal that comes before [`StopSignal::wait`]
    /// is kept for it. If they cannot be handled, it says so.
    pub fn install() -> StopSignal {
        let (signalled, received) = std::sync::mpsc::channel();
        let handled = ctrlc::set_handler(move || {
            let _ = signalled.send(());
        });
        match handled {
            Ok(()) => StopSignal {
                received: Some(received),
            },
            Err(error) => {
                log::warn!(
                    "stop signals are not handled ({error}): stopping ends requests abruptly"
                );
                StopSignal { received: None }
            }
        }
    }

    /// Blocks until a stop signal comes, and logs that a stop was asked for. Without
    /// handled signals it never returns: the process serves until it is killed.
    pub fn wait(self) {
        if self
            .received
            .is_none_or(|received| received.recv().is_err())
        {
            loop {
                std::thread::park();
            }
        }
        log::info!("stop requested: finishing the requests in progress");
    }
}

/// Stops `servers` one after another, in the order given, all within `grace` from now, and
/// logs how each stop ended. Whether every one finished: every request read answered, every
/// connection ended.
pub fn stop_in_order(servers: impl IntoIterator<Item = ServerHandle>, grace: Duration) -> bool {
    let until = Instant::now() + grace;
    let mut all_finished = true;
    for server in servers {
        let stopped = server.stop(until);
        if stopped.finished {
            log::info!("{}: stopped", stopped.name);
        } else {
            log::error!(
                "{}: {} connections still open after {} s; stopping anyway",
                stopped.name,
                stopped.still_open,
                grace.as_secs()
            );
        }
        all_finished &= stopped.finished;
    }
    all_finished
}
