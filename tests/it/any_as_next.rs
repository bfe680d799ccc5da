//! `followedByAny` links compiled as `followedBy` (`motif::nfa::CompileOptions`,
//! `only_earliest_chain_reported` in the compiler): for chains of single steps with
//! `skipPastLastEvent` and conditions on the event alone, only the chain of earliest events
//! can be reported, so each first event keeps one partial match instead of one per
//! combination of later events.
//!
//! The property compares the two compilations on random such patterns and streams (two
//! keys, equal timestamps, events out of order within the lateness and late): without
//! `--timeouts` (links rewritten, runs grouped by state) and with it (every branch kept, the
//! runs in one list in the order of Flink's priority queue, which the conformance cases pin
//! against Flink): the same matches in the same order. Patterns outside the class compile
//! as written, which the last tests check.

use proptest::prelude::*;

/// A condition on the current event alone; several may hold for one event.
fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(|t| format!("t == \"{t}\"")),
        1 => Just("t == \"a\" or t == \"b\"".to_string()),
        1 => (0i64..10).prop_map(|k| format!("v > {k}")),
        1 => (0i64..10).prop_map(|k| format!("t == \"c\" and v < {k}")),
        1 => Just("t != \"e\"".to_string()),
    ]
}

/// A chain of 2 to 5 single steps, each link `followedBy` or `followedByAny` (at least one
/// `followedByAny`), `skipPastLastEvent`, maybe a window.
fn chain() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((any::<bool>(), condition()), 2..=5),
        prop::option::of(prop::sample::select(vec![3u64, 10, 40, 200])),
    )
        .prop_map(|(steps, window)| {
            let mut s = format!(
                "pattern p\n    key k\n    time ts\n    lateness 3ms\n= begin(\"v1\", skipPastLastEvent()).where({})",
                steps[0].1
            );
            for (i, (any, cond)) in steps.iter().enumerate().skip(1) {
                // The last link is `followedByAny` when no other is.
                let any = *any || (i == steps.len() - 1 && !steps[1..i].iter().any(|s| s.0));
                let link = if any { "followedByAny" } else { "followedBy" };
                s.push_str(&format!("\n  .{link}(\"v{}\").where({cond})", i + 1));
            }
            if let Some(w) = window {
                s.push_str(&format!("\n  .within({w}ms)"));
            }
            s.push_str(";\n");
            s
        })
}

/// Up to 60 events over two keys, a quarter of them at the time of the one before, and
/// some out of order: an event an eighth of the time comes 1 to 5 ms before its time in
/// the stream (the patterns allow 3 ms of lateness; later than that it is late).
pub(crate) fn stream() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["x", "y"]),
            prop::sample::select(vec!["a", "b", "c", "d", "e", "a", "b"]),
            0i64..10,
            prop_oneof![1 => Just(0i64), 3 => 1i64..4],
            prop_oneof![7 => Just(0i64), 1 => 1i64..6],
        ),
        0..60,
    )
    .prop_map(|evs| {
        let mut ts = 0;
        evs.into_iter()
            .enumerate()
            .map(|(i, (k, t, v, gap, back))| {
                ts += gap;
                let at = (ts - back).max(0);
                format!(r#"{{"id":{i},"k":"{k}","t":"{t}","v":{v},"ts":{at}}}"#)
            })
            .collect()
    })
}

/// The matches of `source` over `lines`, compiled for a run with or without `--timeouts`.
fn matches(source: &str, lines: &[String], timeouts: bool) -> Vec<String> {
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let options = motif::runtime::EngineOptions {
        timeouts,
        ..Default::default()
    };
    match motif::output::match_lines_with(source, &refs, options) {
        // Matches only: with `timeouts` the timed-out partial matches come too.
        Ok(values) => values
            .iter()
            .filter(|v| v.get("timed_out").is_none())
            .map(|v| v.to_string())
            .collect(),
        Err(e) => vec![format!("error: {e}")],
    }
}

