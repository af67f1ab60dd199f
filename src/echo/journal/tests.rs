//! The journal's tests on the real disk: replay, torn tails, damage refused and left
//! untouched, compaction and crashes at each of its steps, group commit, the read-only
//! copy, and the locks.

use super::format::{frame, log_generation, unframe, LOCK};
use super::*;
// The tests' tenant is the echo service's state, the journal's one user: the changes and
// the state that replay must give back are the real ones. (Only the tests look this way.)
use crate::echo::journal_state::test_changes::{bind, provision};
use crate::echo::journal_state::{Change, EchoState};

use super::test_disk::TestDir;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Journal = super::Journal<EchoState>;

pub(super) fn limits(compact_after_entries: u64) -> Limits {
    Limits {
        compact_after_entries,
        ..Limits::DEFAULT
    }
}

/// Opens the journal in `dir` on the real disk; a refusal as its message.
fn open_with(dir: &Path, limits: Limits) -> Result<(Journal, EchoState), String> {
    Journal::open_with(dir, Arc::new(StdDisk), limits).map_err(|problem| problem.to_string())
}

pub(super) fn open(dir: &TestDir, compact_after_entries: u64) -> (Journal, EchoState) {
    open_with(&dir.0, limits(compact_after_entries)).expect("journal opens")
}

fn message(id: &str, text: &str) -> Change {
    Change::Message {
        instance_id: id.into(),
        preview: text.into(),
    }
}

/// What `EchoService::commit` does with a change.
pub(super) fn commit(journal: &Journal, state: &Mutex<EchoState>, change: Change) {
    let mut guard = state.lock().expect("state lock");
    let ticket = journal.append(&change).expect("change is appended");
    guard.apply(change);
    if journal.wants_compaction() {
        journal.compact(&guard);
    }
    drop(guard);
    journal
        .wait_until_durable(ticket)
        .expect("change becomes durable");
}

/// Closes `journal` and opens `dir` again: it loads what `state` holds.
pub(super) fn assert_reopens_as(dir: &TestDir, journal: Journal, state: Mutex<EchoState>) {
    drop(journal);
    let (_, reopened) = open(dir, 1_000_000);
    assert_eq!(
        as_json(&reopened),
        as_json(&state.into_inner().expect("state"))
    );
}

pub(super) fn as_json(state: &EchoState) -> serde_json::Value {
    serde_json::to_value(state).expect("state serialises")
}

/// A mix of every kind of change, some of which cancel others out.
pub(super) fn changes(prefix: &str, count: usize) -> Vec<Change> {
    let mut all = Vec::new();
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        all.push(provision(&id));
        all.push(bind(&id, "b1"));
        all.push(bind(&id, "b2"));
        all.push(message(&id, &format!("hello {i}")));
        all.push(message(&id, "again"));
        all.push(Change::Unbind {
            instance_id: id.clone(),
            binding_id: "b2".into(),
        });
        all.push(Change::Update {
            instance_id: id.clone(),
            update: crate::echo::api::InstanceUpdate {
                plan_id: Some("small_0001".into()),
                ..Default::default()
            },
        });
        if i % 3 == 0 {
            all.push(Change::Deprovision { instance_id: id });
        }
    }
    all
}

/// Runs `changes` through a fresh journal in `dir` and returns the live state.
pub(super) fn run(dir: &TestDir, compact_after_entries: u64, changes: Vec<Change>) -> EchoState {
    let (journal, state) = open(dir, compact_after_entries);
    let state = Mutex::new(state);
    for change in changes {
        commit(&journal, &state, change);
    }
    state.into_inner().expect("state")
}

pub(super) fn log_lines(dir: &TestDir, generation: u64) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(dir.file(&log_name(generation))).expect("log reads");
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn crc32_is_the_ieee_one() {
    assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32fast::hash(b""), 0);
    let mut line = Vec::new();
    frame(&mut line, "7 {}");
    assert_eq!(unframe(&line[..line.len() - 1]).ok(), Some(&b"7 {}"[..]));
}

