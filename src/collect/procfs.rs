//! Direct readers of Linux `/proc` files: one process's memory and identity, the system's memory and
//! pressure, and process discovery. Each reader parses one file into a plain struct and returns
//! `None` when the file is missing or unreadable (a process that exited, another user's process),
//! never panics. Reading `/proc/PID/stat` and `status` costs a few microseconds, so the sampler can
//! watch one pid without touching the rest of the machine; only discovery scans `/proc`. A watched
//! process's per-tick files are held open (`ProcFiles`) and re-read in place, which skips the path
//! walk of opening them again on every tick.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Kernel facts needed to turn `/proc` figures into bytes and Unix times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel {
    pub page_size: u64,
    pub clock_ticks: u64,
    pub boot_time_ms: i64,
}

impl Kernel {
    /// Read once per process: page size, clock ticks per second and boot time never change.
    pub fn get() -> Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        *KERNEL.get_or_init(|| {
            let page_size = crate::sys::page_size();
            let clock_ticks = crate::sys::clock_ticks();
            let boot_time_ms = fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| parse_btime(&s))
                .map(|secs| secs * 1000)
                .unwrap_or(0);
            Kernel {
                page_size: page_size.unwrap_or(4096),
                clock_ticks: clock_ticks.unwrap_or(100),
                boot_time_ms,
            }
        })
    }
}

fn parse_btime(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The fields of `/proc/PID/stat` memtrail uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProcStat {
    pub pid: u32,
    pub comm: String,
    /// R, S, D, Z (zombie), X (dead), ...
    pub state: char,
    pub ppid: u32,
    pub threads: u64,
    /// Start time in clock ticks since boot: with the pid, it tells a reused pid apart.
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

impl ProcStat {
    /// A zombie or dead process has exited: it holds no memory, only a pid not yet reaped.
    pub fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Process start as Unix milliseconds (stable for the life of the process and across reads).
    pub fn start_time_ms(&self, k: &Kernel) -> i64 {
        k.boot_time_ms + (self.start_ticks * 1000 / k.clock_ticks) as i64
    }
}

/// Parse the text of `/proc/PID/stat`. The command name sits in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    // Field 3 (state) comes first after the name; only fields up to 24 are needed, picked as
    // they pass (no vector of all 50).
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let mut at = 3;
    let mut field = |n: usize| {
        let v = fields.nth(n - at - 1)?.parse::<u64>().ok();
        at = n;
        v
    };
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid: field(4)? as u32,
        threads: field(20)?,
        start_ticks: field(22)?,
        vsize_bytes: field(23)?,
        rss_pages: field(24)?,
    })
}

/// Read a `/proc` (or cgroup) file whole. Such files report a size of 0, so `fs::read_to_string`
/// asks for it (`statx`) and then reads 32 bytes, 32, 64, ... doubling: seven reads for a
/// `stat`, nine for a `status`, on every tick. One 4 KiB buffer takes either in one read (and
/// one more that returns 0), and only grows for a longer file.
pub(crate) fn read_text(path: &Path) -> io::Result<String> {
    let mut buf = Vec::new();
    let len = fill(path, &mut buf)?;
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Read the file at `path` into `buf` (grown as needed, never shrunk); returns the length read.
fn fill(path: &Path, buf: &mut Vec<u8>) -> io::Result<usize> {
    fill_from(&fs::File::open(path)?, buf)
}

/// Read an open file whole from offset 0 (`pread`, so a held `/proc` file is re-read fresh and its
/// offset never matters) into `buf`; returns the length read.
fn fill_from(file: &fs::File, buf: &mut Vec<u8>) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

thread_local! {
    /// The buffer the per-tick reads reuse: no allocation or zeroing per file.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Read a `/proc` file into this thread's reused buffer and parse its text with `parse`.
fn parse_file<T>(path: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    let file = fs::File::open(path).ok()?;
    parse_open(&file, parse)
}

/// Re-read an open `/proc` file into this thread's reused buffer and parse its text with `parse`.
fn parse_open<T>(file: &fs::File, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    READ_BUF.with_borrow_mut(|buf| {
        let len = fill_from(file, buf).ok()?;
        parse(std::str::from_utf8(&buf[..len]).ok()?)
    })
}

thread_local! {
    /// System-wide files read every tick (`/proc/meminfo`, `/proc/pressure/memory`), opened once
    /// per thread and re-read in place like a watched process's files.
    static SYSTEM_FILES: std::cell::RefCell<Vec<(&'static str, fs::File)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Parse a system-wide `/proc` file held open by this thread (opened on first use; a file that
/// cannot be opened is tried again next time).
fn parse_system<T>(path: &'static str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    SYSTEM_FILES.with_borrow_mut(|files| {
        let at = match files.iter().position(|(p, _)| *p == path) {
            Some(at) => at,
            None => {
                files.push((path, fs::File::open(path).ok()?));
                files.len() - 1
            }
        };
        parse_open(&files[at].1, parse)
    })
}

fn proc_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

pub(crate) fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_file(&format!("/proc/{pid}/stat"), parse_stat)
}

/// Values (in kB, as the kernel prints them) of the named `Key:  N kB` lines of a status-like file.
/// Each key is found by a substring search, not a walk over every line: `/proc/meminfo` has about
/// 55 lines, of which the system sample wants four, every tick (24 k instructions a tick before).
fn kb_fields<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    keys.map(|key| kb_field(text, key))
}

