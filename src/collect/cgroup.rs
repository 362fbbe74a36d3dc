//! cgroups as targets: finds the memory cgroup hierarchy (v2, or the v1 memory controller), turns
//! `--cgroup PATH`, `--unit NAME` and a process's membership into a group directory, and reads a
//! group's memory against its own limit. What matters inside a container or a systemd unit is not
//! the host's memory but the group's limit: the kernel reclaims and then OOM-kills at that limit.
//! Readers take a directory and return `None` when the group is gone; they never panic.

use std::fs;
use std::path::{Path, PathBuf};

/// v1 reports "no limit" as the largest page-aligned counter value; anything this large is none.
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no memory cgroup hierarchy is readable: neither cgroup v2 with the memory controller nor the \
         cgroup v1 memory controller is mounted (see /proc/self/mountinfo). Run memtrail where \
         /sys/fs/cgroup is visible (in a container: mount it read-only)"
    )]
    NoHierarchy,
    #[error(
        "cgroup {given:?} not found (looked for {}): give a directory of the {version} memory hierarchy, \
         e.g. /system.slice/nginx.service, relative to {} or absolute",
        .looked.display(), .root.display()
    )]
    NotFound {
        given: String,
        looked: PathBuf,
        root: PathBuf,
        version: Version,
    },
    #[error(
        "cgroup {given:?} is outside the memory hierarchy at {}: give a path under it",
        .root.display()
    )]
    Outside { given: String, root: PathBuf },
    #[error(
        "no cgroup found for unit {0}: is it running (`systemctl status {0}`)? Or give its cgroup with --cgroup"
    )]
    UnitNotFound(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        })
    }
}

/// The mounted memory hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// Where it is mounted (e.g. /sys/fs/cgroup or /sys/fs/cgroup/memory).
    pub mount: PathBuf,
    /// The cgroup path the mount shows at its top ("/" unless a container sees only its part).
    pub mount_root: String,
}

/// A group to read: its path in the hierarchy (the target's name) and its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub name: String,
    pub dir: PathBuf,
    pub version: Version,
}

impl Hierarchy {
    /// The hierarchy memtrail reads: cgroup v2 when its root offers the memory controller, else the
    /// v1 memory controller (hybrid hosts mount both, with memory on v1).
    pub fn detect() -> Result<Hierarchy, CgroupError> {
        let text =
            fs::read_to_string("/proc/self/mountinfo").map_err(|_| CgroupError::NoHierarchy)?;
        Self::from_mountinfo(&text, |mount| {
            fs::read_to_string(mount.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"))
        })
        .ok_or(CgroupError::NoHierarchy)
    }

    /// Pick the hierarchy from /proc/self/mountinfo; `v2_has_memory` says whether a cgroup2 mount
    /// offers the memory controller.
    pub(crate) fn from_mountinfo(
        text: &str,
        v2_has_memory: impl Fn(&Path) -> bool,
    ) -> Option<Hierarchy> {
        let mut v1 = None;
        for line in text.lines() {
            // id parent major:minor root mount-point options [optional...] - fstype source super
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(mount), Some(fstype)) =
                (fields.get(3), fields.get(4), right.first())
            else {
                continue;
            };
            let mount = PathBuf::from(unescape(mount));
            let h = |version| Hierarchy {
                version,
                mount: mount.clone(),
                mount_root: unescape(root),
            };
            match *fstype {
                "cgroup2" if v2_has_memory(&mount) => return Some(h(Version::V2)),
                "cgroup"
                    if v1.is_none()
                        && right
                            .get(2)
                            .is_some_and(|o| o.split(',').any(|opt| opt == "memory")) =>
                {
                    v1 = Some(h(Version::V1));
                }
                _ => {}
            }
        }
        v1
    }