#[test]
fn a_reopened_journal_replays_every_change() {
    let dir = TestDir::new("replay");
    let live = run(&dir, 1_000_000, changes("i", 20));
    let (journal, replayed) = open(&dir, 1_000_000);
    assert_eq!(as_json(&replayed), as_json(&live));
    let messages = replayed.instances.get("i-1").map(|i| i.message_count());
    assert_eq!(messages, Some(2));
    assert!(replayed.instances.get("i-3").is_none());

    // It carries on where it stopped, and the second run is replayed after the first.
    let state = Mutex::new(replayed);
    for change in changes("j", 5) {
        commit(&journal, &state, change);
    }
    assert_reopens_as(&dir, journal, state);
    assert_eq!(log_lines(&dir, 0).len(), changes("i", 25).len());
}

#[test]
fn a_torn_last_line_is_cut_off() {
    let full = changes("i", 4);
    let dir = TestDir::new("torn");
    run(&dir, 1_000_000, full.clone());
    let lines = log_lines(&dir, 0);
    let complete: Vec<u8> = lines[..lines.len() - 1].concat();
    let last = &lines[lines.len() - 1];
    let mut expected = EchoState::default();
    for change in full.iter().take(lines.len() - 1).cloned() {
        expected.apply(change);
    }

    let mut wrong_checksum = last.clone();
    wrong_checksum[0] = if wrong_checksum[0] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let tails: [Vec<u8>; 4] = [
        last[..last.len() / 2].to_vec(),
        last[..last.len() - 1].to_vec(), // all but the line end
        wrong_checksum[..wrong_checksum.len() - 1].to_vec(),
        vec![0; 300],
    ];
    for tail in tails {
        let mut bytes = complete.clone();
        bytes.extend_from_slice(&tail);
        std::fs::write(dir.file(&log_name(0)), &bytes).expect("log is written");

        let (journal, state) = open(&dir, 1_000_000);
        assert_eq!(as_json(&state), as_json(&expected));
        assert_eq!(
            std::fs::read(dir.file(&log_name(0))).expect("log reads"),
            complete,
            "the torn tail is cut off"
        );
        // What is appended next follows the last complete line.
        let state = Mutex::new(state);
        commit(&journal, &state, provision("after"));
        assert_reopens_as(&dir, journal, state);
    }
}

fn assert_refused(dir: &TestDir, file: &str, line: usize) -> String {
    let before = dir.files();
    let Err(problem) = open_with(&dir.0, limits(1_000_000)) else {
        panic!("a corrupt journal was opened");
    };
    let path = dir.file(file).display().to_string();
    assert!(
        problem.contains(&format!("{path} line {line}: ")),
        "{problem}"
    );
    assert!(!problem.contains('\n'), "{problem}");
    let mut after = dir.files();
    after.remove(LOCK);
    let mut before = before;
    before.remove(LOCK);
    assert_eq!(before, after, "the journal is left byte for byte as it was");
    problem
}