/// The value of the line that starts with `key:`, if there is one.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let (at, _) = text.match_indices(key).find(|&(at, _)| {
        (at == 0 || bytes[at - 1] == b'\n') && bytes.get(at + key.len()) == Some(&b':')
    })?;
    text[at + key.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The memory lines of `/proc/PID/status` read each tick, in bytes: swap used (`VmSwap`), and the
/// resident set by kind of page: anonymous (heap, stacks, anonymous mappings: where a leak grows),
/// file-backed (mapped files, code) and shared memory (`RssAnon`, `RssFile`, `RssShmem`, Linux
/// 4.5 on). A line the kernel does not print is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct StatusMem {
    pub swap: Option<u64>,
    pub anon: Option<u64>,
    pub file: Option<u64>,
    pub shmem: Option<u64>,
}

/// `None` for a kernel thread (no `Vm` lines at all).
pub(crate) fn parse_status_mem(text: &str) -> Option<StatusMem> {
    let [swap, anon, file, shmem] = kb_fields(text, ["VmSwap", "RssAnon", "RssFile", "RssShmem"])
        .map(|kb| kb.map(|kb| kb * 1024));
    (swap.is_some() || anon.is_some()).then_some(StatusMem {
        swap,
        anon,
        file,
        shmem,
    })
}

pub(crate) fn read_status_mem(pid: u32) -> Option<StatusMem> {
    parse_file(&format!("/proc/{pid}/status"), parse_status_mem)
}

/// Number of open file descriptors; `None` when `/proc/PID/fd` is not readable (another user's process).
pub(crate) fn count_fds(pid: u32) -> Option<u64> {
    fds_in(&open_fd_dir(&proc_dir(pid))?)
}

/// A process's `fd` directory (`dir` is its `/proc/PID`), opened to be counted.
fn open_fd_dir(dir: &Path) -> Option<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir.join("fd"))
        .ok()
}

/// The descriptors in an open `fd` directory. Since Linux 6.2 its size is its number of entries
/// (the kernel counts the open-descriptor bitmap): one `fstat` instead of listing every
/// descriptor, which took a third of the reading time on a host of 1,000 processes (`perf`: 6 of
/// 19 ms a tick). An older kernel says 0, and so does a process without descriptors: then they
/// are counted.
fn fds_in(dir: &fs::File) -> Option<u64> {
    match dir.metadata() {
        Ok(m) if m.len() > 0 => Some(m.len()),
        _ => crate::sys::count_entries(dir).ok(),
    }
}

/// The files the sampler reads from one process every tick (`stat`, `status`, the `fd`
/// directory), opened once and re-read in place: a held file is read with `pread` from offset 0
/// and the directory is rewound, which skips the path walk and permission checks that opening
/// `/proc/PID/...` costs on each tick (three opens and closes per process; `bench/compare`'s
/// floor pays them). A held file stays bound to the process it was opened for: once that process
/// is reaped, reads fail (ESRCH) even if its pid is reused, so a reading never comes from a
/// stranger. Files that could not be opened (another user's `fd` directory) read as `None`.
#[derive(Debug)]
struct ProcFiles {
    stat: fs::File,
    status: Option<fs::File>,
    fd_dir: Option<fs::File>,
}

