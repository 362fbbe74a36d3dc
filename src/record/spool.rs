//! The spool: the ticks a recorder holds between commits (`commit_interval`), kept as they are
//! taken in a file beside the database (`<db>-spool`), so a crash loses none of them while SQLite
//! is committed only once a second. The next recorder writes what a crashed one left there before
//! it starts. Writing a tick twice changes nothing (samples are upserted).
//!
//! The file is mapped into memory and a tick is appended by copying it there: no system call per
//! tick. (A `write` per tick and an `ftruncate` per commit cost ~11 µs a tick at 10 Hz, 6 % of a
//! lean recording, in `bench/ab`.) Emptying it after a commit only puts the end mark back at the
//! start, so the file keeps older records past the end mark; a record is therefore a line
//! `SEQ CHECKSUM JSON`, the sequence numbers of the records after the last emptying are
//! consecutive, each is followed by a NUL byte (the end mark, overwritten by the next record), and
//! the reader stops at the first NUL, at a gap in the sequence, or at a record whose checksum
//! fails (one cut short by the crash). Space is reserved with `posix_fallocate` before it is
//! mapped, so a full disk is an error here, not a SIGBUS at a later store.
//!
//! Like SQLite's WAL with `synchronous = NORMAL`, the spool is never `fsync`ed: it survives the
//! recorder's crash (`kill -9`, a panic, the OOM killer), not the machine's. The file is removed
//! at a clean stop. Truncating it under a running recorder would kill it (SIGBUS), as truncating
//! SQLite's `-shm` file would.

use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::model::Snapshot;

/// Past this size the spool stops growing (ticks then wait in memory only, as while the database
/// refuses writes); it only grows while commits are failing.
const MAX_BYTES: usize = 64 * 1024 * 1024;
/// The first mapping: room for a second of ticks of a few hundred targets.
const MIN_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error(
        "cannot read the spool {path} (ticks a crashed recorder held): {cause}; move it away to start without them"
    )]
    Read { path: PathBuf, cause: io::Error },
    #[error(
        "the spool {path} is not a regular file (a FIFO, device or directory is never one memtrail wrote); move it away to start"
    )]
    NotAFile { path: PathBuf },
    #[error(
        "the spool {path} is {len} bytes, more than a spool ever holds ({MAX_BYTES}): it is not one memtrail wrote; move it away to start"
    )]
    TooLarge { path: PathBuf, len: u64 },
}

pub(crate) struct Spool {
    path: PathBuf,
    file: Option<File>,
    map: Option<memmap2::MmapMut>,
    /// Where the end mark is: the bytes of the records since the last emptying.
    end: usize,
    /// The sequence number of the next record.
    seq: u64,
    json: Vec<u8>,
    head: Vec<u8>,
}

/// What a crashed recorder left in the spool.
#[derive(Debug, Default)]
pub(crate) struct Leftover {
    pub ticks: Vec<Snapshot>,
    /// A last record cut short by the crash (that tick is lost).
    pub torn: bool,
}

pub(crate) fn path_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-spool");
    PathBuf::from(name)
}

/// SipHash-1-3 of a record's JSON, with fixed keys: the same in every build.
fn checksum(json: &[u8]) -> u64 {
    let mut h = siphasher::sip::SipHasher13::new();
    h.write(json);
    h.finish()
}