#[test]
fn a_corrupt_line_in_the_middle_is_refused_and_left_untouched() {
    let dir = TestDir::new("corrupt");
    run(&dir, 1_000_000, changes("i", 2));
    let lines = log_lines(&dir, 0);
    let original = lines.concat();

    // A changed byte (the checksum no longer matches).
    let mut flipped = lines.clone();
    let at = flipped[1].len() - 5;
    flipped[1][at] ^= 0x01;
    std::fs::write(dir.file(&log_name(0)), flipped.concat()).expect("written");
    let problem = assert_refused(&dir, &log_name(0), 2);
    assert!(problem.contains("checksum mismatch"), "{problem}");

    // A garbage line.
    let mut garbage = lines.clone();
    garbage.insert(3, b"hello world\n".to_vec());
    std::fs::write(dir.file(&log_name(0)), garbage.concat()).expect("written");
    assert_refused(&dir, &log_name(0), 4);

    // A line lost in the middle (the sequence numbers show it).
    let mut missing = lines.clone();
    missing.remove(2);
    std::fs::write(dir.file(&log_name(0)), missing.concat()).expect("written");
    let problem = assert_refused(&dir, &log_name(0), 3);
    assert!(
        problem.contains("change 4 where change 3 belongs"),
        "{problem}"
    );

    // A complete last line is not a torn write: with a bad checksum, or garbage, it is
    // refused too.
    let mut last_flipped = lines.clone();
    let last = last_flipped.len() - 1;
    let at = last_flipped[last].len() - 5;
    last_flipped[last][at] ^= 0x01;
    std::fs::write(dir.file(&log_name(0)), last_flipped.concat()).expect("written");
    let problem = assert_refused(&dir, &log_name(0), lines.len());
    assert!(problem.contains("checksum mismatch"), "{problem}");
    let mut garbage_last = lines.clone();
    garbage_last.push(b"hello world\n".to_vec());
    std::fs::write(dir.file(&log_name(0)), garbage_last.concat()).expect("written");
    assert_refused(&dir, &log_name(0), lines.len() + 1);

    // Nor is one with a good checksum: out of order, it is refused.
    let mut repeated = lines.clone();
    repeated.push(lines[0].clone());
    std::fs::write(dir.file(&log_name(0)), repeated.concat()).expect("written");
    assert_refused(&dir, &log_name(0), lines.len() + 1);

    // A change that passes its checksum but does not read.
    let mut unreadable = lines.clone();
    let mut bad = Vec::new();
    frame(&mut bad, "2 {\"change\":\"explode\"}");
    unreadable[1] = bad;
    std::fs::write(dir.file(&log_name(0)), unreadable.concat()).expect("written");
    assert_refused(&dir, &log_name(0), 2);

    // Restored, it opens again.
    std::fs::write(dir.file(&log_name(0)), original).expect("written");
    open(&dir, 1_000_000);
}

#[test]
fn a_corrupt_snapshot_is_refused_and_left_untouched() {
    let dir = TestDir::new("snapshot");
    let live = run(&dir, 5, changes("i", 3));
    let snapshot = std::fs::read(dir.file(SNAPSHOT)).expect("a snapshot was written");

    let mut flipped = snapshot.clone();
    flipped[20] ^= 0x02;
    std::fs::write(dir.file(SNAPSHOT), &flipped).expect("written");
    assert_refused(&dir, SNAPSHOT, 1);

    std::fs::write(dir.file(SNAPSHOT), &snapshot[..snapshot.len() / 2]).expect("written");
    assert_refused(&dir, SNAPSHOT, 1);

    std::fs::write(dir.file(SNAPSHOT), b"").expect("written");
    assert_refused(&dir, SNAPSHOT, 1);

    std::fs::write(dir.file(SNAPSHOT), &snapshot).expect("written");
    let (_, state) = open(&dir, 5);
    assert_eq!(as_json(&state), as_json(&live));
}

#[test]
fn a_log_without_its_snapshot_is_refused() {
    let dir = TestDir::new("lost-snapshot");
    run(&dir, 5, changes("i", 3));
    let generation = dir
        .files()
        .keys()
        .find_map(|name| log_generation(name))
        .expect("a log");
    assert!(generation > 0);
    // Make the log non-empty, then lose the snapshot.
    let (journal, state) = open(&dir, 1_000_000);
    commit(&journal, &Mutex::new(state), provision("late"));
    drop(journal);
    std::fs::remove_file(dir.file(SNAPSHOT)).expect("snapshot is removed");
    let before = dir.files();
    let problem = open_with(&dir.0, limits(5)).err().expect("refused");
    assert!(problem.contains(&log_name(generation)), "{problem}");
    assert!(problem.contains("is missing"), "{problem}");
    assert_eq!(dir.files(), before);

    // A snapshot whose log is gone is refused too.
    let dir = TestDir::new("lost-log");
    run(&dir, 5, changes("i", 3));
    let log = dir
        .files()
        .keys()
        .find(|name| log_generation(name).is_some())
        .cloned()
        .expect("a log");
    std::fs::remove_file(dir.file(&log)).expect("log is removed");
    let problem = open_with(&dir.0, limits(5)).err().expect("refused");
    assert!(problem.contains(&log), "{problem}");
}

