//! The order of memtrail's layers, bottom first, in the order the data flows, and a test that
//! keeps every `crate::` import pointing down it (or across its own layer, without a cycle).
//! ARCHITECTURE.md draws the same picture. A module's tests may reach up (to build their inputs);
//! everything before its `#[cfg(test)]` may not.

/// Each layer's top-level modules: a stage folder (`collect/`, ...) is one module, its files its own.
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &["allocator", "logsink", "model", "sys", "units"]),
    ("config", &["config"]),
    ("collect", &["collect"]),
    ("store", &["store"]),
    ("analyze", &["analyze"]),
    ("act", &["act"]),
    ("record", &["record"]),
    ("serve", &["serve"]),
    ("present", &["present"]),
    ("cli", &["cli", "main", "lib", "layers", "proptests"]),
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|(_, ms)| ms.contains(&module))
    }

    /// Every `.rs` file under `src/` but the `tests.rs` files: its path relative to `src/` and its
    /// code before `#[cfg(test)]`.
    fn sources() -> Vec<(std::path::PathBuf, String)> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = Vec::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs")
                    || path.file_name().is_some_and(|f| f == "tests.rs")
                {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read");
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                let rel = path.strip_prefix(&src).expect("under src").to_path_buf();
                out.push((rel, code));
            }
        }
        out
    }

    /// Every `crate::name` a file's non-test code names, by the module the file belongs to.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (rel, code) in sources() {
            if rel.starts_with("bin") {
                continue;
            }
            let first = rel.components().next().expect("a file");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            let used = out.entry(module.clone()).or_default();
            for part in code.split("crate::").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    used.insert(name);
                }
            }
        }
        out
    }

    #[test]
    fn every_module_has_a_layer_and_imports_only_run_down() {
        let graph = imports();
        let mut wrong = Vec::new();
        for (module, used) in &graph {
            let Some(from) = layer_of(module) else {
                wrong.push(format!("{module} is in no layer (add it to LAYERS)"));
                continue;
            };
            for target in used {
                match layer_of(target) {
                    None => wrong.push(format!("{module} uses {target}, which is in no layer")),
                    Some(to) if to > from => wrong.push(format!(
                        "{module} ({}) uses {target} ({}), a layer above it",
                        LAYERS[from].0, LAYERS[to].0
                    )),
                    _ => {}
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn no_import_cycle() {
        let graph = imports();
        // Depth-first search: a module met again on the current path closes a cycle.
        fn visit(
            m: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == m) {
                return Some(path[at..].to_vec());
            }
            if !done.insert(m.to_string()) {
                return None;
            }
            path.push(m.to_string());
            for next in graph.get(m).into_iter().flatten() {
                if let Some(cycle) = visit(next, graph, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            let mut path = Vec::new();
            if let Some(cycle) = visit(m, &graph, &mut path, &mut done) {
                panic!("import cycle: {}", cycle.join(" -> "));
            }
        }
    }

    /// No function in `src/` (tests aside) runs over 100 lines: from its `fn` line to the closing
    /// brace at the same indentation.
    #[test]
    fn no_function_is_over_100_lines() {
        let mut long = Vec::new();
        for (rel, code) in sources() {
            let lines: Vec<&str> = code.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let body = line.trim_start();
                let indent = line.len() - body.len();
                let is_fn = [
                    "fn ",
                    "pub fn ",
                    "pub(crate) fn ",
                    "async fn ",
                    "pub async fn ",
                ]
                .iter()
                .any(|p| body.starts_with(p));
                if !is_fn || body.ends_with(';') {
                    continue;
                }
                let close = format!("{}}}", " ".repeat(indent));
                if let Some(end) = lines[i..].iter().position(|l| *l == close)
                    && end + 1 > 100
                {
                    long.push(format!(
                        "src/{}:{} ({} lines)",
                        rel.display(),
                        i + 1,
                        end + 1
                    ));
                }
            }
        }
        assert!(
            long.is_empty(),
            "functions over 100 lines: {}",
            long.join(", ")
        );
    }

    /// Every `unsafe` block of the library is in `sys`, each behind a safe function, but the
    /// spool's one memory map, whose safety rests on rules only the spool keeps (the `memhog`
    /// helper binary aside).
    #[test]
    fn unsafe_code_lives_only_in_sys() {
        let allowed = |rel: &Path| -> usize {
            match rel.to_str() {
                Some("sys.rs") => usize::MAX,
                Some("record/spool.rs") => 1,
                _ if rel.starts_with("bin") => usize::MAX,
                _ => 0,
            }
        };
        let mut found = Vec::new();
        for (rel, code) in sources() {
            let lines: Vec<usize> = code
                .lines()
                .enumerate()
                .filter(|(_, line)| {
                    let code_part = line.split("//").next().unwrap_or("");
                    ["unsafe {", "unsafe fn", "unsafe impl", "unsafe extern"]
                        .iter()
                        .any(|u| code_part.contains(u))
                })
                .map(|(i, _)| i + 1)
                .collect();
            if lines.len() > allowed(&rel) {
                found.push(format!("src/{}: lines {lines:?}", rel.display()));
            }
        }
        assert!(found.is_empty(), "unsafe outside sys: {}", found.join(", "));
    }

    #[test]
    fn the_parser_finds_the_imports_it_checks() {
        // Non-test code only: the recorder writes through the store, and collect's tests build
        // record settings (test code, not counted).
        let graph = imports();
        assert!(graph.get("record").is_some_and(|u| u.contains("store")));
        assert!(graph.get("collect").is_some_and(|u| !u.contains("record")));
    }
}
