//! The operating-system calls memtrail makes through libc, each behind a safe function: signals
//! and process liveness, signal dispositions, resource limits, `sysconf`, the allocator's knobs,
//! a directory's entry count, a file's reserved blocks and a path's write access. Every `unsafe`
//! block of the library lives here but one: the spool's memory map (`record/spool.rs`), whose
//! safety rests on the spool's own rules for its file, so it stays where they are kept. (The
//! `memhog` test helper has its own.) `layers::tests` keeps it so.

use std::ffi::CString;
use std::io;
use std::path::Path;

/// Send `sig` to process `pid` (kill(2)).
pub(crate) fn kill(pid: u32, sig: i32) -> io::Result<()> {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    };
    // SAFETY: kill(2) takes no pointers; any pid and signal number are valid to ask for.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Send `sig` to every process of the process group `pgid` (kill(2) with `-pgid`).
pub(crate) fn kill_group(pgid: u32, sig: i32) -> io::Result<()> {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    };
    // SAFETY: as in `kill`; a negative pid names a process group.
    if unsafe { libc::kill(-pgid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a process with this pid exists (signal 0 checks without sending; EPERM means it exists
/// but belongs to another user).
pub(crate) fn pid_alive(pid: u32) -> bool {
    match kill(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// The disposition a signal can be set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// The signal's default action (SIGPIPE: end quietly).
    Default,
    /// Ignored (SIGXFSZ: a write past a file-size limit fails instead of killing the process).
    Ignore,
}

/// Set how this process takes `sig`.
pub(crate) fn set_disposition(sig: i32, d: Disposition) {
    let handler = match d {
        Disposition::Default => libc::SIG_DFL,
        Disposition::Ignore => libc::SIG_IGN,
    };
    // SAFETY: setting a disposition to SIG_DFL or SIG_IGN installs no handler code.
    unsafe { libc::signal(sig, handler) };
}

/// The soft limit on open files (RLIMIT_NOFILE), if it can be read.
pub(crate) fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    Some(limit.rlim_cur)
}

/// The CPU time this process has used, user and system together (getrusage(RUSAGE_SELF)).
pub(crate) fn cpu_time() -> std::time::Duration {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return std::time::Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
            + std::time::Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A positive `sysconf` value (page size, clock ticks per second), or None.
fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a constant; it has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// The size of a memory page in bytes.
pub(crate) fn page_size() -> Option<u64> {
    sysconf(libc::_SC_PAGESIZE)
}

/// Clock ticks per second (the unit of `/proc/PID/stat` times).
pub(crate) fn clock_ticks() -> Option<u64> {
    sysconf(libc::_SC_CLK_TCK)
}

/// glibc's allocator: at most `n` arenas (M_ARENA_MAX).
pub(crate) fn malloc_arena_max(n: i32) {
    // SAFETY: mallopt only tunes the allocator; M_ARENA_MAX takes any positive count.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, n.max(1)) };
}

/// glibc's allocator: hand every free page back to the kernel (`malloc_trim(0)`).
pub(crate) fn malloc_trim() {
    // SAFETY: malloc_trim only returns free memory to the kernel; 0 keeps no padding.
    unsafe { libc::malloc_trim(0) };
}

/// Make `file` `len` bytes long with its blocks allocated (posix_fallocate: ENOSPC shows here,
/// not as a fault on a later store into a mapping of it).
pub(crate) fn reserve(file: &std::fs::File, len: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: posix_fallocate on a descriptor the caller owns; it touches no memory of ours.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        err => Err(io::Error::from_raw_os_error(err)),
    }
}

/// Whether this process may write into the directory `dir` (access(2) with W_OK).
pub(crate) fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access only reads the NUL-terminated path it is given.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// The entries of an open directory whose names do not start with a dot (so not `.` and `..`;
/// `/proc` fd names are numbers), read from its start with getdents64 into one reused buffer:
/// `read_dir` would allocate a name per entry, and a process's fd directory is counted every tick.
pub(crate) fn count_entries(dir: &std::fs::File) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let fd = dir.as_raw_fd();
    // SAFETY: `fd` is an open directory that `dir` owns for the duration of this call.
    if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Not zeroed first: the kernel fills the first `n` bytes and only those are read.
    let mut space = std::mem::MaybeUninit::<[u8; 4096]>::uninit();
    let mut count = 0;
    loop {
        // SAFETY: the kernel writes at most 4096 bytes of `linux_dirent64` records into `space`.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, space.as_mut_ptr(), 4096usize) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n == 0 {
            return Ok(count);
        }
        // SAFETY: getdents64 returned `n` (at most 4096): those bytes of `space` are initialised.
        let buf = unsafe { std::slice::from_raw_parts(space.as_ptr().cast::<u8>(), n.min(4096)) };
        count += dirent_names(buf);
    }
}

/// How many `linux_dirent64` records in `buf` have a name that does not start with a dot. Each
/// record: d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1), then the name.
fn dirent_names(buf: &[u8]) -> u64 {
    let (mut at, mut count) = (0, 0);
    while at + 19 < buf.len() {
        let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
        if buf[at + 19] != b'.' {
            count += 1;
        }
        if reclen == 0 {
            break;
        }
        at += reclen;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
        assert!(kill(u32::MAX, 0).is_err());
    }

    #[test]
    fn a_directory_s_entries_are_counted_without_dot_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a", "b", "c"] {
            std::fs::write(dir.path().join(name), "").expect("file");
        }
        let f = std::fs::File::open(dir.path()).expect("open");
        assert_eq!(count_entries(&f).expect("count"), 3);
        // Read again from the start.
        assert_eq!(count_entries(&f).expect("count"), 3);
    }

    #[test]
    fn constants_and_limits_are_read() {
        assert!(page_size().is_some_and(|p| p >= 4096));
        assert!(clock_ticks().is_some_and(|t| t > 0));
        assert!(open_files_limit().is_some_and(|l| l > 0));
        assert!(writable(&std::env::temp_dir()));
        let before = cpu_time();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(cpu_time() > before, "{x}");
    }
}
