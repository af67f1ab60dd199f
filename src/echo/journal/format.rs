//! The journal's files as bytes: their names, the framing of a line, its checksum, and what
//! a snapshot and a log line hold. What is written here is read by every later version of
//! the program, so it changes only with [`FORMAT`].
//!
//! # On disk (all in `DATA_DIR`)
//!
//! | file | what |
//! | --- | --- |
//! | `state.snapshot` | one line: the whole state up to a sequence number, and the generation of the log that follows it |
//! | `changes.<G>.log` | one line per change made after the snapshot of generation `G` |
//! | `state.snapshot.tmp` | a snapshot being written (removed at start: an interrupted compaction) |
//! | `journal.lock` | held (an OS file lock) while a process uses the directory |
//!
//! Every line is `<crc> <payload>\n`: `crc` is the CRC-32 (IEEE, as zlib and PNG use it;
//! computed by `crc32fast`) of the payload's bytes as 8 lowercase hex digits. A snapshot's
//! payload is `{"format":1,"generation":G,"sequence":S,"state":{...}}`; a log line's payload is
//! `<sequence> <change as JSON>`, the sequences counting up by one from `S + 1`.
//!
//! This file knows bytes only: which files hold them and when they are read or written
//! (loading, locks, fsyncs) is for the others. The tenant's state and changes are anything
//! that implements [`Recorded`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{Seek, SeekFrom, Write};

pub(super) const SNAPSHOT: &str = "state.snapshot";
pub(super) const SNAPSHOT_TMP: &str = "state.snapshot.tmp";
pub(super) const LOCK: &str = "journal.lock";
/// The version of the snapshot's payload, written in every snapshot.
pub(super) const FORMAT: u32 = 1;

/// What a journal can keep: a state that starts empty, is saved and loaded whole (the
/// snapshot), and changes only through [`Recorded::apply`] (the log). Replaying the log's
/// changes onto the snapshot must give back the state that was live when they were appended.
pub trait Recorded: Default + Serialize + DeserializeOwned {
    /// One change, as the log records it.
    type Change: Serialize + DeserializeOwned;

    /// Applies `change` (live, or replayed from the log at start).
    fn apply(&mut self, change: Self::Change);
}

pub(super) fn log_name(generation: u64) -> String {
    format!("changes.{generation}.log")
}

/// The generation of a log file's name, `None` for any other name.
pub(super) fn log_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("changes.")?.strip_suffix(".log")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a line (of a log or the snapshot) does not read.
#[derive(Debug)]
pub enum Damage {
    /// The line does not start with 8 hex digits and a space.
    NoChecksum,
    /// The payload's CRC-32 is not the one written before it.
    ChecksumMismatch,
    NoSequenceNumber,
    UnreadableSequenceNumber,
    /// A change out of order: one lost, repeated or moved.
    OutOfOrder {
        found: u64,
        expected: u64,
    },
    /// A change that passes its checksum but is not one the tenant reads.
    UnreadableChange {
        sequence: u64,
        error: serde_json::Error,
    },
    SnapshotNotEnded,
    SnapshotOfManyLines,
    UnreadableSnapshot(serde_json::Error),
    /// A snapshot of a `FORMAT` this program does not read.
    UnknownFormat(u32),
    /// Bytes after the last line end of a log that a newer log follows: only the newest
    /// log can have been cut by a crash.
    TornBeforeNewer,
}

impl fmt::Display for Damage {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::NoChecksum => out.write_str("not a journal line (no checksum)"),
            Damage::ChecksumMismatch => out.write_str("checksum mismatch"),
            Damage::NoSequenceNumber => out.write_str("no sequence number"),
            Damage::UnreadableSequenceNumber => out.write_str("the sequence number does not read"),
            Damage::OutOfOrder { found, expected } => {
                write!(out, "change {found} where change {expected} belongs")
            }
            Damage::UnreadableChange { sequence, error } => {
                write!(out, "change {sequence} does not read: {error}")
            }
            Damage::SnapshotNotEnded => out.write_str("the snapshot does not end with a line end"),
            Damage::SnapshotOfManyLines => out.write_str("the snapshot has more than one line"),
            Damage::UnreadableSnapshot(error) => write!(out, "the snapshot does not read: {error}"),
            Damage::UnknownFormat(format) => write!(
                out,
                "format {format} is not the one this program reads ({FORMAT})"
            ),
            Damage::TornBeforeNewer => {
                out.write_str("an incomplete last line in a log that a newer one follows")
            }
        }
    }
}

