//! The compact matcher (`motif::nfa::compact`): chains of single steps linked by `next`,
//! `followedBy` and `followedByAny`, conditions on the event alone, no skip strategy. Its
//! partial matches are kept as the events they share, not one run each.
//!
//! The property runs random patterns of the class over random streams (two keys, equal
//! timestamps, events out of order within the lateness and late) on both matchers: the
//! compact one and the list matcher (`EngineOptions::list_matcher`), whose results the
//! conformance cases pin against Flink. Matches and timed-out partial matches must be the
//! same multisets. The other tests check the state (what it holds, its cap, a checkpoint
//! restored mid-stream) and which patterns get the matcher.

use motif::runtime::{Engine, EngineOptions, Output};
use proptest::prelude::*;

// The property's streams are `any_as_next`'s: two keys, equal times, disorder and late events.
use crate::any_as_next::stream;

/// A condition on the current event alone; several may hold for one event.
fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(|t| format!(".where(t == \"{t}\")")),
        1 => Just(".where(t == \"a\" or t == \"b\")".to_string()),
        1 => (0i64..10).prop_map(|k| format!(".where(v > {k})")),
        1 => (0i64..10).prop_map(|k| format!(".where(t == \"c\" and v < {k})")),
        1 => Just(".where(t != \"e\")".to_string()),
        1 => Just(String::new()),
    ]
}

/// A chain of 2 to 5 single steps, each link `next`, `followedBy` or `followedByAny`, no
/// skip strategy, maybe a window.
fn chain() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((0..3usize, condition()), 2..=5),
        prop::option::of(prop::sample::select(vec![1u64, 3, 10, 40, 200])),
    )
        .prop_map(|(steps, window)| {
            let mut s = format!(
                "pattern p\n    key k\n    time ts\n    lateness 3ms\n= begin(\"v1\"){}",
                steps[0].1
            );
            for (i, (link, cond)) in steps.iter().enumerate().skip(1) {
                let link = ["next", "followedBy", "followedByAny"][*link];
                s.push_str(&format!("\n  .{link}(\"v{}\"){cond}", i + 1));
            }
            if let Some(w) = window {
                s.push_str(&format!("\n  .within({w}ms)"));
            }
            s.push_str(";\n");
            s
        })
}

/// Every output line of `source` over `lines` (matches, timed-out partial matches with
/// `timeouts`, late events), sorted.
fn outputs(source: &str, lines: &[String], timeouts: bool, list_matcher: bool) -> Vec<String> {
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let options = EngineOptions {
        timeouts,
        list_matcher,
        ..Default::default()
    };
    let mut v: Vec<String> = match motif::output::match_lines_with(source, &refs, options) {
        Ok(values) => values.iter().map(|v| v.to_string()).collect(),
        Err(e) => vec![format!("error: {e}")],
    };
    v.sort();
    v
}