impl ProcFiles {
    /// Open the process's files; fails when `/proc/PID/stat` cannot be opened (no such process).
    fn open(pid: u32) -> io::Result<ProcFiles> {
        let dir = proc_dir(pid);
        Ok(ProcFiles {
            stat: fs::File::open(dir.join("stat"))?,
            status: fs::File::open(dir.join("status")).ok(),
            fd_dir: open_fd_dir(&dir),
        })
    }

    fn stat(&self) -> Option<ProcStat> {
        parse_open(&self.stat, parse_stat)
    }

    fn status_mem(&self) -> Option<StatusMem> {
        parse_open(self.status.as_ref()?, parse_status_mem)
    }

    fn fds(&self) -> Option<u64> {
        fds_in(self.fd_dir.as_ref()?)
    }
}

/// How the sampler reads one process each tick: through its held files when it has them, else by
/// path (past the sampler's limit of held files, or when they could not be opened).
#[derive(Debug)]
pub(crate) struct ProcReader {
    pid: u32,
    held: Option<ProcFiles>,
}

impl ProcReader {
    /// Hold the process's files open when `hold` (and they open), else read it by path.
    pub fn new(pid: u32, hold: bool) -> ProcReader {
        ProcReader {
            pid,
            held: hold.then(|| ProcFiles::open(pid).ok()).flatten(),
        }
    }

    pub(crate) fn holds_files(&self) -> bool {
        self.held.is_some()
    }

    pub(crate) fn stat(&self) -> Option<ProcStat> {
        match &self.held {
            Some(f) => f.stat(),
            None => read_stat(self.pid),
        }
    }

    pub(crate) fn status_mem(&self) -> Option<StatusMem> {
        match &self.held {
            Some(f) => f.status_mem(),
            None => read_status_mem(self.pid),
        }
    }

    pub fn fds(&self) -> Option<u64> {
        match &self.held {
            Some(f) => f.fds(),
            None => count_fds(self.pid),
        }
    }
}

