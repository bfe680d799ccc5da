//! Flink CEP's own test scenarios (tests/conformance/cases), each with Flink's answer,
//! run through the engine in-process and compared as multisets, exactly as
//! `../shared/conformance/check` compares them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

type Canon = (bool, Vec<String>, Option<i64>);

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases")
}

fn ids_in_input_order(ids: Vec<String>, pos: &BTreeMap<String, usize>) -> Vec<String> {
    let mut ids = ids;
    ids.sort_by_key(|i| pos.get(i).copied().unwrap_or(usize::MAX));
    ids
}

/// Runs one case folder, partial matches grouped by state above `group_runs_at` runs
/// ([`motif::runtime::EngineOptions::group_runs_at`]; `Some(0)`: always, where the pattern
/// allows it); `Err` says what differs.
pub fn run_case_with(dir: &Path, group_runs_at: Option<usize>) -> Result<(), String> {
    let read = |f: &str| fs::read_to_string(dir.join(f)).map_err(|e| format!("{f}: {e}"));
    let source = read("case.motif")?;
    let events = read("events.jsonl")?;
    let expected = read("expected.jsonl")?;
    let meta: serde_json::Value = read("meta.json")
        .ok()
        .and_then(|m| serde_json::from_str(&m).ok())
        .unwrap_or_default();
    let check_timeouts = meta["check_timeouts"].as_bool().unwrap_or(false);
    let lines: Vec<&str> = events.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut pos = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).map_err(|e| e.to_string())?;
        pos.insert(v["id"].as_str().unwrap_or_default().to_string(), i);
    }
    let options = motif::runtime::EngineOptions {
        timeouts: check_timeouts,
        group_runs_at,
        ..Default::default()
    };
    let got = motif::output::match_lines_with(&source, &lines, options)?;
    let mut got_c: Vec<Canon> = got
        .iter()
        .map(|m| {
            let mut ids = Vec::new();
            if let Some(evs) = m["events"].as_object() {
                for list in evs.values() {
                    for e in list.as_array().into_iter().flatten() {
                        ids.push(e["id"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
            let to = m["timed_out"].as_bool().unwrap_or(false);
            (
                to,
                ids_in_input_order(ids, &pos),
                if to { m["timeout"].as_i64() } else { None },
            )
        })
        .filter(|c| check_timeouts || !c.0)
        .collect();
    let mut want_c: Vec<Canon> = expected
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            let ids = v["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| i.as_str().unwrap_or_default().to_string())
                .collect();
            let to = v["timed_out"].as_bool().unwrap_or(false);
            (
                to,
                ids_in_input_order(ids, &pos),
                if to { v["timeout"].as_i64() } else { None },
            )
        })
        .filter(|c| check_timeouts || !c.0)
        .collect();
    got_c.sort();
    want_c.sort();
    if got_c == want_c {
        Ok(())
    } else {
        let missing: Vec<_> = want_c.iter().filter(|w| !got_c.contains(w)).collect();
        let extra: Vec<_> = got_c.iter().filter(|g| !want_c.contains(g)).collect();
        Err(format!(
            "got {} want {}; missing {missing:?}; extra {extra:?}",
            got_c.len(),
            want_c.len()
        ))
    }
}

/// The case folders under `root`, in name order.
fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Runs every case of `dirs`; fails naming each that does not give its expected matches.
fn assert_all_pass(dirs: &[PathBuf], what: &str, group_runs_at: Option<usize>) {
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            run_case_with(d, group_runs_at).err().map(|e| {
                format!(
                    "{}: {e}",
                    d.file_name().unwrap_or_default().to_string_lossy()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {what} fail:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}

#[test]
fn all_flink_conformance_cases_pass() {
    let dirs = case_dirs(&cases_dir());
    // The 153 cases of ../shared/conformance, and motif's own (`agree__`: families where
    // motif once disagreed with Flink 2.3, each answered by real Flink through
    // ../shared/flinkcheck).
    let shared = dirs
        .iter()
        .filter(|d| {
            !d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("agree__"))
        })
        .count();
    assert_eq!(shared, 153, "the 153 cases of ../shared/conformance");
    assert_all_pass(&dirs, "cases", None);
}

/// The same cases with every partition's runs grouped by state from its first run on,
/// wherever the pattern allows it (no skip strategy): the grouped
/// layout gives Flink's answers too.
#[test]
fn conformance_cases_pass_with_runs_grouped_by_state() {
    assert_all_pass(&case_dirs(&cases_dir()), "cases (runs grouped)", Some(0));
}

/// 3,285 random patterns and event streams with Flink 2.3's answers
/// (tests/conformance/random/README.md; the 120 `any_as_next__*` run without time-outs,
/// so their `followedByAny` links run as `followedBy`).
#[test]
fn random_cases_agree_with_flink() {
    let dirs = case_dirs(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/random"));
    assert_eq!(dirs.len(), 3_285, "the random cases");
    assert_all_pass(&dirs, "random cases (Flink's answers)", None);
}

/// The random cases with runs grouped by state from the first run on (see
/// [`conformance_cases_pass_with_runs_grouped_by_state`]).
#[test]
fn random_cases_agree_with_flink_with_runs_grouped_by_state() {
    let dirs = case_dirs(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/random"));
    assert_all_pass(&dirs, "random cases (runs grouped)", Some(0));
}

/// The ids of each match of `source` over `events` (`id`s), in emission order.
fn match_ids(source: &str, events: &[&str]) -> Vec<Vec<String>> {
    let got = motif::output::match_lines(source, events, false).expect("the pattern runs");
    got.iter()
        .map(|m| {
            let mut ids: Vec<String> = m["events"]
                .as_object()
                .into_iter()
                .flat_map(|o| o.values())
                .flat_map(|l| l.as_array().into_iter().flatten())
                .map(|e| e["id"].as_str().unwrap_or_default().to_string())
                .collect();
            ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap_or(0));
            ids
        })
        .collect()
}

/// Where motif takes what Flink refuses: `skipToFirst` / `skipToLast` naming a variable
/// inside a group (Flink: "The pattern name specified in AfterMatchSkipStrategy can not be
/// found in the given Pattern"). The meaning is the one the strategy has for any variable:
/// after a match, drop what started before that variable's first (last) event in it.
#[test]
fn a_skip_strategy_may_name_a_variable_inside_a_group() {
    let events = [
        r#"{"id":"e1","name":"a","ts":1}"#,
        r#"{"id":"e2","name":"a","ts":2}"#,
        r#"{"id":"e3","name":"b","ts":3}"#,
        r#"{"id":"e4","name":"c","ts":4}"#,
    ];
    let pattern = |skip: &str| {
        format!(
            r#"pattern p
    time ts
= begin("a"{skip}).where(name == "a")
  .followedBy(begin("b").where(name == "b").followedBy("c").where(name == "c"));"#
        )
    };
    let all = vec![vec!["e1", "e3", "e4"], vec!["e2", "e3", "e4"]];
    assert_eq!(match_ids(&pattern(""), &events), all);
    // Both complete on e4; {e1, e3, e4} comes first (earlier start) and drops what started
    // before its first `b` (e3): the match from e2.
    assert_eq!(
        match_ids(&pattern(r#", skipToFirst("b")"#), &events),
        vec![vec!["e1", "e3", "e4"]]
    );
    // skipToLast("c"): what started before e4 goes too.
    assert_eq!(
        match_ids(&pattern(r#", skipToLast("c")"#), &events),
        vec![vec!["e1", "e3", "e4"]]
    );
}
