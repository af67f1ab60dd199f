//! Connection slots: at most `MAX_CONNECTIONS` connections are served at once, and a full
//! server makes room for a newcomer by displacing the connection that is worth least, never
//! one whose request is being handled.
//!
//! Each connection's thread says what it is doing ([`Phase`]) and since when; the accept
//! loop reads that when every slot is taken. A displaced connection is told through its
//! slot's flag, which its thread checks between short reads and between the chunks of a
//! write (a thread blocked in `read` cannot be woken portably from outside), so it is gone
//! within its grace while the newcomer is already being served; and a server at its thread
//! bound can end one at once (`threads.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a connection is doing, in the order in which a full server displaces them: the
/// first kinds cost the platform nothing when closed, the last would lose work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Answered and closing: reading away what the client still sends (a lingering close).
    Closing = 0,
    /// Waiting for its next request (a new connection that has said nothing yet, or an
    /// idle keep-alive one).
    Idle = 1,
    /// Has sent part of a request head, or a body that is being read away after a refusal.
    ReadingHead = 2,
    /// Sending the body of a request that was admitted.
    ReadingBody = 3,
    /// Being answered: its work is done, only the client's reading is awaited. Displaced
    /// last of all (the longest first), so that clients reading their answers slowly cannot
    /// hold every slot; the answer being written still gets its time.
    Writing = 4,
    /// Being handled: never displaced.
    Busy = 5,
    /// Answered by its stopping server, because its handler could not finish in time: the
    /// handler's own answer, if it comes, is dropped. Never displaced.
    AnsweredByStop = 6,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Closing,
            1 => Phase::Idle,
            2 => Phase::ReadingHead,
            3 => Phase::ReadingBody,
            4 => Phase::Writing,
            5 => Phase::Busy,
            _ => Phase::AnsweredByStop,
        }
    }
}

/// One connection's place: its phase, since when, and whether it has been displaced.
#[derive(Debug)]
pub struct Slot {
    phase: AtomicU8,
    since_ms: AtomicU64,
    /// When a newcomer took this connection's place (milliseconds since `epoch`), or
    /// `u64::MAX` while it has not.
    displaced_at_ms: AtomicU64,
    /// Ended from outside (a server at its thread bound, or stopping): every wait gives up.
    cut_off: AtomicBool,
    epoch: Instant,
}