#[test]
fn compaction_keeps_everything() {
    let dir = TestDir::new("compaction");
    let all = changes("i", 40);
    let count = all.len() as u64;
    let live = run(&dir, 7, all);
    let files = dir.files();
    let generations: Vec<u64> = files.keys().filter_map(|n| log_generation(n)).collect();
    assert_eq!(generations.len(), 1, "old logs are removed: {files:?}");
    assert!(
        generations[0] >= 5,
        "compacted now and then: {generations:?}"
    );
    assert!(!files.contains_key(SNAPSHOT_TMP));

    let (journal, replayed) = open(&dir, 7);
    assert_eq!(as_json(&replayed), as_json(&live));
    // Messages count up: a change replayed twice would show.
    let messages = replayed.instances.get("i-1").map(|i| i.message_count());
    assert_eq!(messages, Some(2));
    assert!(journal.lock().appended == count);
}

#[test]
fn a_log_of_large_changes_is_compacted_by_its_size() {
    let dir = TestDir::new("bytes");
    let limits = Limits {
        compact_after_entries: 1_000_000,
        compact_after_bytes: 64 * 1024,
    };
    let (journal, state) = open_with(&dir.0, limits).expect("journal opens");
    let state = Mutex::new(state);
    commit(&journal, &state, provision("big"));
    let parameters = serde_json::json!({ "blob": "x".repeat(8 * 1024) });
    for _ in 0..100 {
        let update = crate::echo::api::InstanceUpdate {
            parameters: Some(parameters.clone()),
            ..Default::default()
        };
        let change = Change::Update {
            instance_id: "big".into(),
            update,
        };
        commit(&journal, &state, change);
    }
    let total: usize = dir.files().values().map(Vec::len).sum();
    assert!(
        total < 2 * 64 * 1024 + 16 * 1024,
        "{total} bytes on disk for 800 KiB of changes: {:?}",
        dir.files().keys().collect::<Vec<_>>()
    );
    drop(journal);
    let (_, replayed) = open_with(&dir.0, limits).expect("journal opens");
    assert_eq!(
        as_json(&replayed),
        as_json(&state.into_inner().expect("state"))
    );
}

#[test]
fn a_crash_at_any_point_of_a_compaction_leaves_a_loadable_journal() {
    let dir = TestDir::new("crash");
    // Generation 1 with a snapshot and some log, so the old snapshot exists too.
    run(&dir, 1_000_000, changes("a", 3));
    let (journal, state) = open(&dir, 1_000_000);
    journal.compact(&state);
    let state = Mutex::new(state);
    for change in changes("b", 3) {
        commit(&journal, &state, change);
    }
    let before = dir.files();
    let expected = as_json(&state.lock().expect("state"));
    journal.compact(&state.lock().expect("state"));
    let after = dir.files();
    drop(journal);
    assert!(before.contains_key(&log_name(1)) && after.contains_key(&log_name(2)));

    let mut crashes = Vec::new();
    // The new log is created, the snapshot not yet begun.
    let mut files = before.clone();
    files.insert(log_name(2), Vec::new());
    crashes.push(files.clone());
    // The temporary snapshot is half written.
    let new_snapshot = after[SNAPSHOT].clone();
    files.insert(
        SNAPSHOT_TMP.into(),
        new_snapshot[..new_snapshot.len() / 2].to_vec(),
    );
    crashes.push(files.clone());
    // It is complete, not yet renamed.
    files.insert(SNAPSHOT_TMP.into(), new_snapshot.clone());
    crashes.push(files.clone());
    // Renamed; the old log is still there.
    files.remove(SNAPSHOT_TMP);
    files.insert(SNAPSHOT.into(), new_snapshot);
    crashes.push(files.clone());
    // And the end.
    crashes.push(after);

    for files in crashes {
        let names: Vec<&String> = files.keys().collect();
        dir.replace_files(&files);
        let (journal, state) = open_with(&dir.0, limits(1_000_000))
            .unwrap_or_else(|problem| panic!("{names:?}: {problem}"));
        assert_eq!(as_json(&state), expected, "{names:?}");
        let left: Vec<String> = dir.files().into_keys().collect();
        assert_eq!(left.len(), 3, "leftovers are removed: {left:?}");
        // And it goes on working.
        let state = Mutex::new(state);
        commit(&journal, &state, provision("later"));
        journal.compact(&state.lock().expect("state"));
        commit(&journal, &state, message("later", "hi"));
        assert_reopens_as(&dir, journal, state);
    }
}