fn explained(source: &str) -> String {
    let decls = motif::syntax::load_str("<test>", source).expect("pattern loads");
    let options = motif::nfa::CompileOptions {
        reports_timeouts: false,
        compact_matcher: true,
    };
    let nfa = motif::nfa::compile_with(&decls[0], &mut motif::event::Schema::new(), options)
        .expect("pattern compiles");
    motif::nfa::explain::to_text(&nfa)
}

proptest! {
    #[test]
    fn any_links_run_as_next_where_only_the_earliest_chain_is_reported(
        source in chain(),
        lines in stream(),
    ) {
        prop_assert!(explained(&source).contains("run as followedBy"), "{}", source);
        let rewritten = matches(&source, &lines, false);
        let as_written = matches(&source, &lines, true);
        prop_assert_eq!(rewritten, as_written, "{}\n{}", source, lines.join("\n"));
    }
}

/// The chain in the bench's `skip` family, one key, 1 ms apart: the same matches both ways,
/// and the rewritten pattern holds one partial match per first event (the `a`s of the
/// window) where the written one holds one per combination.
#[test]
fn the_skip_family_keeps_one_partial_match_per_first_event() {
    let source = "pattern p\n    key k\n    time ts\n= begin(\"v1\", skipPastLastEvent()).where(t == \"a\")\n  .followedByAny(\"v2\").where(t == \"b\")\n  .followedByAny(\"v3\").where(t == \"c\")\n  .within(64ms);\n";
    let lines: Vec<String> = (0..2_000)
        .map(|i| {
            let t = match (i * 7919) % 97 {
                0 => "c",
                r if r % 2 == 0 => "a",
                _ => "b",
            };
            format!(r#"{{"id":{i},"k":"x","t":"{t}","v":0,"ts":{i}}}"#)
        })
        .collect();
    let rewritten = matches(source, &lines, false);
    assert!(rewritten.len() > 10, "{}", rewritten.len());
    assert_eq!(rewritten, matches(source, &lines, true));
    let decls = motif::syntax::load_str("<test>", source).expect("pattern loads");
    let most_open = |timeouts: bool| {
        let options = motif::runtime::EngineOptions {
            timeouts,
            ..Default::default()
        };
        let mut engine = motif::runtime::Engine::new(&decls, options).expect("engine");
        let mut out = Vec::new();
        let mut most = 0;
        for l in &lines {
            engine.push_json(l, &mut out);
            most = most.max(engine.open_partial_matches());
        }
        most
    };
    let (rewritten, written) = (most_open(false), most_open(true));
    // At most the 64 ms window's first events (and the start run).
    assert!(rewritten <= 66, "{rewritten}");
    assert!(written > 4 * rewritten, "{written} against {rewritten}");
}

/// Outside the class the links stay as written: a strict link, a quantifier, a condition
/// on an earlier event, another skip strategy, `--timeouts`.
#[test]
fn other_patterns_keep_their_followed_by_any_links() {
    let base = "pattern p\n    key k\n    time ts\n= begin(\"v1\", skipPastLastEvent()).where(t == \"a\")\n  .followedByAny(\"v2\").where(t == \"b\")\n  .followedByAny(\"v3\").where(t == \"c\");\n";
    assert!(explained(base).contains("run as followedBy"));
    for (from, to) in [
        (".followedByAny(\"v3\")", ".next(\"v3\")"),
        (".where(t == \"b\")", ".where(t == \"b\").oneOrMore()"),
        (".where(t == \"b\")", ".where(t == \"b\").optional()"),
        (".where(t == \"c\")", ".where(t == \"c\" and v > v1.v)"),
        ("skipPastLastEvent()", "skipToNext()"),
        (", skipPastLastEvent()", ""),
        (
            ".where(t == \"c\")",
            ".where(t == \"c\").within(5ms, PREVIOUS_AND_CURRENT)",
        ),
    ] {
        let source = base.replacen(from, to, 1);
        assert_ne!(source, base);
        assert!(
            !explained(&source).contains("run as followedBy"),
            "{source}"
        );
    }
    let decls = motif::syntax::load_str("<test>", base).expect("pattern loads");
    let nfa = motif::nfa::compile(&decls[0], &mut motif::event::Schema::new()).expect("compiles");
    assert!(!motif::nfa::explain::to_text(&nfa).contains("run as followedBy"));
}
