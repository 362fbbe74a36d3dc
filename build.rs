// Migrations and queries are embedded at compile time: rebuild when one is added or edited.
// The newest migration's version is exported too (MEMTRAIL_SCHEMA_VERSION), so a database that is
// up to date is recognised without building refinery's migration list, which compiles a regex per
// migration (about 1 ms of CPU at every open: readers open the database per API request). Any
// database behind it, a new one included, is migrated by refinery.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=queries");
    link_order();
    let dir = std::path::Path::new("migrations");
    let mut migrations: Vec<(u32, String, String)> = std::fs::read_dir(dir)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let file = e.file_name().into_string().ok()?;
                    let (version, name) = file.strip_prefix('V')?.split_once("__")?;
                    let name = name.strip_suffix(".sql")?;
                    Some((version.parse::<u32>().ok()?, name.to_string(), file.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    migrations.sort();
    let newest = migrations.last().map_or(0, |m| m.0);
    println!("cargo:rustc-env=MEMTRAIL_SCHEMA_VERSION={newest}");
}

/// Ask the linker to place the functions `bench/link-order.txt` lists (those a recording runs, found
/// by `bench/link-order`) next to each other: the kernel maps code 64 KiB around every page that
/// faults in, so hot code spread over all of .text kept most of it resident (peak RSS 11 MiB
/// recording one process; 6.4 MiB packed). Only lld reads the list, and rustc links
/// x86_64-unknown-linux-gnu with its own rust-lld: the flag is passed when that is the target, the
/// toolchain ships rust-lld, RUSTFLAGS say nothing about linking, and MEMTRAIL_LINK_ORDER is not 0.
fn link_order() {
    println!("cargo:rerun-if-changed=bench/link-order.txt");
    println!("cargo:rerun-if-env-changed=MEMTRAIL_LINK_ORDER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let list = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join("bench/link-order.txt");
    let sysroot = std::process::Command::new(env("RUSTC"))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| std::path::PathBuf::from(s.trim()));
    let lld = sysroot.is_some_and(|root| {
        root.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld")
            .exists()
    });
    if env("TARGET") == "x86_64-unknown-linux-gnu"
        && lld
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && env("MEMTRAIL_LINK_ORDER") != "0"
        && list.exists()
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        // Functions renamed since the list was made are simply placed elsewhere.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