#[test]
fn changes_made_while_a_snapshot_is_written_survive_a_stop_before_it_is_installed() {
    let dir = TestDir::new("switched");
    run(&dir, 1_000_000, changes("a", 3));
    let (journal, state) = open(&dir, 1_000_000);
    let state = Mutex::new(state);
    // A compaction switches logs, then the state goes on changing while its snapshot
    // would be written: and the process stops before it is installed.
    assert!(journal.lock().older_logs.is_empty());
    {
        let guard = state.lock().expect("state");
        journal.lock().compacting = true;
        let next = journal.prepare_compaction().expect("the next log");
        journal.switch_log(next).expect("switched");
        drop(guard);
    }
    for change in changes("b", 2) {
        commit(&journal, &state, change);
    }
    let expected = as_json(&state.lock().expect("state"));
    drop(journal);
    let files = dir.files();
    assert!(files.contains_key(&log_name(0)) && files.contains_key(&log_name(1)));
    assert!(!files[&log_name(1)].is_empty());

    // Both logs are replayed, in order, and the compaction finished at the start.
    let (journal, replayed) = open(&dir, 1_000_000);
    assert_eq!(as_json(&replayed), expected);
    let names: Vec<String> = dir.files().into_keys().collect();
    assert_eq!(names.len(), 3, "one snapshot and one log again: {names:?}");
    let state = Mutex::new(replayed);
    commit(&journal, &state, provision("later"));
    assert_reopens_as(&dir, journal, state);

    // A torn last line in the older log (a stop during the switch's last flush) is
    // forgiven while the newer log is empty, and is damage once it is not.
    let dir = TestDir::new("switched-torn");
    let expected = as_json(&run(&dir, 1_000_000, changes("a", 2)));
    let mut files = dir.files();
    let mut torn = files[&log_name(0)].clone();
    torn.extend_from_slice(b"0badc0de 99 {\"change\":");
    files.insert(log_name(0), torn);
    files.insert(log_name(1), Vec::new());
    dir.replace_files(&files);
    let (journal, replayed) = open(&dir, 1_000_000);
    assert_eq!(as_json(&replayed), expected);
    drop(journal);
    files.insert(log_name(1), b"00000000 1 {}\n".to_vec());
    dir.replace_files(&files);
    let problem = open_with(&dir.0, limits(1_000_000)).err().expect("refused");
    assert!(problem.contains("a newer one follows"), "{problem}");
    let mut left = dir.files();
    left.remove(LOCK);
    files.remove(LOCK);
    assert_eq!(left, files, "left as it was");
}

#[test]
fn concurrent_changes_share_flushes_and_all_survive() {
    let dir = TestDir::new("group");
    let (journal, state) = open(&dir, 500);
    let journal = Arc::new(journal);
    let state = Arc::new(Mutex::new(state));
    let threads = 16;
    let per_thread = 60;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let journal = Arc::clone(&journal);
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                for change in changes(&format!("t{t}"), per_thread / 8) {
                    commit(&journal, &state, change);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker finishes");
    }
    let total = changes("x", per_thread / 8).len() as u64 * threads;
    let (flushes, written) = journal.flush_statistics();
    assert!(written <= total);
    assert!(
        flushes < total,
        "{flushes} flushes for {total} changes: none was shared"
    );
    drop(journal);
    let live = as_json(&state.lock().expect("state"));
    let (journal, replayed) = open(&dir, 500);
    assert_eq!(as_json(&replayed), live);
    assert_eq!(journal.lock().appended, total);
}