    /// `--cgroup PATH`: absolute under the mount, or a path in the hierarchy (`/a/b` or `a/b`).
    pub(crate) fn resolve(&self, given: &str) -> Result<Group, CgroupError> {
        let p = Path::new(given);
        let dir = if p.starts_with(&self.mount) {
            p.to_path_buf()
        } else {
            self.dir_of(given)
        };
        if !self.is_group(&dir) {
            if p.is_absolute() && p.is_dir() && !p.starts_with(&self.mount) {
                return Err(CgroupError::Outside {
                    given: given.to_string(),
                    root: self.mount.clone(),
                });
            }
            return Err(CgroupError::NotFound {
                given: given.to_string(),
                looked: dir,
                root: self.mount.clone(),
                version: self.version,
            });
        }
        let rel = dir
            .strip_prefix(&self.mount)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        Ok(self.group(&rel, dir))
    }

    /// `--unit NAME[.service]`: systemd's ControlGroup when systemctl answers, else the first
    /// directory of that name in the hierarchy (breadth first, a few levels deep).
    pub(crate) fn resolve_unit(&self, unit: &str) -> Result<Group, CgroupError> {
        let unit = if unit.contains('.') {
            unit.to_string()
        } else {
            format!("{unit}.service")
        };
        if let Ok(out) = std::process::Command::new("systemctl")
            .args(["show", "--property=ControlGroup", "--value", &unit])
            .stderr(std::process::Stdio::null())
            .output()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && path.starts_with('/') && path != "/" {
                let dir = self.dir_of(&path);
                if self.is_group(&dir) {
                    return Ok(self.group(Path::new(&path), dir));
                }
            }
        }
        let mut level = vec![self.mount.clone()];
        for _ in 0..6 {
            let mut next = Vec::new();
            for dir in &level {
                let Ok(entries) = fs::read_dir(dir) else {
                    continue;
                };
                for e in entries.flatten() {
                    if !e.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    let path = e.path();
                    if e.file_name().to_str() == Some(unit.as_str()) {
                        let rel = path
                            .strip_prefix(&self.mount)
                            .unwrap_or(&path)
                            .to_path_buf();
                        return Ok(self.group(&rel, path));
                    }
                    next.push(path);
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        Err(CgroupError::UnitNotFound(unit))
    }

    /// The memory cgroup a process is in (from /proc/PID/cgroup), if this hierarchy shows it.
    pub(crate) fn of_pid(&self, pid: u32) -> Option<Group> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let path = membership(&text, self.version)?;
        // A container that sees only its part of the tree has its own group at the mount's top.
        let inside = path
            .strip_prefix(self.mount_root.trim_end_matches('/'))
            .unwrap_or(path);
        let dir = self.dir_of(inside);
        self.is_group(&dir)
            .then(|| self.group(Path::new(inside), dir))
    }

    fn dir_of(&self, path: &str) -> PathBuf {
        self.mount.join(path.trim_start_matches('/'))
    }

    fn is_group(&self, dir: &Path) -> bool {
        let probe = match self.version {
            Version::V2 => "cgroup.procs",
            Version::V1 => "memory.usage_in_bytes",
        };
        dir.join(probe).exists()
    }

    fn group(&self, rel: &Path, dir: PathBuf) -> Group {
        let rel = rel.to_string_lossy();
        Group {
            name: format!("/{}", rel.trim_start_matches('/')),
            dir,
            version: self.version,
        }
    }
}

/// The group's path in /proc/PID/cgroup: `0::/path` on v2, `N:memory[,...]:/path` on v1.
pub(crate) fn membership(text: &str, version: Version) -> Option<&str> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match version {
            Version::V2 => controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        wanted.then_some(path)
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.clone().take(3).collect();
            if code.len() == 3
                && let Ok(v) = u8::from_str_radix(&code, 8)
            {
                out.push(v as char);
                chars.nth(2);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// One reading of a group. Counters (`events_*`, `oom`, `oom_kill`, `failcnt`) are cumulative,
/// as the kernel keeps them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reading {
    pub usage: u64,
    /// The group's own limit (memory.max / memory.limit_in_bytes, or v1's hierarchical limit
    /// when a parent's is lower); None when it has none.
    pub limit: Option<u64>,
    pub high: Option<u64>,
    pub swap: Option<u64>,
    pub anon: Option<u64>,
    pub file: Option<u64>,
    pub kernel: Option<u64>,
    pub events_high: Option<u64>,
    pub events_max: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
    pub failcnt: Option<u64>,
    pub pressure: Option<crate::collect::procfs::Pressure>,
}

/// `key value` lines (memory.stat, memory.events, memory.oom_control).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// A number, or "max" (None).
fn limit_value(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        v => v.parse().ok(),
    }
}

impl Group {
    /// Read the group now; None when it is gone (its usage file cannot be read).
    pub fn read(&self) -> Option<Reading> {
        let file = |name: &str| crate::collect::procfs::read_text(&self.dir.join(name)).ok();
        match self.version {
            Version::V2 => parse_v2(file),
            Version::V1 => parse_v1(file),
        }
    }
}

/// cgroup v2: memory.current, .max, .high, .swap.current, .stat, .events, .pressure.
pub(crate) fn parse_v2(file: impl Fn(&str) -> Option<String>) -> Option<Reading> {
    let usage = file("memory.current")?.trim().parse().ok()?;
    let stat = file("memory.stat").unwrap_or_default();
    let events = file("memory.events").unwrap_or_default();
    // `kernel` is in memory.stat from Linux 5.18; before, sum its parts.
    let kernel = keyed(&stat, "kernel").or_else(|| {
        let parts = ["kernel_stack", "pagetables", "percpu", "sock", "slab"];
        let found: Vec<u64> = parts.iter().filter_map(|k| keyed(&stat, k)).collect();
        (!found.is_empty()).then(|| found.iter().sum())
    });
    Some(Reading {
        usage,
        limit: file("memory.max").and_then(|t| limit_value(&t)),
        high: file("memory.high").and_then(|t| limit_value(&t)),
        swap: file("memory.swap.current").and_then(|t| t.trim().parse().ok()),
        anon: keyed(&stat, "anon"),
        file: keyed(&stat, "file"),
        kernel,
        events_high: keyed(&events, "high"),
        events_max: keyed(&events, "max"),
        oom: keyed(&events, "oom"),
        oom_kill: keyed(&events, "oom_kill"),
        failcnt: None,
        pressure: file("memory.pressure").and_then(|t| crate::collect::procfs::parse_pressure(&t)),
    })
}

/// cgroup v1: memory.usage_in_bytes, .limit_in_bytes, .failcnt, .stat, .oom_control, and
/// .memsw.usage_in_bytes (memory + swap) where swap accounting is on.
pub(crate) fn parse_v1(file: impl Fn(&str) -> Option<String>) -> Option<Reading> {
    let usage: u64 = file("memory.usage_in_bytes")?.trim().parse().ok()?;
    let stat = file("memory.stat").unwrap_or_default();
    let oom = file("memory.oom_control").unwrap_or_default();
    let own = file("memory.limit_in_bytes").and_then(|t| t.trim().parse::<u64>().ok());
    let limit = [own, keyed(&stat, "hierarchical_memory_limit")]
        .into_iter()
        .flatten()
        .filter(|&l| l < V1_UNLIMITED)
        .min();
    let memsw = file("memory.memsw.usage_in_bytes").and_then(|t| t.trim().parse::<u64>().ok());
    Some(Reading {
        usage,
        limit,
        high: None,
        swap: memsw
            .map(|m| m.saturating_sub(usage))
            .or_else(|| keyed(&stat, "total_swap")),
        anon: keyed(&stat, "total_rss").or_else(|| keyed(&stat, "rss")),
        file: keyed(&stat, "total_cache").or_else(|| keyed(&stat, "cache")),
        kernel: file("memory.kmem.usage_in_bytes").and_then(|t| t.trim().parse().ok()),
        events_high: None,
        events_max: None,
        oom: None,
        oom_kill: keyed(&oom, "oom_kill"),
        failcnt: file("memory.failcnt").and_then(|t| t.trim().parse().ok()),
        pressure: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(dir: &str) -> impl Fn(&str) -> Option<String> {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(dir);
        move |name| fs::read_to_string(base.join(name)).ok()
    }

    #[test]
    fn v2_files_parse() {
        let r = parse_v2(fixture("cgroup-v2")).expect("reads");
        assert_eq!(r.usage, 224_215_040);
        assert_eq!(r.limit, Some(268_435_456));
        assert_eq!(r.high, None, "memory.high is max");
        assert_eq!(r.swap, Some(0));
        assert_eq!(r.anon, Some(205_410_304));
        assert_eq!(r.file, Some(12_660_736));
        assert_eq!(r.kernel, Some(5_689_344));
        assert_eq!(
            (r.events_high, r.events_max, r.oom, r.oom_kill),
            (Some(0), Some(41), Some(2), Some(2))
        );
        let p = r.pressure.expect("pressure");
        assert_eq!((p.some_avg10, p.full_avg10), (3.25, Some(1.5)));
    }

    #[test]
    fn v2_without_limit_or_kernel_key() {
        let r = parse_v2(|name| match name {
            "memory.current" => Some("4096\n".into()),
            "memory.max" => Some("max\n".into()),
            "memory.high" => Some("1048576\n".into()),
            // Before Linux 5.18: no `kernel` line, its parts instead.
            "memory.stat" => {
                Some("anon 10\nfile 20\nkernel_stack 1\npagetables 2\nslab 4\n".into())
            }
            _ => None,
        })
        .expect("reads");
        assert_eq!(
            (r.limit, r.high, r.kernel),
            (None, Some(1_048_576), Some(7))
        );
        assert_eq!((r.oom_kill, r.swap, r.pressure), (None, None, None));
        assert_eq!(parse_v2(|_| None), None, "a removed group");
    }

    #[test]
    fn v1_files_parse() {
        let r = parse_v1(fixture("cgroup-v1")).expect("reads");
        assert_eq!(r.usage, 42_663_936);
        assert_eq!(r.limit, Some(67_108_864));
        assert_eq!(r.failcnt, Some(0));
        assert_eq!(r.oom_kill, Some(1));
        assert_eq!(r.anon, Some(42_237_952));
        assert_eq!(r.file, Some(0));
        assert_eq!(r.kernel, Some(155_648));
        assert_eq!(r.swap, Some(0), "memsw minus usage");
        // Unlimited, but a parent's (hierarchical) limit applies.
        let r = parse_v1(|name| match name {
            "memory.usage_in_bytes" => Some("100\n".into()),
            "memory.limit_in_bytes" => Some("9223372036854771712\n".into()),
            "memory.stat" => Some("rss 5\nhierarchical_memory_limit 1073741824\n".into()),
            _ => None,
        })
        .expect("reads");
        assert_eq!((r.limit, r.anon), (Some(1 << 30), Some(5)));
        let r = parse_v1(|name| match name {
            "memory.usage_in_bytes" => Some("100\n".into()),
            "memory.limit_in_bytes" => Some("9223372036854771712\n".into()),
            _ => None,
        })
        .expect("reads");
        assert_eq!(r.limit, None);
    }

    #[test]
    fn hierarchy_from_mountinfo() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let h = Hierarchy::from_mountinfo(hybrid, |_| false).expect("v1 memory");
        assert_eq!(h.version, Version::V1);
        assert_eq!(h.mount, PathBuf::from("/sys/fs/cgroup/memory"));
        let unified = "\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";
        let h = Hierarchy::from_mountinfo(unified, |_| true).expect("v2");
        assert_eq!(
            (h.version, h.mount.as_path(), h.mount_root.as_str()),
            (Version::V2, Path::new("/sys/fs/cgroup"), "/")
        );
        assert_eq!(Hierarchy::from_mountinfo(unified, |_| false), None);
        assert_eq!(
            Hierarchy::from_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n", |_| true),
            None
        );
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }

    #[test]
    fn membership_lines() {
        let text = "12:memory:/docker/abc\n4:cpu,cpuacct:/x\n0::/system.slice/nginx.service\n";
        assert_eq!(membership(text, Version::V1), Some("/docker/abc"));
        assert_eq!(
            membership(text, Version::V2),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(membership("1:cpu:/\n", Version::V1), None);
    }
}