impl Spool {
    pub fn new(db: &Path) -> Spool {
        Spool {
            path: path_for(db),
            file: None,
            map: None,
            end: 0,
            seq: 1,
            json: Vec::with_capacity(1024),
            head: Vec::with_capacity(64),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one tick. Values that are not finite are left out, as the store leaves them out.
    pub(crate) fn append(&mut self, snap: &Snapshot) -> io::Result<()> {
        self.json.clear();
        let finite = snap
            .targets
            .iter()
            .all(|t| t.values.iter().all(|v| v.value.is_finite()));
        if finite {
            serde_json::to_writer(&mut self.json, snap)?;
        } else {
            let mut clean = snap.clone();
            for t in &mut clean.targets {
                t.values.retain(|v| v.value.is_finite());
            }
            serde_json::to_writer(&mut self.json, &clean)?;
        }
        self.head.clear();
        write!(self.head, "{} {:016x} ", self.seq, checksum(&self.json))?;
        let start = self.end;
        let stop = start + self.head.len() + self.json.len() + 1;
        // The record, then the end mark after it.
        self.reserve_room(stop + 1)?;
        let Some(map) = self.map.as_mut() else {
            return Err(io::Error::other("the spool is not mapped"));
        };
        map[start..start + self.head.len()].copy_from_slice(&self.head);
        map[start + self.head.len()..stop - 1].copy_from_slice(&self.json);
        map[stop - 1] = b'\n';
        map[stop] = 0;
        self.end = stop;
        self.seq += 1;
        Ok(())
    }

    /// Make the mapping at least `len` bytes long: created, or grown (doubling), on first need.
    fn reserve_room(&mut self, len: usize) -> io::Result<()> {
        let have = self.map.as_ref().map_or(0, |m| m.len());
        if len > have {
            let want = len.next_power_of_two().max(MIN_BYTES);
            if want > MAX_BYTES {
                return Err(io::Error::other(format!(
                    "the spool is over {} MiB (commits are failing): further ticks wait in memory only",
                    MAX_BYTES >> 20
                )));
            }
            if self.file.is_none() {
                // A spool left by a crash was written to the database before recording began.
                self.file = Some(
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&self.path)?,
                );
            }
            let Some(file) = &self.file else {
                return Err(io::Error::other("the spool file is not open"));
            };
            crate::sys::reserve(file, want)?;
            self.map = None;
            // SAFETY: the file is ours (`<db>-spool`, behind the recorder's lock) and is only
            // grown while mapped, never shrunk; its blocks are reserved, so a store cannot fault
            // for want of space.
            self.map = Some(unsafe { memmap2::MmapOptions::new().len(want).map_mut(file)? });
        }
        Ok(())
    }

    /// Every held tick is committed: the end mark goes back to the start (a store, which cannot
    /// fail).
    pub(crate) fn clear(&mut self) {
        if let Some(map) = &mut self.map {
            map[0] = 0;
        }
        self.end = 0;
    }

    /// A clean stop with nothing held: the file goes.
    pub fn remove(self) -> io::Result<()> {
        let Spool {
            path, map, file, ..
        } = self;
        drop(map);
        drop(file);
        remove_if_there(&path)
    }
}

/// Read what a crashed recorder left in the spool of `db` (nothing when there is no spool).
pub(crate) fn leftover(db: &Path) -> Result<Leftover, SpoolError> {
    use std::io::Read;
    let path = path_for(db);
    // Looked at before it is opened: opening a FIFO for reading would wait for a writer forever.
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Leftover::default()),
        Err(cause) => return Err(SpoolError::Read { path, cause }),
    };
    if !meta.is_file() {
        return Err(SpoolError::NotAFile { path });
    }
    if meta.len() > MAX_BYTES as u64 {
        return Err(SpoolError::TooLarge {
            path,
            len: meta.len(),
        });
    }
    let mut bytes = Vec::new();
    let read = File::open(&path).and_then(|f| f.take(MAX_BYTES as u64).read_to_end(&mut bytes));
    if let Err(cause) = read {
        return Err(SpoolError::Read { path, cause });
    }
    let records = bytes.split(|b| *b == 0).next().unwrap_or_default();
    let mut out = Leftover::default();
    let mut expect = None;
    for line in records.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match record(line) {
            Some((seq, snap)) if expect.is_none_or(|e| e == seq) => {
                out.ticks.push(snap);
                expect = Some(seq + 1);
            }
            // A record cut short by the crash (it overwrote older ones: what follows is stale).
            _ => {
                out.torn = true;
                break;
            }
        }
    }
    Ok(out)
}

/// One `SEQ CHECKSUM JSON` record, if it is whole.
fn record(line: &[u8]) -> Option<(u64, Snapshot)> {
    let text = std::str::from_utf8(line).ok()?;
    let (seq, rest) = text.split_once(' ')?;
    let (sum, json) = rest.split_once(' ')?;
    if u64::from_str_radix(sum, 16).ok()? != checksum(json.as_bytes()) {
        return None;
    }
    Some((seq.parse().ok()?, serde_json::from_str(json).ok()?))
}

