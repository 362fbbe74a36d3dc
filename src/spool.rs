//! The spool: the ticks a recorder holds between commits (`commit_interval`), appended as they are
//! taken to a file beside the database (`<db>-spool`, one JSON line per tick), so a crash loses
//! none of them while SQLite is committed only once a second. The file is emptied whenever every
//! held tick is committed and removed at a clean stop; the next recorder writes what a crashed one
//! left there before it starts. Writing a tick twice changes nothing (samples are upserted), so a
//! spool that also holds committed ticks is harmless.
//!
//! Like SQLite's WAL with `synchronous = NORMAL`, the spool is written without `fsync`: it survives
//! the recorder's crash (`kill -9`, a panic, the OOM killer), not the machine's.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::model::Snapshot;

/// Past this size the spool stops growing (ticks then wait in memory only, as while the database
/// refuses writes); it only grows while commits are failing.
const MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "cannot read the spool {path} (ticks a crashed recorder held): {source}; move it away to start without them"
    )]
    Read { path: PathBuf, source: io::Error },
}

pub struct Spool {
    path: PathBuf,
    file: Option<File>,
    bytes: u64,
    line: Vec<u8>,
}

/// What a crashed recorder left in the spool.
#[derive(Debug, Default)]
pub struct Leftover {
    pub ticks: Vec<Snapshot>,
    /// A last line cut short by the crash (that tick is lost).
    pub torn: bool,
}

pub fn path_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-spool");
    PathBuf::from(name)
}

impl Spool {
    pub fn new(db: &Path) -> Spool {
        Spool {
            path: path_for(db),
            file: None,
            bytes: 0,
            line: Vec::with_capacity(1024),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one tick (one `write`). Values that are not finite are left out, as the store
    /// leaves them out.
    pub fn append(&mut self, snap: &Snapshot) -> io::Result<()> {
        if self.bytes >= MAX_BYTES {
            return Err(io::Error::other(format!(
                "the spool is over {} MiB (commits are failing): further ticks wait in memory only",
                MAX_BYTES >> 20
            )));
        }
        self.line.clear();
        let finite = snap
            .targets
            .iter()
            .all(|t| t.values.iter().all(|v| v.value.is_finite()));
        if finite {
            serde_json::to_writer(&mut self.line, snap)?;
        } else {
            let mut clean = snap.clone();
            for t in &mut clean.targets {
                t.values.retain(|v| v.value.is_finite());
            }
            serde_json::to_writer(&mut self.line, &clean)?;
        }
        self.line.push(b'\n');
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        if let Some(f) = &mut self.file {
            f.write_all(&self.line)?;
            self.bytes += self.line.len() as u64;
        }
        Ok(())
    }

    /// Every held tick is committed: empty the file (appends start again at its beginning).
    pub fn clear(&mut self) -> io::Result<()> {
        if self.bytes > 0
            && let Some(f) = &self.file
        {
            f.set_len(0)?;
            self.bytes = 0;
        }
        Ok(())
    }

    /// A clean stop with nothing held: the file goes.
    pub fn remove(self) -> io::Result<()> {
        remove_if_there(&self.path)
    }
}

/// Read what a crashed recorder left in the spool of `db` (nothing when there is no spool).
pub fn leftover(db: &Path) -> Result<Leftover, SpoolError> {
    let path = path_for(db);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Leftover::default()),
        Err(source) => return Err(SpoolError::Read { path, source }),
    };
    let mut out = Leftover::default();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Snapshot>(line) {
            Ok(snap) => out.ticks.push(snap),
            // Only a crash mid-append leaves a bad line, and it is the last one.
            Err(_) => {
                out.torn = true;
                break;
            }
        }
    }
    Ok(out)
}

/// Empty the spool of `db` once its ticks are written (kept if emptying fails: writing them again
/// changes nothing).
pub fn discard(db: &Path) -> io::Result<()> {
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

    #[test]
    fn held_ticks_come_back_after_a_crash_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("m.db");
        let mut spool = Spool::new(&db);
        spool.append(&tick(1, 10.0)).expect("append");
        spool.append(&tick(2, f64::NAN)).expect("append");
        // A crash mid-append: half a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(path_for(&db))
            .expect("open");
        f.write_all(br#"{"ts_ms":3,"targ"#).expect("write");
        drop(spool);
        let left = leftover(&db).expect("read");
        assert!(left.torn);
        let mut second = tick(2, 0.0);
        second.targets[0].values.remove(0);
        assert_eq!(left.ticks, vec![tick(1, 10.0), second]);
        discard(&db).expect("discard");
        assert!(leftover(&db).expect("read").ticks.is_empty());
    }

    #[test]
    fn a_cleared_spool_starts_again_and_a_clean_stop_removes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("m.db");
        let mut spool = Spool::new(&db);
        spool.append(&tick(1, 10.0)).expect("append");
        spool.clear().expect("clear");
        spool.append(&tick(2, 20.0)).expect("append");
        assert_eq!(leftover(&db).expect("read").ticks, vec![tick(2, 20.0)]);
        spool.clear().expect("clear");
        assert_eq!(
            std::fs::metadata(path_for(&db)).expect("file").len(),
            0,
            "cleared"
        );
        spool.remove().expect("remove");
        assert!(!path_for(&db).exists());
    }
}