impl std::error::Error for Damage {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Damage::UnreadableChange { error, .. } | Damage::UnreadableSnapshot(error) => {
                Some(error)
            }
            _ => None,
        }
    }
}

#[derive(Serialize)]
pub(super) struct SnapshotOut<'a, S> {
    pub(super) format: u32,
    pub(super) generation: u64,
    pub(super) sequence: u64,
    pub(super) state: &'a S,
}

#[derive(Deserialize)]
pub(super) struct SnapshotIn<S> {
    format: u32,
    pub(super) generation: u64,
    pub(super) sequence: u64,
    pub(super) state: S,
}

pub(super) fn parse_snapshot<S: Recorded>(bytes: &[u8]) -> Result<SnapshotIn<S>, Damage> {
    let Some(line) = bytes.strip_suffix(b"\n") else {
        return Err(Damage::SnapshotNotEnded);
    };
    if line.contains(&b'\n') {
        return Err(Damage::SnapshotOfManyLines);
    }
    let payload = unframe(line)?;
    let snapshot: SnapshotIn<S> =
        serde_json::from_slice(payload).map_err(Damage::UnreadableSnapshot)?;
    if snapshot.format != FORMAT {
        return Err(Damage::UnknownFormat(snapshot.format));
    }
    Ok(snapshot)
}

/// The change in a log line's payload, which must be change number `expected`.
pub(super) fn parse_entry<C: DeserializeOwned>(payload: &[u8], expected: u64) -> Result<C, Damage> {
    let space = payload
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Damage::NoSequenceNumber)?;
    let found = std::str::from_utf8(&payload[..space])
        .ok()
        .and_then(|digits| digits.parse::<u64>().ok())
        .ok_or(Damage::UnreadableSequenceNumber)?;
    if found != expected {
        return Err(Damage::OutOfOrder { found, expected });
    }
    serde_json::from_slice(&payload[space + 1..]).map_err(|error| Damage::UnreadableChange {
        sequence: found,
        error,
    })
}

/// Writes `snapshot` to `out` as one framed line (`<crc> <json>\n`), from its start. The
/// JSON is streamed through a checksumming writer, never held in memory whole: with many
/// instances the state's text would otherwise double the peak memory. Returns the size.
pub(super) fn write_snapshot<S: Serialize, W: Write + Seek>(
    out: &mut W,
    snapshot: &SnapshotOut<S>,
) -> std::io::Result<u64> {
    out.write_all(b"00000000 ")?;
    let (crc, written) = {
        // Buffered before the checksum, so it sums whole buffers, not serde's small pieces.
        let mut buffered = std::io::BufWriter::new(ChecksummingWriter {
            inner: &mut *out,
            crc: crc32fast::Hasher::new(),
            written: 0,
        });
        serde_json::to_writer(&mut buffered, snapshot)?;
        let writer = buffered
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        writer.inner.write_all(b"\n")?;
        (writer.crc.finalize(), writer.written)
    };
    out.seek(SeekFrom::Start(0))?;
    out.write_all(format!("{crc:08x}").as_bytes())?;
    Ok(written + 10)
}

/// Passes bytes on to `inner`, keeping the CRC-32 of everything that went through.
struct ChecksummingWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> Write for ChecksummingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let count = self.inner.write(bytes)?;
        self.crc.update(&bytes[..count]);
        self.written += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Appends `<crc> <payload>\n` to `out`.
pub(super) fn frame(out: &mut Vec<u8>, payload: &str) {
    let crc = crc32fast::hash(payload.as_bytes());
    out.reserve(payload.len() + 10);
    for shift in (0..8).rev() {
        out.push(b"0123456789abcdef"[((crc >> (shift * 4)) & 0xf) as usize]);
    }
    out.push(b' ');
    out.extend_from_slice(payload.as_bytes());
    out.push(b'\n');
}

/// The payload of a framed line (without its line end), if its checksum matches.
pub(super) fn unframe(line: &[u8]) -> Result<&[u8], Damage> {
    if line.len() < 9 || line[8] != b' ' {
        return Err(Damage::NoChecksum);
    }
    let mut crc = 0u32;
    for &digit in &line[..8] {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return Err(Damage::NoChecksum),
        };
        crc = crc << 4 | u32::from(value);
    }
    let payload = &line[9..];
    if crc32fast::hash(payload) != crc {
        return Err(Damage::ChecksumMismatch);
    }
    Ok(payload)
}