fn explained(source: &str) -> String {
    let decls = motif::syntax::load_str("<test>", source).expect("pattern loads");
    let nfa = motif::nfa::compile(&decls[0], &mut motif::event::Schema::new()).expect("compiles");
    motif::nfa::explain::to_text(&nfa)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_compact_matcher_gives_the_list_matchers_results(
        source in chain(),
        lines in stream(),
        timeouts in any::<bool>(),
    ) {
        prop_assert!(explained(&source).contains("matcher: compact"), "{}", source);
        let compact = outputs(&source, &lines, timeouts, false);
        let list = outputs(&source, &lines, timeouts, true);
        prop_assert_eq!(compact, list, "{}\n{}", source, lines.join("\n"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Both matchers count the same open partial matches after every event (the compact
    /// one from its chains), so the status line and the caps on totals mean the same.
    #[test]
    fn both_matchers_count_the_same_partial_matches(source in chain(), lines in stream()) {
        let decls = motif::syntax::load_str("<test>", &source).expect("pattern loads");
        let engine = |list_matcher| {
            Engine::new(&decls, EngineOptions { list_matcher, ..Default::default() })
                .expect("engine")
        };
        let (mut compact, mut list) = (engine(false), engine(true));
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            compact.push_json(l, &mut out);
            list.push_json(l, &mut out);
            prop_assert_eq!(
                compact.open_partial_matches(),
                list.open_partial_matches(),
                "after event {}: {}\n{}", i, source, lines.join("\n")
            );
        }
    }
}

/// `n` steps `a`, `b`, …, the last `z`, linked by `followedByAny`, within `w` ms.
fn any_chain(n: usize, w: u64) -> String {
    let mut s = "pattern p\n    key k\n    time ts\n= begin(\"v1\").where(t == \"a\")".to_string();
    for i in 2..=n {
        let t = if i == n {
            "z".to_string()
        } else {
            ((b'a' + i as u8 - 1) as char).to_string()
        };
        s.push_str(&format!("\n  .followedByAny(\"v{i}\").where(t == \"{t}\")"));
    }
    s.push_str(&format!("\n  .within({w}ms);\n"));
    s
}

/// One key, 1 ms apart, types cycling through `a`, `b`, `c`, a `z` every 500 events.
fn rare_last(events: usize) -> Vec<String> {
    (0..events)
        .map(|i| {
            let t = if i % 500 == 499 {
                "z"
            } else {
                ["a", "b", "c"][i % 3]
            };
            format!(r#"{{"id":{i},"k":"x","t":"{t}","v":0,"ts":{i}}}"#)
        })
        .collect()
}

/// The most partial matches (as `open_partial_matches` counts them) the engine held, the
/// partial matches it dropped at the cap, and its sorted outputs.
fn run_counting(
    source: &str,
    lines: &[String],
    options: EngineOptions,
) -> (usize, u64, Vec<String>) {
    let decls = motif::syntax::load_str("<test>", source).expect("pattern loads");
    let mut engine = Engine::new(&decls, options).expect("engine");
    let mut out = Vec::new();
    let mut most = 0;
    for l in lines {
        engine.push_json(l, &mut out);
        most = most.max(engine.open_partial_matches());
    }
    engine.finish(&mut out);
    (most, engine.stats().dropped_runs, canonical(&out))
}

fn canonical(out: &[Output]) -> Vec<String> {
    let mut v: Vec<String> = (out.iter())
        .filter_map(|o| match o {
            Output::Match { key, m, .. } => {
                let ids: Vec<String> = (m.events.iter())
                    .map(|e| format!("{}:{}", e.var, e.field("id")))
                    .collect();
                Some(format!("{key:?} [{}] {:?}", ids.join(","), m.timed_out))
            }
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// A `followedByAny` chain waiting for a rare last event: the list matcher holds one run
/// per combination of the window's events and drops them at its cap; the compact one holds
/// each event once per step it ends a chain of — the cap (on what it holds) at 300, three
/// steps of the window's 100 events, drops nothing. Both count the same partial matches.
#[test]
fn a_window_of_events_not_of_their_combinations() {
    let source = any_chain(4, 100);
    let lines = rare_last(3_000);
    let capped = |list_matcher: bool, cap: usize| EngineOptions {
        list_matcher,
        max_runs_per_key: Some(cap),
        ..Default::default()
    };
    let (compact_most, compact_dropped, compact) =
        run_counting(&source, &lines, capped(false, 300));
    let (list_most, _, list) = run_counting(&source, &lines, capped(true, 0));
    assert!(compact.len() > 1_000, "{} matches", compact.len());
    assert_eq!(compact, list);
    assert_eq!(compact_dropped, 0);
    assert!(list_most > 3_000, "{list_most}");
    assert_eq!(compact_most, list_most);
    let (_, list_dropped, list_capped) = run_counting(&source, &lines, capped(true, 3_000));
    assert!(list_dropped > 0);
    assert_ne!(
        list_capped, compact,
        "the cap changes the list matcher's result"
    );
    // Below what the window holds, the compact matcher's cap drops first events too.
    let (_, dropped, _) = run_counting(&source, &lines, capped(false, 50));
    assert!(dropped > 0);
}

/// The compact matcher's state in a checkpoint: cut anywhere, restored into another shard
/// count, the run's outputs are those of an uninterrupted one.
#[test]
fn a_compact_state_restores_mid_stream() {
    let source = "pattern p\n    key k\n    time ts\n    lateness 3ms\n= begin(\"v1\").where(t == \"a\")\n  .followedByAny(\"v2\").where(t == \"b\")\n  .followedBy(\"v3\").where(t == \"c\" or t == \"a\")\n  .next(\"v4\").where(t != \"e\")\n  .within(30ms);\n";
    assert!(explained(source).contains("matcher: compact"));
    let lines: Vec<String> = (0..1_500)
        .map(|i: i64| {
            let t = ["a", "b", "c", "d", "e", "b", "c"][((i * 7_919) % 7) as usize];
            let k = ["x", "y", "w"][(i % 3) as usize];
            let ts = i - (i * 13 % 4);
            format!(r#"{{"id":{i},"k":"{k}","t":"{t}","v":0,"ts":{ts}}}"#)
        })
        .collect();
    let options = EngineOptions {
        timeouts: true,
        ..Default::default()
    };
    let decls = motif::syntax::load_str("<test>", source).expect("pattern loads");
    let (_, _, want) = run_counting(source, &lines, options);
    assert!(want.len() > 100, "{}", want.len());
    for (cut, shards) in [(1, 1), (400, 3), (1_100, 2)] {
        let mut first = Engine::new(&decls, options).expect("engine");
        let mut out = Vec::new();
        for l in &lines[..cut] {
            first.push_json(l, &mut out);
        }
        assert!(cut < 10 || first.open_partial_matches() > 0);
        let state = serde_json::to_string(&first.snapshot()).expect("state serialises");
        let restored = |list_matcher: bool| {
            let mut e = Engine::new(
                &decls,
                EngineOptions {
                    shards,
                    list_matcher,
                    ..options
                },
            )
            .expect("engine");
            e.restore(
                serde_json::from_str(&state).expect("state deserialises"),
                false,
            )
            .map(|_| e)
        };
        // The list matcher's engine does not take the compact matcher's state.
        assert!(restored(true).is_err(), "cut at {cut}");
        let mut second = restored(false).expect("state restores");
        for l in &lines[cut..] {
            second.push_json(l, &mut out);
        }
        second.finish(&mut out);
        assert_eq!(
            canonical(&out),
            want,
            "cut at {cut}, restored into {shards} shards"
        );
    }
}

/// Which patterns get the compact matcher, and what `motif explain` says of the others.
#[test]
fn explain_says_which_matcher_and_why() {
    let base = "pattern p\n    key k\n    time ts\n= begin(\"v1\").where(t == \"a\")\n  .followedByAny(\"v2\").where(t == \"b\")\n  .next(\"v3\").where(t == \"c\")\n  .within(5ms);\n";
    assert!(explained(base).contains("matcher: compact"));
    for (from, to, why) in [
        (
            "begin(\"v1\")",
            "begin(\"v1\", skipToNext())",
            "skip strategy",
        ),
        (
            ".where(t == \"b\")",
            ".where(t == \"b\").oneOrMore()",
            "quantifier",
        ),
        (
            ".where(t == \"b\")",
            ".where(t == \"b\").optional()",
            "optional",
        ),
        (
            ".where(t == \"c\")",
            ".where(t == \"c\" and v > v1.v)",
            "reads the partial match",
        ),
        (".next(\"v3\")", ".notFollowedBy(\"v3\")", "negation"),
        (
            ".where(t == \"c\")",
            ".where(t == \"c\").within(5ms, PREVIOUS_AND_CURRENT)",
            "window between consecutive events",
        ),
    ] {
        let source = base.replacen(from, to, 1);
        assert_ne!(source, base);
        let text = explained(&source);
        assert!(!text.contains("matcher: compact"), "{source}");
        assert!(
            text.contains("not the compact matcher") && text.contains(why),
            "{source}\n{text}"
        );
    }
}
