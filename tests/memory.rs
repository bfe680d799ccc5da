//! A million distinct keys with no pending runs hold under 200 MB: a key with nothing
//! pending keeps no state. Its own test binary, so the process's peak memory is its own.

use motif::runtime::{Engine, EngineOptions};

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

#[test]
fn a_million_idle_keys_hold_under_200_mb() {
    let source = r#"pattern p key user time ts
        = begin("a").where(kind == "login").followedBy("b").where(kind == "fail").within(1m);"#;
    let decls = motif::syntax::load_str("<test>", source).expect("pattern loads");
    let mut e = Engine::new(&decls, EngineOptions::default()).expect("pattern compiles");
    let mut out = Vec::new();
    let mut line = String::new();
    for i in 0..1_000_000u64 {
        line.clear();
        use std::fmt::Write;
        let _ = write!(
            line,
            r#"{{"user":"user-{i:07}","ts":{i},"kind":"view","page":"/p/{}"}}"#,
            i % 97
        );
        e.push_json(&line, &mut out);
        out.clear();
    }
    assert_eq!(e.stats().records, 1_000_000);
    assert!(
        e.live_partitions() <= 1,
        "{} partitions kept",
        e.live_partitions()
    );
    if let Some(kb) = peak_rss_kb() {
        assert!(kb < 200 * 1024, "peak RSS {kb} kB");
    }
}
