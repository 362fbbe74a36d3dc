//! memhog: a small helper that allocates and touches a known amount of memory in steps, so that
//! memtrail's tests (and anyone trying memtrail out) have a process whose memory is known exactly.
//! It prints one line per step on stdout. Example: `memhog --step 64MiB --steps 4 --every 500ms`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut out = std::io::stdout();
    std::thread::sleep(args.baseline.0);
    let mut held: Vec<Vec<u8>> = Vec::new();
    let page = 4096;
    for i in 1..=args.steps {
        let mut block = vec![0u8; args.step.0 as usize];
        // Write every page so that it is really resident, not just reserved.
        for offset in (0..block.len()).step_by(page) {
            block[offset] = 1;
        }
        held.push(block);
        let _ = writeln!(out, "step {i}: {} bytes allocated", i as u64 * args.step.0);
        let _ = out.flush();
        if i < args.steps {
            std::thread::sleep(args.every.0);
        }
    }
    std::thread::sleep(args.hold.0);
    // Keep the memory observably alive until here.
    let checksum: u64 = held
        .iter()
        .map(|b| b.iter().step_by(page).map(|x| *x as u64).sum::<u64>())
        .sum();
    let _ = writeln!(out, "done: {checksum} pages touched");
    drop(held);
    std::thread::sleep(Duration::from_millis(1));
    ExitCode::from(args.exit_code)
}
