//! The `memtrail` binary: all logic lives in the library; see `cli::main`.

fn main() -> std::process::ExitCode {
    memtrail::cli::main()
}