/// Empty the spool of `db` once its ticks are written (kept if emptying fails: writing them again
/// changes nothing).
pub(crate) fn discard(db: &Path) -> io::Result<()> {
    remove_if_there(&path_for(db))
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, TargetKey, TargetSample, Unit, Value};

    fn tick(ts_ms: i64, rss: f64) -> Snapshot {
        Snapshot {
            ts_ms,
            targets: vec![TargetSample {
                key: TargetKey {
                    kind: Kind::Process,
                    pid: Some(42),
                    start_time_ms: Some(1_000),
                    name: "api \"v2\"".into(),
                },
                cmdline: "api --port 80".into(),
                values: vec![
                    Value::new("rss", Unit::Bytes, rss),
                    Value::new("threads", Unit::Count, 3.0),
                ],
            }],
            gone: vec![TargetKey::system()],
        }
    }

    /// The byte range of record `n` (1-based, counting from the start of the file).
    fn record_span(bytes: &[u8], n: usize) -> std::ops::Range<usize> {
        let mut start = 0;
        for _ in 1..n {
            start += bytes[start..]
                .iter()
                .position(|b| *b == b'\n')
                .expect("record")
                + 1;
        }
        let len = bytes[start..]
            .iter()
            .position(|b| *b == b'\n')
            .expect("record");
        start..start + len
    }

    #[test]
    fn held_ticks_come_back_after_a_crash_and_a_torn_record_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("m.db");
        let mut spool = Spool::new(&db);
        spool.append(&tick(1, 10.0)).expect("append");
        spool.append(&tick(2, f64::NAN)).expect("append");
        spool.append(&tick(3, 30.0)).expect("append");
        drop(spool); // a crash: nothing is removed
        // The crash came while the third record was being copied: part of it is missing.
        let path = path_for(&db);
        let mut bytes = std::fs::read(&path).expect("read");
        let third = record_span(&bytes, 3);
        bytes[third.end - 5] = b'?';
        std::fs::write(&path, &bytes).expect("write");
        let left = leftover(&db).expect("read");
        assert!(left.torn);
        let mut second = tick(2, 0.0);
        second.targets[0].values.remove(0);
        assert_eq!(left.ticks, vec![tick(1, 10.0), second]);
        discard(&db).expect("discard");
        assert!(leftover(&db).expect("read").ticks.is_empty());
    }

    #[test]
    fn records_from_before_an_emptying_are_never_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("m.db");
        let path = path_for(&db);
        let mut spool = Spool::new(&db);
        for ts in 1..=3 {
            spool.append(&tick(ts, 10.0)).expect("append");
        }
        spool.clear();
        assert!(leftover(&db).expect("read").ticks.is_empty(), "emptied");
        // Record 4 is exactly as long as record 1, which it overwrites; records 2 and 3 stay in
        // the file, whole and with valid checksums, past the end mark.
        spool.append(&tick(4, 10.0)).expect("append");
        let left = leftover(&db).expect("read");
        assert_eq!((left.ticks, left.torn), (vec![tick(4, 10.0)], false));
        // Had the crash come after record 4 but before its end mark, the reader would meet
        // record 2 next: older, so out of sequence, and not read.
        let mut bytes = std::fs::read(&path).expect("read");
        let fourth = record_span(&bytes, 1);
        assert_eq!(bytes[fourth.end + 1], 0, "the end mark follows the record");
        bytes[fourth.end + 1] = b'2'; // as record 2 began before the end mark overwrote it
        assert!(
            bytes[fourth.end + 1..].starts_with(b"2 "),
            "record 2 is next"
        );
        std::fs::write(&path, &bytes).expect("write");
        let left = leftover(&db).expect("read");
        assert_eq!((left.ticks, left.torn), (vec![tick(4, 10.0)], true));
        drop(spool);
    }

    #[test]
    fn the_spool_grows_while_commits_fail_and_a_clean_stop_removes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("m.db");
        let mut spool = Spool::new(&db);
        let ticks: Vec<Snapshot> = (0..400).map(|ts| tick(ts, ts as f64)).collect();
        for t in &ticks {
            spool.append(t).expect("append");
        }
        let len = std::fs::metadata(path_for(&db)).expect("file").len();
        assert!(
            len > MIN_BYTES as u64,
            "grown past the first mapping: {len}"
        );
        assert_eq!(leftover(&db).expect("read").ticks, ticks);
        spool.clear();
        spool.append(&tick(1000, 1.0)).expect("append");
        assert_eq!(leftover(&db).expect("read").ticks, vec![tick(1000, 1.0)]);
        spool.remove().expect("remove");
        assert!(!path_for(&db).exists());
    }

    /// The reader of the old JSON-lines spool is gone (only a crash of a memtrail from before
    /// session 6 could leave one): such a file is no records, reported as torn, never misread.
    #[test]
    fn a_spool_in_the_old_json_lines_format_is_not_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("m.db");
        let mut text = String::new();
        for ts in [1, 2] {
            text += &serde_json::to_string(&tick(ts, 5.0)).expect("json");
            text.push('\n');
        }
        std::fs::write(path_for(&db), text).expect("write");
        let left = leftover(&db).expect("read");
        assert!(left.ticks.is_empty());
        assert!(left.torn);
    }
}