/// The command line, arguments joined by spaces; empty for kernel threads.
pub(crate) fn read_cmdline(pid: u32) -> String {
    let raw = fs::read(proc_dir(pid).join("cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Proportional and unique set sizes from `/proc/PID/smaps_rollup`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rollup {
    pub pss: u64,
    pub uss: u64,
}

pub(crate) fn parse_smaps_rollup(text: &str) -> Option<Rollup> {
    let [pss, clean, dirty, huge] = kb_fields(
        text,
        ["Pss", "Private_Clean", "Private_Dirty", "Private_Hugetlb"],
    );
    Some(Rollup {
        pss: pss? * 1024,
        uss: (clean? + dirty? + huge.unwrap_or(0)) * 1024,
    })
}

/// Costly for a large process: the kernel walks its page tables (about 100 ms per 4 GB mapped).
pub(crate) fn read_smaps_rollup(pid: u32) -> Option<Rollup> {
    parse_smaps_rollup(&read_text(&proc_dir(pid).join("smaps_rollup")).ok()?)
}

/// How many file-backed mappings get a group of their own (the largest by RSS); the rest are
/// summed as `[other files]`.
pub(crate) const MAP_FILES: usize = 8;

/// The longest path a mapping group keeps, in bytes (cut at a character boundary).
const MAP_PATH_MAX: usize = 200;

/// Each mapping group's resident bytes from `/proc/PID/smaps`, largest first: `[heap]` (the brk
/// heap), `[stack]` (every thread's), `[anon]` (anonymous mappings: large mallocs, arenas, JIT),
/// `[shmem]` (SysV, `/dev/shm`, memfd, shared anonymous), the `files` largest mapped files by
/// path, `[other files]`, and `[other]` for the kernel's own (`[vdso]`, `[vvar]`). The four
/// anonymous groups are always there (0 when empty), so their series have no gaps.
pub(crate) fn parse_smaps_groups(text: &str, files: usize) -> Vec<(String, u64)> {
    let mut groups: Vec<(String, u64)> = ["[heap]", "[stack]", "[anon]", "[shmem]"]
        .map(|g| (g.to_string(), 0))
        .to_vec();
    let mut by_file: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut other = 0;
    let mut current: Option<&str> = None;
    for line in text.lines() {
        if let Some(path) = mapping_path(line) {
            current = Some(path);
        } else if let (Some(path), Some(kb)) = (current, line.strip_prefix("Rss:")) {
            let bytes = kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                * 1024;
            match map_group(path) {
                Some(i) => groups[i].1 += bytes,
                None if path.starts_with('[') => other += bytes,
                None => *by_file.entry(path).or_default() += bytes,
            }
        }
    }
    let mut files_rss: Vec<(&str, u64)> = by_file.into_iter().collect();
    files_rss.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let rest: u64 = files_rss.iter().skip(files).map(|f| f.1).sum();
    groups.extend(
        files_rss
            .iter()
            .take(files)
            .map(|(p, b)| (cut(p, MAP_PATH_MAX), *b)),
    );
    groups.push(("[other files]".to_string(), rest));
    groups.push(("[other]".to_string(), other));
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    groups
}

/// The path of a mapping's header line (`start-end perms offset dev inode [path]`), "" for an
/// anonymous one; `None` for a field line (`Rss:   12 kB`).
fn mapping_path(line: &str) -> Option<&str> {
    let range = line.split(' ').next()?;
    let (lo, hi) = range.split_once('-')?;
    if lo.is_empty() || !lo.bytes().chain(hi.bytes()).all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // Skip the five fixed fields; the rest (after the padding) is the path, spaces and all.
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = &rest[rest.find(' ').unwrap_or(rest.len())..];
    }
    Some(rest.trim())
}

/// The fixed group (index into the first four) of an anonymous or shared mapping; `None` for a
/// file or the kernel's own.
fn map_group(path: &str) -> Option<usize> {
    match path {
        "" => Some(2),
        "[heap]" => Some(0),
        p if p.starts_with("[stack") => Some(1),
        p if p.starts_with("[anon") => Some(2),
        p if p.starts_with("/dev/shm/")
            || p.starts_with("/SYSV")
            || p.starts_with("/memfd:")
            || p.starts_with("memfd:")
            || p.starts_with("/dev/zero") =>
        {
            Some(3)
        }
        _ => None,
    }
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Costly like smaps_rollup (the kernel walks the page tables), and larger: one block per mapping.
pub(crate) fn read_smaps_groups(pid: u32) -> Option<Vec<(String, u64)>> {
    Some(parse_smaps_groups(
        &read_text(&proc_dir(pid).join("smaps")).ok()?,
        MAP_FILES,
    ))
}

/// The pids of a process's direct children, from `/proc/PID/task/TID/children`.
/// `Err` when the kernel lacks that file (then callers fall back to a full scan).
pub(crate) fn children_of(pid: u32) -> io::Result<Vec<u32>> {
    let mut kids = Vec::new();
    for task in fs::read_dir(proc_dir(pid).join("task"))? {
        let path = task?.path().join("children");
        match fs::read_to_string(&path) {
            Ok(text) => kids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            ),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && !path.parent().is_some_and(Path::exists) =>
            {
                // The thread exited between listing and reading.
            }
            Err(e) => return Err(e),
        }
    }
    Ok(kids)
}

/// All pids currently in `/proc`.
pub(crate) fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every descendant of `root` (children, their children, ...), not including `root`.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = vec![root];
    let mut fallback: Option<Vec<(u32, u32)>> = None;
    while let Some(pid) = frontier.pop() {
        let kids = match (&fallback, children_of(pid)) {
            (None, Ok(kids)) => kids,
            (None, Err(_)) if !proc_dir(pid).exists() => Vec::new(),
            (cached, _) => {
                // No children files: one scan of every process's parent, reused for the whole walk.
                let table = match cached {
                    Some(t) => t.clone(),
                    None => {
                        let t: Vec<(u32, u32)> = all_pids()
                            .into_iter()
                            .filter_map(|p| read_stat(p).map(|s| (s.pid, s.ppid)))
                            .collect();
                        fallback = Some(t.clone());
                        t
                    }
                };
                table
                    .iter()
                    .filter(|(_, pp)| *pp == pid)
                    .map(|(p, _)| *p)
                    .collect()
            }
        };
        for kid in kids {
            if kid != root && !out.contains(&kid) {
                out.push(kid);
                frontier.push(kid);
            }
        }
    }
    out
}