fn read_only(dir: &Path) -> Result<ReadOnlyCopy<EchoState>, String> {
    super::read_only::<EchoState>(dir).map_err(|problem| problem.to_string())
}

/// The generation of the newest log in `dir`.
fn newest_generation(dir: &TestDir) -> u64 {
    dir.files()
        .keys()
        .filter_map(|name| log_generation(name))
        .max()
        .expect("a log")
}

#[test]
fn a_journal_read_read_only_is_left_byte_for_byte_as_it_was() {
    let dir = TestDir::new("read-only");
    run(&dir, 5, changes("i", 3));
    run(&dir, 1_000_000, changes("j", 2));
    let generation = newest_generation(&dir);
    assert!(generation > 0, "compacted: a snapshot and its log");
    // What a stop can leave: a torn last line, a half-written snapshot, an older log not
    // yet removed, the empty log of a compaction that had just begun; and no lock file.
    let mut files = dir.files();
    assert!(!files[&log_name(generation)].is_empty());
    let torn = b"0badc0de 99 {\"change\":";
    files
        .get_mut(&log_name(generation))
        .expect("the current log")
        .extend_from_slice(torn);
    files.insert(SNAPSHOT_TMP.into(), b"half a snap".to_vec());
    files.insert(log_name(generation - 1), b"an older log\n".to_vec());
    files.insert(log_name(generation + 1), Vec::new());
    files.remove(LOCK);
    dir.replace_files(&files);

    let copy = read_only(&dir.0).expect("the journal reads");
    assert_eq!(dir.files(), files, "every name and byte as it was");
    assert_eq!(
        copy.torn_tail,
        Some(TornTail {
            log: dir.file(&log_name(generation)),
            bytes: torn.len() as u64
        })
    );
    let (_, opened) = open(&dir, 1_000_000);
    assert_eq!(as_json(&copy.state), as_json(&opened));
}

#[test]
fn an_empty_or_foreign_directory_is_refused_read_only_and_left_as_it_was() {
    let dir = TestDir::new("read-only-empty");
    let refusal = format!(
        "{} is not an echo service journal (no state.snapshot or changes.N.log)",
        dir.0.display()
    );
    assert_eq!(read_only(&dir.0).err(), Some(refusal.clone()));
    assert!(dir.files().is_empty(), "{:?}", dir.files().keys());

    std::fs::write(dir.file("notes.txt"), b"not a journal").expect("written");
    std::fs::write(dir.file("changes.1.log.bak"), b"nor this").expect("written");
    let before = dir.files();
    assert_eq!(read_only(&dir.0).err(), Some(refusal));
    let after = dir.files();
    assert_eq!(after, before);
    assert!(!after.contains_key(LOCK) && !after.contains_key(&log_name(0)));
}

#[test]
fn a_missing_directory_is_refused_read_only_and_not_created() {
    let parent = TestDir::new("read-only-missing");
    let missing = parent.file("journal");
    let problem = read_only(&missing).err().expect("refused");
    assert_eq!(problem, format!("{}: does not exist", missing.display()));
    assert!(!missing.exists());

    std::fs::write(&missing, b"a file").expect("written");
    let problem = read_only(&missing).err().expect("refused");
    assert_eq!(
        problem,
        format!("{}: is not a directory", missing.display())
    );
    assert_eq!(parent.files().len(), 1);
}

