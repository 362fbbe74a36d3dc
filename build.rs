// Migrations and queries are embedded at compile time: rebuild when one is added or edited.
// The newest migration's version is exported too (MEMTRAIL_SCHEMA_VERSION), so a database that is
// up to date is recognised without building refinery's migration list, which compiles a regex per
// migration (about 1 ms of CPU at every start and, before, at every API request).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=queries");
    let newest = std::fs::read_dir("migrations")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let (version, _) = name.strip_prefix('V')?.split_once("__")?;
                    version.parse::<u32>().ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    println!("cargo:rustc-env=MEMTRAIL_SCHEMA_VERSION={newest}");
}
