//! Property tests: hostile input to every parser that takes text or bytes from outside (durations
//! and sizes, the config file, imported recordings, the custom-metrics body of the API) never
//! panics, and a rejection is an error that names what it rejected.

use std::path::Path;

use proptest::prelude::*;

use crate::collect::import::{self, ImportFormat};
use crate::config::FileConfig;
use crate::serve::api::parse_custom;
use crate::units::{ByteSize, HumanDuration};

/// Text a little like the real thing: digits, units, separators, quotes, brackets, newlines and
/// any character at all.
fn texty() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-zA-Z.:,#= \\[\\]\"'_{}\\n\\t-]{0,80}",
        any::<String>(),
        "[0-9.]{0,25}(ms|s|m|h|d|KiB|MiB|GiB|GB|kB|B|x)?",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn durations_parse_or_say_what_was_wrong(text in texty()) {
        if let Err(e) = text.parse::<HumanDuration>() {
            let msg = e.to_string();
            prop_assert!(msg.contains("invalid duration") && msg.contains(text.trim()), "{msg}");
        }
    }

    #[test]
    fn well_formed_durations_add_up(parts in prop::collection::vec((0u64..100_000, 0usize..5), 1..4)) {
        const UNITS: [(&str, u64); 5] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)];
        let text: String = parts.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
        let want: u64 = parts.iter().map(|(n, u)| n * UNITS[*u].1).sum();
        let got = text.parse::<HumanDuration>().map(|d| d.0.as_millis() as u64);
        prop_assert_eq!(got, Ok(want), "{}", text);
    }

    #[test]
    fn sizes_parse_or_say_what_was_wrong(text in texty()) {
        if let Err(e) = text.parse::<ByteSize>() {
            let msg = e.to_string();
            prop_assert!(msg.contains("invalid size") && msg.contains(text.trim()), "{msg}");
        }
    }

    #[test]
    fn config_files_parse_or_name_the_file(text in prop_oneof![
        texty(),
        "(\\[record\\]|\\[\\[rules\\]\\]|\\[api\\]|interval = \"[0-9a-z]{0,4}\"|name = \"[a-z]{0,3}\"|metric = \"(rss|x)\"|value = [0-9]{0,3}|\\n){0,12}",
    ]) {
        if let Err(e) = FileConfig::parse(&text, Path::new("hostile.toml")) {
            let msg = e.to_string();
            prop_assert!(msg.contains("hostile.toml"), "{msg}");
        }
    }

    #[test]
    fn imports_parse_or_name_the_file(text in prop_oneof![
        texty(),
        "(timestamp,series,metric,value\\n)?([0-9T:.Z-]{0,12},[a-z]{0,3},[a-z]{0,3},[0-9.e-]{0,6}\\n){0,6}",
        "(# Elapsed time   CPU (%)     Real (MB)   Virtual (MB)\\n)?( *[0-9.-]{0,5} +[0-9.]{0,5} +[0-9.x]{0,5} +[0-9.]{0,5}\\n){0,6}",
        "(CMDLINE [a-z ]{0,8}\\n)?(MEM [0-9.x-]{0,6} [0-9.e]{0,12}\\n){0,6}",
    ], format in 0usize..4) {
        let format = [ImportFormat::Auto, ImportFormat::Csv, ImportFormat::Psrecord, ImportFormat::Mprof][format];
        if let Err(e) = import::parse("hostile.dat", &text, format, None, Some(0)) {
            let msg = e.to_string();
            prop_assert!(msg.contains("hostile.dat"), "{msg}");
        }
    }

    #[test]
    fn custom_metric_bodies_are_checked(body in prop_oneof![
        any::<Vec<u8>>(),
        texty().prop_map(String::into_bytes),
        "\\{\"metrics\": \\{(\"[a-z_.:-]{0,70}\": (-?[0-9.e]{1,8}|\"x\"|null|\\[\\]|\\{\\}),? ?){0,4}\\}(, \"pid\": -?[0-9]{0,12})?(, \"source\": \"[a-z ]{0,5}\")?\\}".prop_map(String::into_bytes),
    ]) {
        match parse_custom(&body) {
            Ok(push) => {
                prop_assert!(!push.metrics.is_empty());
                prop_assert!(push.metrics.iter().all(|(name, v)| crate::model::valid_name(name) && v.is_finite()));
            }
            Err(msg) => prop_assert!(!msg.is_empty()),
        }
    }
}