impl Slot {
    /// Says what the connection does now. A connection its stopping server has answered for
    /// stays so.
    pub fn enter(&self, phase: Phase) {
        self.since_ms
            .store(millis_since(self.epoch), Ordering::Relaxed);
        let _ = self
            .phase
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                (current != Phase::AnsweredByStop as u8).then_some(phase as u8)
            });
    }

    /// Enters [`Phase::Writing`] to write the handler's answer; `false` if the stopping
    /// server has answered for it already.
    pub fn enter_writing(&self) -> bool {
        self.enter(Phase::Writing);
        self.phase() == Phase::Writing
    }

    /// For a stopping server whose answers are due: claims a connection whose request is
    /// still being handled, to answer it in the handler's place; whether it was one.
    pub fn answer_for_the_handler(&self) -> bool {
        self.phase
            .compare_exchange(
                Phase::Busy as u8,
                Phase::AnsweredByStop as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }

    /// Whether a newcomer has taken this connection's place (or it was ended): it must close.
    pub fn displaced(&self) -> bool {
        self.displaced_at_ms.load(Ordering::Relaxed) != u64::MAX || self.is_cut_off()
    }

    /// When it was displaced (milliseconds since the slots' epoch), `u64::MAX` if it was not.
    pub fn displaced_at_ms(&self) -> u64 {
        self.displaced_at_ms.load(Ordering::Relaxed)
    }

    /// Whether it was displaced at least `grace` ago: an idle connection waits that long
    /// before it closes, so that a request its client sent at that moment (it could not
    /// know) is still served rather than met by a reset.
    pub fn displaced_for(&self, grace: Duration) -> bool {
        self.displaced_beyond(grace, 0)
    }

    /// Whether it was displaced, and `grace` has passed since then or since `since_ms`
    /// ([`Slot::now_ms`]), whichever is later: a step begun after the displacement (an
    /// answer to a request that arrived just then) still gets its grace.
    pub fn displaced_beyond(&self, grace: Duration, since_ms: u64) -> bool {
        if self.is_cut_off() {
            return true;
        }
        let at = self.displaced_at_ms.load(Ordering::Relaxed);
        at != u64::MAX
            && millis_since(self.epoch).saturating_sub(at.max(since_ms)) >= grace.as_millis() as u64
    }

    /// Now, on the clock of [`Slot::displaced_beyond`].
    pub fn now_ms(&self) -> u64 {
        millis_since(self.epoch)
    }

    /// Ends the connection from outside: it closes at its next look, whatever it was doing.
    pub fn cut_off(&self) {
        self.cut_off.store(true, Ordering::SeqCst);
    }

    pub fn is_cut_off(&self) -> bool {
        self.cut_off.load(Ordering::SeqCst)
    }

    /// How a full server ranks this connection: lowest first out, `None` for never.
    fn displacement_rank(&self) -> Option<(Phase, u64)> {
        let phase = self.phase();
        let since = self.since_ms.load(Ordering::Relaxed);
        match phase {
            Phase::Busy | Phase::AnsweredByStop => None,
            // Among idle and closing connections the oldest goes first; among those reading,
            // the one that has been at it longest.
            _ => Some((phase, since)),
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Every slot of one server.
#[derive(Debug)]
pub struct Slots {
    capacity: usize,
    epoch: Instant,
    taken: Mutex<Vec<Arc<Slot>>>,
    freed: Condvar,
}

/// A slot held by a connection's thread; dropping it frees the slot.
pub struct SlotGuard {
    slots: Arc<Slots>,
    slot: Arc<Slot>,
}

impl SlotGuard {
    /// The slot itself, for its server to reach the connection from outside.
    pub fn shared(&self) -> Arc<Slot> {
        Arc::clone(&self.slot)
    }
}

impl std::ops::Deref for SlotGuard {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        &self.slot
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut taken = self.slots.lock();
        taken.retain(|slot| !Arc::ptr_eq(slot, &self.slot));
        drop(taken);
        self.slots.freed.notify_all();
    }
}

/// How often a waiting accept loop looks again for a connection that became displaceable.
const RECHECK: Duration = Duration::from_millis(50);

impl Slots {
    pub fn new(capacity: usize) -> Arc<Slots> {
        Arc::new(Slots {
            capacity: capacity.max(1),
            epoch: Instant::now(),
            taken: Mutex::new(Vec::new()),
            freed: Condvar::new(),
        })
    }

    /// A slot for a new connection: a free one, or the place of the connection worth least
    /// (see [`Phase`]). While every connection is busy it waits; `None` if `give_up` says so
    /// meanwhile (the server is stopping).
    pub fn claim(self: &Arc<Self>, give_up: &AtomicBool) -> Option<SlotGuard> {
        let mut taken = self.lock();
        loop {
            // A stopping server takes a newcomer only into a free slot.
            let stopping = give_up.load(Ordering::SeqCst);
            if taken.len() >= self.capacity && !stopping {
                displace_one(&mut taken);
            }
            if taken.len() < self.capacity {
                let slot = Arc::new(Slot {
                    phase: AtomicU8::new(Phase::Idle as u8),
                    since_ms: AtomicU64::new(millis_since(self.epoch)),
                    displaced_at_ms: AtomicU64::new(u64::MAX),
                    cut_off: AtomicBool::new(false),
                    epoch: self.epoch,
                });
                taken.push(Arc::clone(&slot));
                return Some(SlotGuard {
                    slots: Arc::clone(self),
                    slot,
                });
            }
            if stopping {
                return None;
            }
            taken = self
                .freed
                .wait_timeout(taken, RECHECK)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// Displaces the connection worth least, if any can go: for when the process runs out of
    /// file descriptors, so that the next connection can be accepted at all.
    pub fn displace_for_descriptor(&self) -> bool {
        displace_one(&mut self.lock())
    }

    /// How many connections hold a slot.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Slot>>> {
        self.taken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Takes the lowest-ranked connection out of `taken` and tells it to close; whether there
/// was one that could go.
fn displace_one(taken: &mut Vec<Arc<Slot>>) -> bool {
    let victim = taken
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| slot.displacement_rank().map(|rank| (rank, index)))
        .min()
        .map(|(_, index)| index);
    match victim {
        Some(index) => {
            let slot = taken.swap_remove(index);
            let now = millis_since(slot.epoch);
            slot.displaced_at_ms.store(now, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_server_displaces_closing_then_idle_then_reading_never_busy() {
        let slots = Slots::new(4);
        let never = AtomicBool::new(false);
        let claim = || slots.claim(&never).expect("a slot");
        let (busy, reading, idle, closing) = (claim(), claim(), claim(), claim());
        busy.enter(Phase::Busy);
        reading.enter(Phase::ReadingHead);
        idle.enter(Phase::Idle);
        closing.enter(Phase::Closing);
        let first = claim();
        first.enter(Phase::Busy);
        assert!(closing.displaced() && !idle.displaced());
        let second = claim();
        second.enter(Phase::Busy);
        assert!(idle.displaced() && !reading.displaced());
        let _third = claim();
        assert!(reading.displaced());
        assert!(!busy.displaced());
        assert_eq!(slots.in_use(), 4);
    }

    #[test]
    fn a_slow_reader_of_its_answer_goes_before_a_request_being_handled() {
        let slots = Slots::new(2);
        let never = AtomicBool::new(false);
        let (handling, writing) = (slots.claim(&never), slots.claim(&never));
        let (handling, writing) = (handling.expect("a slot"), writing.expect("a slot"));
        handling.enter(Phase::Busy);
        writing.enter(Phase::Writing);
        let _newcomer = slots.claim(&never).expect("a slot");
        assert!(writing.displaced() && !handling.displaced());
    }

    #[test]
    fn the_oldest_idle_connection_goes_first() {
        let slots = Slots::new(2);
        let never = AtomicBool::new(false);
        let older = slots.claim(&never).expect("a slot");
        std::thread::sleep(Duration::from_millis(5));
        let newer = slots.claim(&never).expect("a slot");
        newer.enter(Phase::Idle);
        let _third = slots.claim(&never).expect("a slot");
        assert!(older.displaced() && !newer.displaced());
    }

    #[test]
    fn a_claim_waits_while_all_are_busy_and_gives_up_when_told() {
        let slots = Slots::new(1);
        let stop = AtomicBool::new(false);
        let busy = slots.claim(&stop).expect("a slot");
        busy.enter(Phase::Busy);
        stop.store(true, Ordering::SeqCst);
        assert!(slots.claim(&stop).is_none());
        drop(busy);
        assert_eq!(slots.in_use(), 0);
    }
}