#[test]
fn a_corrupt_journal_is_refused_read_only_as_open_refuses_it() {
    let dir = TestDir::new("read-only-corrupt");
    run(&dir, 1_000_000, changes("i", 2));
    let mut lines = log_lines(&dir, 0);
    lines[2][12] ^= 0x01;
    std::fs::write(dir.file(&log_name(0)), lines.concat()).expect("written");
    std::fs::remove_file(dir.file(LOCK)).expect("the lock file is removed");
    let before = dir.files();

    let problem = read_only(&dir.0).err().expect("refused");
    assert_eq!(dir.files(), before);
    let log = dir.file(&log_name(0));
    assert!(
        problem.contains(&format!("{} line 3: ", log.display())),
        "{problem}"
    );
    let opened = open_with(&dir.0, limits(1_000_000)).err();
    assert_eq!(opened, Some(problem));
}

// Windows' file locks bar reads too: there a journal in use cannot be read.
#[cfg(unix)]
#[test]
fn a_journal_in_use_is_read_without_its_lock() {
    let dir = TestDir::new("read-only-in-use");
    let (journal, state) = open(&dir, 1_000_000);
    let state = Mutex::new(state);
    for change in changes("i", 3) {
        commit(&journal, &state, change);
    }
    let before = dir.files();
    let copy = read_only(&dir.0).expect("a journal in use reads");
    assert_eq!(dir.files(), before);
    assert_eq!(as_json(&copy.state), as_json(&state.lock().expect("state")));

    // Its process goes on, and still holds the journal.
    commit(&journal, &state, provision("later"));
    let problem = open_with(&dir.0, limits(1_000_000)).err().expect("refused");
    assert!(problem.contains("another process"), "{problem}");
}

/// The message count of instance `i` in a read-only copy of `dir`, and its newest message.
#[cfg(unix)]
fn messages_read(dir: &TestDir) -> Result<(u64, Option<String>), String> {
    let copy = read_only(&dir.0)?;
    let instance = copy.state.instances.get("i").ok_or("no instance i")?;
    Ok((instance.message_count(), instance.recent_messages().pop()))
}

#[cfg(unix)]
#[test]
fn a_journal_read_while_it_compacts_gives_a_state_it_went_through() {
    const COMPACTIONS: u64 = 20;
    let dir = TestDir::new("read-only-compacting");
    let (journal, state) = open(&dir, 5);
    let state = Mutex::new(state);
    commit(&journal, &state, provision("i"));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reads: Vec<_> = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut sent = 0;
            while !stop.load(Ordering::SeqCst) {
                sent += 1;
                commit(&journal, &state, message("i", &format!("m-{sent}")));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut reads = Vec::new();
        while journal.lock().generation < COMPACTIONS && Instant::now() < deadline {
            reads.push(messages_read(&dir));
        }
        stop.store(true, Ordering::SeqCst);
        reads
    });
    assert!(
        journal.lock().generation >= COMPACTIONS,
        "compacted meanwhile"
    );
    let mut seen = 0;
    for read in reads {
        let (count, newest) = read.expect("every read succeeds");
        assert!(count >= seen, "{count} messages read after {seen}");
        if count > 0 {
            assert_eq!(newest, Some(format!("m-{count}")));
        }
        seen = count;
    }
}

#[test]
fn a_journal_in_use_is_not_opened_twice() {
    let dir = TestDir::new("locked");
    let (journal, _) = open(&dir, 1_000_000);
    let problem = open_with(&dir.0, limits(1_000_000)).err().expect("refused");
    assert!(problem.contains("another process"), "{problem}");
    drop(journal);
    open(&dir, 1_000_000);
}

#[test]
fn a_removed_lock_file_does_not_let_a_second_journal_in() {
    let dir = TestDir::new("lock-removed");
    let (journal, _) = open(&dir, 1_000_000);
    std::fs::remove_file(dir.0.join(LOCK)).expect("the lock file is removed");
    let problem = open_with(&dir.0, limits(1_000_000)).err().expect("refused");
    // Windows may keep a removed open file as "delete pending", which cannot be opened.
    let lock_file_unusable = cfg!(windows) && problem.contains(LOCK);
    assert!(
        problem.contains("another process") || lock_file_unusable,
        "{problem}"
    );
    drop(journal);
    open(&dir, 1_000_000);
}