/// System memory from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MemInfo {
    pub total: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl MemInfo {
    pub(crate) fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
    pub(crate) fn used_percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.used() as f64 * 100.0 / self.total as f64
        }
    }
    pub(crate) fn swap_used(&self) -> u64 {
        self.swap_total.saturating_sub(self.swap_free)
    }
}

pub(crate) fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let [total, available, swap_total, swap_free] =
        kb_fields(text, ["MemTotal", "MemAvailable", "SwapTotal", "SwapFree"]);
    Some(MemInfo {
        total: total? * 1024,
        available: available? * 1024,
        swap_total: swap_total.unwrap_or(0) * 1024,
        swap_free: swap_free.unwrap_or(0) * 1024,
    })
}

pub(crate) fn read_meminfo() -> Option<MemInfo> {
    parse_system("/proc/meminfo", parse_meminfo)
}

/// Memory pressure stall percentages (`avg10`) from a PSI file such as `/proc/pressure/memory`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pressure {
    pub some_avg10: f64,
    pub full_avg10: Option<f64>,
}

pub(crate) fn parse_pressure(text: &str) -> Option<Pressure> {
    let avg10 = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))?
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("avg10="))?
            .parse::<f64>()
            .ok()
    };
    Some(Pressure {
        some_avg10: avg10("some ")?,
        full_avg10: avg10("full "),
    })
}

pub(crate) fn read_pressure() -> Option<Pressure> {
    parse_system("/proc/pressure/memory", parse_pressure)
}

