//! memhog: a small helper that allocates and touches a known amount of memory in steps, so that
//! memtrail's tests (and anyone trying memtrail out) have a process whose memory is known exactly.
//! It prints one line per step on stdout. Example: `memhog --step 64MiB --steps 4 --every 500ms`.
//! With `--free-on-sigusr1` it frees what it holds on SIGUSR1, and with `--cleanup-port` it serves
//! `POST /cleanup` on 127.0.0.1 that does the same: a stand-in for an application's own cleanup.
//! With `--map-file PATH` each step grows a file instead, maps it and reads every page: its
//! resident set grows in file-backed pages (`RssFile`), not anonymous ones, like a service that
//! maps a growing log or index.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use memtrail::units::{ByteSize, HumanDuration};

#[derive(Debug, Parser)]
#[command(
    name = "memhog",
    about = "Allocate and touch memory in known steps (a test helper for memtrail)"
)]
struct Args {
    /// Bytes allocated (and every page written) per step.
    #[arg(long, default_value = "64MiB")]
    step: ByteSize,
    /// Number of steps.
    #[arg(long, default_value_t = 4)]
    steps: u32,
    /// Pause before the first step (a flat baseline).
    #[arg(long, default_value = "0s")]
    baseline: HumanDuration,
    /// Pause between steps.
    #[arg(long, default_value = "500ms")]
    every: HumanDuration,
    /// How long to hold the memory after the last step before exiting.
    #[arg(long, default_value = "1s")]
    hold: HumanDuration,
    /// Exit with this code.
    #[arg(long, default_value_t = 0)]
    exit_code: u8,
    /// Free the memory held when SIGUSR1 arrives.
    #[arg(long)]
    free_on_sigusr1: bool,
    /// Serve POST /cleanup on 127.0.0.1:PORT (0 = any free port; the URL is printed first).
    #[arg(long)]
    cleanup_port: Option<u16>,
    /// Allocate each step in blocks of this size (e.g. 64KiB: malloc serves them from the brk
    /// heap, where one step-sized block would be an mmap of its own).
    #[arg(long)]
    chunk: Option<ByteSize>,
    /// Grow this file by a step each step (created, truncated first) and map and read it whole,
    /// instead of allocating anonymous memory.
    #[arg(long)]
    map_file: Option<std::path::PathBuf>,
}

/// Append `step` bytes to the file, map it whole and read every page, so the mapping is resident.
fn grow_mapped(
    file: &mut std::fs::File,
    step: usize,
    page: usize,
) -> std::io::Result<memmap2::Mmap> {
    // In small writes from one buffer: a step-sized buffer would itself be anonymous memory.
    let chunk = [1u8; 64 * 1024];
    let mut left = step;
    while left > 0 {
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n;
    }
    file.flush()?;
    // SAFETY: the file is this program's own scratch file; nothing else truncates it while mapped.
    let map = unsafe { memmap2::Mmap::map(&*file)? };
    let touched: usize = map.iter().step_by(page).map(|b| *b as usize).sum();
    std::hint::black_box(touched);
    Ok(map)
}

static FREE_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigusr1(_: libc::c_int) {
    FREE_REQUESTED.store(true, Ordering::SeqCst);
}

/// Answer POST /cleanup with 200 and ask the main thread to free its memory.
fn serve_cleanup(listener: TcpListener) {
    for mut stream in listener.incoming().flatten() {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let request = String::from_utf8_lossy(&buf);
        let (status, body) = if request.starts_with("POST /cleanup") {
            FREE_REQUESTED.store(true, Ordering::SeqCst);
            ("200 OK", "{\"status\":\"cleanup started\"}")
        } else {
            ("404 Not Found", "{\"error\":\"only POST /cleanup\"}")
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut out = std::io::stdout();
    if args.free_on_sigusr1 {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(libc::SIGUSR1, on_sigusr1 as *const () as libc::sighandler_t) };
    }
    if let Some(port) = args.cleanup_port {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => {
                if let Ok(addr) = listener.local_addr() {
                    let _ = writeln!(out, "cleanup endpoint http://{addr}/cleanup");
                    let _ = out.flush();
                }
                std::thread::spawn(move || serve_cleanup(listener));
            }
            Err(e) => {
                eprintln!("memhog: cannot listen on 127.0.0.1:{port}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    std::thread::sleep(args.baseline.0);
    let mut held: Vec<Vec<u8>> = Vec::new();
    let page = 4096;
    let mut mapped = match &args.map_file {
        Some(path) => match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
        {
            Ok(f) => Some((f, None)),
            Err(e) => {
                eprintln!("memhog: cannot create {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    for i in 1..=args.steps {
        if let Some((file, map)) = &mut mapped {
            match grow_mapped(file, args.step.0 as usize, page) {
                Ok(m) => *map = Some(m),
                Err(e) => {
                    eprintln!("memhog: cannot grow the mapped file: {e}");
                    return ExitCode::from(1);
                }
            }
            let _ = writeln!(out, "step {i}: {} bytes mapped", i as u64 * args.step.0);
            let _ = out.flush();
            if i < args.steps {
                std::thread::sleep(args.every.0);
            }
            continue;
        }
        // In blocks of --chunk (small ones come from malloc's brk heap, large ones are mmaps of
        // their own); every page written so that it is really resident, not just reserved.
        let step = args.step.0 as usize;
        let chunk = args
            .chunk
            .map_or(step, |c| (c.0 as usize).clamp(1, step.max(1)));
        let mut left = step;
        while left > 0 {
            let mut block = vec![0u8; chunk.min(left)];
            for offset in (0..block.len()).step_by(page) {
                block[offset] = 1;
            }
            left -= block.len();
            held.push(block);
        }
        let _ = writeln!(out, "step {i}: {} bytes allocated", i as u64 * args.step.0);
        let _ = out.flush();
        if i < args.steps {
            std::thread::sleep(args.every.0);
        }
    }
    // Hold the memory until the end, unless asked to free it.
    let until = Instant::now() + args.hold.0;
    while Instant::now() < until {
        if FREE_REQUESTED.swap(false, Ordering::SeqCst) && !held.is_empty() {
            let bytes: usize = held.iter().map(Vec::len).sum();
            held = Vec::new();
            let _ = writeln!(out, "freed {bytes} bytes");
            let _ = out.flush();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pages: usize = held
        .iter()
        .map(|b| b.iter().step_by(page).filter(|x| **x == 1).count())
        .sum();
    let _ = writeln!(out, "done: {pages} pages held");
    drop(held);
    ExitCode::from(args.exit_code)
}