pub(crate) fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_text_reads_proc_files_and_long_files_whole() {
        // The same text as the standard reader, for files the kernel sizes as 0.
        for f in ["/proc/self/stat", "/proc/self/status", "/proc/meminfo"] {
            let ours = read_text(Path::new(f)).expect(f);
            let std = fs::read_to_string(f).expect(f);
            // Counters move between the two reads; the line structure does not.
            assert_eq!(ours.lines().count(), std.lines().count(), "{f}");
            assert!(ours.ends_with('\n'), "{f}");
        }
        // A file longer than the first buffer is read to its end.
        let dir = tempfile::tempdir().expect("tempdir");
        let long = dir.path().join("long");
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        fs::write(&long, &text).expect("write");
        assert_eq!(read_text(&long).expect("read"), text);
        assert!(read_text(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let text = "1234 (my (odd) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 \
                    4242 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(text).expect("parses");
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, "my (odd) app");
        assert_eq!(s.ppid, 1);
        assert_eq!(s.state, 'S');
        assert!(!s.exited());
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_ticks, 4242);
        assert_eq!(s.vsize_bytes, 123456789);
        assert_eq!(s.rss_pages, 2500);
        let k = Kernel {
            page_size: 4096,
            clock_ticks: 100,
            boot_time_ms: 1_000_000,
        };
        assert_eq!(s.start_time_ms(&k), 1_000_000 + 42_420);
    }

    #[test]
    fn zombie_counts_as_exited() {
        let text = "77 (sleep) Z 1 77 77 0 -1 4194308 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0 18446744073709551615";
        assert!(parse_stat(text).expect("parses").exited());
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = read_stat(std::process::id()).expect("own stat");
        assert!(me.rss_pages > 0 && me.threads >= 1);
        assert!(count_fds(std::process::id()).expect("own fds") >= 3);
        let k = Kernel::get();
        let start = me.start_time_ms(&k);
        let now = chrono::Utc::now().timestamp_millis();
        assert!(
            start <= now && start > now - 24 * 3600 * 1000,
            "start {start} now {now}"
        );
    }

    #[test]
    fn held_files_reread_fresh_and_die_with_their_process() -> Result<(), Box<dyn std::error::Error>>
    {
        use std::io::{BufRead, Write};
        use std::process::{Command, Stdio};
        // A child holding ~290 descriptors (more than one getdents64 buffer of names), which
        // opens one more when told to and then waits in a builtin `read`: an external command
        // there (`sleep`) is exec'd in place by bash and opens its own files while being counted.
        let mut child = Command::new("bash")
            .args([
                "-c",
                "for i in $(seq 10 300); do eval \"exec $i</dev/null\"; done; echo ready; \
                 read x; exec 400</dev/null; echo more; read y",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let mut out = io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        assert_eq!(line.trim(), "ready");
        let files = ProcFiles::open(pid)?;
        let before = files.fds().ok_or("fds")?;
        assert!(before >= 291, "{before} descriptors");
        assert_eq!(
            Some(before),
            count_fds(pid),
            "held and by-path counts agree"
        );
        assert_eq!(
            before as usize,
            fs::read_dir(format!("/proc/{pid}/fd"))?.count(),
            "the directory's size (Linux 6.2 on) is its number of entries"
        );
        assert_eq!(
            files.stat().map(|s| s.start_ticks),
            read_stat(pid).map(|s| s.start_ticks)
        );
        assert_eq!(
            files.status_mem().map(|m| m.swap),
            read_status_mem(pid).map(|m| m.swap)
        );
        assert!(
            files
                .status_mem()
                .and_then(|m| m.anon)
                .is_some_and(|a| a > 0)
        );
        writeln!(child.stdin.as_mut().ok_or("no stdin")?, "go")?;
        line.clear();
        out.read_line(&mut line)?;
        assert_eq!(line.trim(), "more");
        assert_eq!(
            files.fds(),
            Some(before + 1),
            "a held directory is read afresh"
        );
        child.kill()?;
        child.wait()?;
        assert!(files.stat().is_none(), "a reaped process reads as gone");
        assert!(files.fds().is_none() && files.status_mem().is_none());
        Ok(())
    }

    #[test]
    fn smaps_mappings_are_grouped_by_what_they_are() {
        let block = |header: &str, rss_kb: u64| {
            format!(
                "{header}\nSize:            9999 kB\nRss:   {rss_kb} kB\nPss:   1 kB\nVmFlags: rd wr mr mw me ac\n"
            )
        };
        let mut text = String::new();
        text += &block(
            "55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]",
            400,
        );
        text += &block("7f0000000000-7f0000100000 rw-p 00000000 00:00 0 ", 1000);
        text += &block(
            "7f0000200000-7f0000300000 rw-p 00000000 00:00 0                          [anon:arena]",
            24,
        );
        text += &block(
            "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
            132,
        );
        text += &block(
            "7f1000000000-7f1000100000 rw-s 00000000 00:01 99                         /dev/shm/pool (deleted)",
            64,
        );
        text += &block(
            "7f2000000000-7f2000100000 r--s 00000000 08:01 1234                       /var/lib/app/index data.bin",
            2048,
        );
        text += &block(
            "7f3000000000-7f3000100000 r-xp 00000000 08:01 1235                       /usr/lib/libc.so.6",
            1500,
        );
        text += &block(
            "7f3000100000-7f3000200000 r--p 00100000 08:01 1235                       /usr/lib/libc.so.6",
            100,
        );
        text += &block(
            "7f4000000000-7f4000001000 r-xp 00000000 08:01 1236                       /usr/lib/libm.so.6",
            8,
        );
        text += &block(
            "7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0                          [vdso]",
            4,
        );
        let groups = parse_smaps_groups(&text, 2);
        let get = |g: &str| groups.iter().find(|(n, _)| n == g).map(|(_, b)| *b / 1024);
        assert_eq!(get("[heap]"), Some(400));
        assert_eq!(
            get("[anon]"),
            Some(1024),
            "unnamed and named anonymous mappings"
        );
        assert_eq!(get("[stack]"), Some(132));
        assert_eq!(get("[shmem]"), Some(64));
        assert_eq!(
            get("/var/lib/app/index data.bin"),
            Some(2048),
            "a path with a space"
        );
        assert_eq!(
            get("/usr/lib/libc.so.6"),
            Some(1600),
            "a file's mappings summed"
        );
        assert_eq!(
            get("/usr/lib/libm.so.6"),
            None,
            "beyond the largest 2 files"
        );
        assert_eq!(get("[other files]"), Some(8));
        assert_eq!(get("[other]"), Some(4));
        assert_eq!(groups[0].0, "/var/lib/app/index data.bin", "largest first");
        // Nothing mapped: the four anonymous groups are still there, at 0.
        let empty = parse_smaps_groups("", MAP_FILES);
        assert_eq!(empty.iter().filter(|g| g.1 == 0).count(), 6, "{empty:?}");
        // This process's own smaps parses, and its heap and stack are resident.
        let own = read_smaps_groups(std::process::id()).expect("own smaps");
        assert!(own.iter().any(|(g, b)| g == "[stack]" && *b > 0), "{own:?}");
    }

    #[test]
    fn status_memory_and_meminfo() {
        let status = "Name:\tx\nVmRSS:\t 70 kB\nRssAnon:\t     40 kB\nRssFile:\t  25 kB\nRssShmem:\t 5 kB\nVmSwap:\t     12 kB\n";
        assert_eq!(
            parse_status_mem(status),
            Some(StatusMem {
                swap: Some(12 * 1024),
                anon: Some(40 * 1024),
                file: Some(25 * 1024),
                shmem: Some(5 * 1024),
            })
        );
        // An older kernel without the Rss lines: swap only.
        let old = parse_status_mem("Name:\tx\nVmSwap:\t     12 kB\n").expect("swap");
        assert_eq!(
            (old.swap, old.anon, old.file),
            (Some(12 * 1024), None, None)
        );
        assert_eq!(parse_status_mem("Name:\tkthreadd\n"), None);
        let m = parse_meminfo(
            "MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    250 kB\nSwapTotal: 100 kB\nSwapFree: 40 kB\n",
        )
        .expect("meminfo");
        assert_eq!(m.used(), 750 * 1024);
        assert!((m.used_percent() - 75.0).abs() < 1e-9);
        assert_eq!(m.swap_used(), 60 * 1024);
        // Held open per thread: every read is whole and agrees with a fresh open.
        let by_path = read_text(Path::new("/proc/meminfo"))
            .ok()
            .as_deref()
            .and_then(parse_meminfo)
            .expect("meminfo by path");
        for _ in 0..3 {
            let held = read_meminfo().expect("held meminfo");
            assert_eq!(held.total, by_path.total);
        }
    }

    #[test]
    fn kb_fields_match_only_whole_keys_at_line_starts() {
        let text = "SwapPss: 1 kB\nPss_Anon: 2 kB\nActive(anon): 3 kB\nPss: 4 kB\nActive: 5 kB\nX Pss: 6 kB\n";
        assert_eq!(
            kb_fields(text, ["Pss", "Active", "SwapPss", "Missing", "Pss_Anon"]),
            [Some(4), Some(5), Some(1), None, Some(2)]
        );
        assert_eq!(kb_fields("Pss:", ["Pss"]), [None]);
        // Every line of the real /proc/meminfo, against a walk over its lines.
        let text = read_text(Path::new("/proc/meminfo")).expect("meminfo");
        for line in text.lines() {
            let (key, rest) = line.split_once(':').expect("key: value");
            let walked = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok());
            assert_eq!(kb_field(&text, key), walked, "{line}");
        }
    }

    #[test]
    fn smaps_rollup_pss_and_uss() {
        let text = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss: 900 kB\nPss: 500 kB\n\
                    Shared_Clean: 300 kB\nPrivate_Clean: 100 kB\nPrivate_Dirty: 250 kB\nSwap: 0 kB\n";
        assert_eq!(
            parse_smaps_rollup(text),
            Some(Rollup {
                pss: 500 * 1024,
                uss: 350 * 1024
            })
        );
    }

    #[test]
    fn pressure_lines() {
        let p = parse_pressure(
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=12\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=3\n",
        )
        .expect("psi");
        assert_eq!(
            p,
            Pressure {
                some_avg10: 1.5,
                full_avg10: Some(0.25)
            }
        );
        assert_eq!(parse_pressure("garbage"), None);
    }

    #[test]
    fn descendants_of_a_shell_include_grandchildren() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        let mut found = Vec::new();
        for _ in 0..100 {
            found = descendants(pid);
            if found.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.len() >= 2, "descendants {found:?}");
    }
}
