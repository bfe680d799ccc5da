//! The event-time runtime: disorder within lateness, late events, sharding, timeouts of
//! silent keys, idle keys keeping no state, and state snapshots.

use std::collections::BTreeMap;

use motif::gen::{generate, GenOptions, Rng};
use motif::runtime::{Engine, EngineOptions, Output};
use proptest::prelude::*;

/// A keyed pattern with a window, iterative conditions and a skip strategy: enough moving
/// parts for ordering bugs to show.
const ABC: &str = r#"
pattern abc
    key key
    time ts
    lateness 50ms
= begin("A", skipPastLastEvent()).where(type == "A")
  .followedBy("B").where(type == "B" and price > A.price).oneOrMore()
  .followedBy("C").where(type == "C")
  .within(200ms);
"#;

fn engine(source: &str, options: EngineOptions) -> Engine {
    let decls = motif::syntax::load_str("<test>", source).expect("test pattern loads");
    Engine::new(&decls, options).expect("test pattern compiles")
}

/// Matches as sorted canonical strings (pattern, key, event ids, timeout).
fn canonical(engine: &Engine, outs: &[Output]) -> Vec<String> {
    let mut v: Vec<String> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Match { pattern, key, m } => {
                let ids: Vec<String> = m
                    .events
                    .iter()
                    .map(|e| {
                        let j: serde_json::Value =
                            serde_json::from_str(&e.raw).expect("events are JSON");
                        format!("{}:{}", engine.nfa(*pattern).variables()[e.var], j["id"])
                    })
                    .collect();
                Some(format!(
                    "{} {} [{}] {:?}",
                    engine.nfa(*pattern).name(),
                    key.as_deref().unwrap_or("-"),
                    ids.join(","),
                    m.timed_out
                ))
            }
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn run_all(source: &str, lines: &[String], options: EngineOptions) -> (Vec<String>, Vec<Output>) {
    let mut e = engine(source, options);
    let mut out = Vec::new();
    for l in lines {
        e.push_json(l, &mut out);
    }
    e.finish(&mut out);
    (canonical(&e, &out), out)
}

fn stream(events: u64, keys: u64, seed: u64) -> Vec<String> {
    let mut v = Vec::new();
    generate(
        &GenOptions {
            events,
            keys,
            seed,
            mean_gap_ms: 2,
            ..GenOptions::default()
        },
        |l| v.push(l.to_string()),
    );
    v
}

fn time_of(line: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
    v["ts"].as_i64().expect("ts")
}

/// Shuffles so that no event arrives after one more than `bound` ms later than it: each
/// event is delayed by a random amount below `bound`, then the stream is sorted by
/// (time + delay). Equal-time events of one key keep their order (stable sort by key).
fn shuffle_within(lines: &[String], bound: i64, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut keyed: Vec<(i64, usize, &String)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (time_of(l) + (rng.below(bound as u64) as i64), i, l))
        .collect();
    keyed.sort_by_key(|(arrival, i, _)| (*arrival, *i));
    // Equal event times must keep their input order for the result to be comparable:
    // restore it among events of equal time.
    let mut by_time: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (_, i, l) in &keyed {
        by_time.entry(time_of(l)).or_default().push(*i);
    }
    for v in by_time.values_mut() {
        v.sort();
    }
    let mut next: BTreeMap<i64, usize> = BTreeMap::new();
    keyed
        .iter()
        .map(|(_, _, l)| {
            let t = time_of(l);
            let k = next.entry(t).or_default();
            let i = by_time[&t][*k];
            *k += 1;
            lines[i].clone()
        })
        .collect()
}

#[test]
fn disorder_within_lateness_gives_the_matches_of_sorted_input() {
    let sorted = stream(3000, 20, 7);
    let (want, _) = run_all(ABC, &sorted, EngineOptions::default());
    assert!(
        want.len() > 10,
        "the stream has matches to compare: {}",
        want.len()
    );
    let shuffled = shuffle_within(&sorted, 50, 11);
    assert_ne!(shuffled, sorted, "the input really is out of order");
    let (got, outs) = run_all(ABC, &shuffled, EngineOptions::default());
    assert!(!outs.iter().any(|o| matches!(o, Output::Late { .. })));
    assert_eq!(got, want);
}

#[test]
fn events_beyond_lateness_go_to_the_late_output() {
    let lines = [
        r#"{"id":1,"key":"k","ts":1000,"type":"A","price":1.0}"#,
        r#"{"id":2,"key":"k","ts":1100,"type":"D","price":1.0}"#,
        r#"{"id":3,"key":"k","ts":1060,"type":"B","price":5.0}"#, // within 50ms of 1100: fine
        r#"{"id":4,"key":"k","ts":1049,"type":"B","price":5.0}"#, // 1049 <= 1100-50-1: late
        r#"{"id":5,"key":"k","ts":1150,"type":"C","price":1.0}"#,
    ]
    .map(String::from);
    let (got, outs) = run_all(ABC, &lines, EngineOptions::default());
    let late: Vec<&Output> = outs
        .iter()
        .filter(|o| matches!(o, Output::Late { .. }))
        .collect();
    assert_eq!(late.len(), 1);
    if let Output::Late {
        time, watermark, ..
    } = late[0]
    {
        assert_eq!((*time, *watermark), (1049, 1049));
    }
    assert_eq!(got, ["abc \"k\" [A:1,B:3,C:5] None"]);
}

#[test]
fn shard_count_does_not_change_results() {
    let lines = stream(4000, 50, 3);
    let (one, _) = run_all(ABC, &lines, EngineOptions::default());
    for shards in [2, 4, 7] {
        let (many, _) = run_all(
            ABC,
            &lines,
            EngineOptions {
                shards,
                ..EngineOptions::default()
            },
        );
        assert_eq!(many, one, "{shards} shards");
    }
}

#[test]
fn timeouts_fire_for_keys_that_go_silent() {
    let source = r#"pattern w key key time ts
        = begin("a").where(type == "A").followedBy("b").where(type == "B").within(100ms);"#;
    let mut lines = vec![r#"{"id":0,"key":"silent","ts":0,"type":"A"}"#.to_string()];
    // Only other keys from now on; their times move the watermark past 0 + 100.
    for i in 1..=5 {
        lines.push(format!(
            r#"{{"id":{i},"key":"other","ts":{},"type":"D"}}"#,
            i * 30
        ));
    }
    let mut e = engine(
        source,
        EngineOptions {
            timeouts: true,
            ..EngineOptions::default()
        },
    );
    let mut out = Vec::new();
    for l in &lines {
        e.push_json(l, &mut out);
    }
    // Before the end of input: the watermark (150 - 1) has passed 100.
    let got = canonical(&e, &out);
    assert_eq!(got, ["w \"silent\" [a:0] Some(100)"]);
    assert_eq!(
        e.live_partitions(),
        0,
        "the silent key's run is gone and `other` never had anything pending"
    );
}

#[test]
fn idle_keys_keep_no_state() {
    // Every key is seen once and never starts a run that lasts: nothing may be kept.
    let source = r#"pattern p key key time ts = begin("a").where(type == "A").next("b").where(type == "B");"#;
    let mut e = engine(source, EngineOptions::default());
    let mut out = Vec::new();
    for i in 0..20_000u64 {
        let line = format!(r#"{{"key":"k{i}","ts":{i},"type":"C"}}"#);
        e.push_json(&line, &mut out);
    }
    assert!(
        e.live_partitions() <= 1,
        "{} partitions",
        e.live_partitions()
    );
    assert_eq!(e.open_partial_matches(), 0);
}

#[test]
fn snapshot_restore_midstream_equals_an_uninterrupted_run() {
    let lines = shuffle_within(&stream(3000, 30, 5), 40, 9);
    let options = EngineOptions {
        timeouts: true,
        shards: 3,
        ..EngineOptions::default()
    };
    let (want, _) = run_all(ABC, &lines, options);
    for (cut, shards) in [(1, 1), (700, 3), (1500, 5), (2999, 2)] {
        let mut first = engine(ABC, options);
        let mut out = Vec::new();
        for l in &lines[..cut] {
            first.push_json(l, &mut out);
        }
        let before = canonical(&first, &out);
        let state = serde_json::to_string(&first.snapshot()).expect("state serialises");
        drop(first);
        // Restored into another shard count: the state is re-sharded by key.
        let mut second = engine(ABC, EngineOptions { shards, ..options });
        second
            .restore(
                serde_json::from_str(&state).expect("state deserialises"),
                false,
            )
            .expect("state restores");
        let mut out2 = Vec::new();
        for l in &lines[cut..] {
            second.push_json(l, &mut out2);
        }
        second.finish(&mut out2);
        let mut got = before;
        got.extend(canonical(&second, &out2));
        got.sort();
        assert_eq!(got, want, "cut at {cut}, restored into {shards} shards");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random disorder within the lateness bound never changes the result.
    #[test]
    fn random_disorder_within_lateness_never_changes_the_result(seed in 0u64..10_000, bound in 1i64..50) {
        let sorted = stream(400, 5, seed);
        let (want, _) = run_all(ABC, &sorted, EngineOptions::default());
        let shuffled = shuffle_within(&sorted, bound, seed ^ 0x5eed);
        let (got, _) = run_all(ABC, &shuffled, EngineOptions::default());
        prop_assert_eq!(got, want);
    }
}

#[test]
fn caps_bound_partial_matches_and_count_what_they_drop() {
    // Every `a` starts a run and every later `a` branches every run: exponential without a cap.
    let source = r#"pattern boom key key time ts
        = begin("x").where(type == "A").followedByAny("y").where(type == "A").oneOrMore().allowCombinations()
          .followedBy("z").where(type == "Z");"#;
    let lines: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"key":"k","ts":{i},"type":"A"}}"#))
        .collect();
    let options = EngineOptions {
        max_runs_per_key: Some(500),
        ..EngineOptions::default()
    };
    let mut e = engine(source, options);
    let mut out = Vec::new();
    for l in &lines {
        e.push_json(l, &mut out);
        assert!(
            e.open_partial_matches() <= 500,
            "{}",
            e.open_partial_matches()
        );
    }
    assert!(
        e.stats().dropped_runs > 0,
        "the cap was reached and counted"
    );

    // A total cap over keys: keys without state start nothing once it is reached.
    let source = r#"pattern wait key key time ts
        = begin("a").where(type == "A").followedBy("b").where(type == "B");"#;
    let options = EngineOptions {
        max_partial_matches_total: Some(10),
        ..EngineOptions::default()
    };
    let mut e = engine(source, options);
    for i in 0..25 {
        e.push_json(
            &format!(r#"{{"key":"k{i}","ts":{i},"type":"A"}}"#),
            &mut out,
        );
    }
    assert_eq!(e.open_partial_matches(), 10);
    assert_eq!(e.stats().dropped_runs, 15);
}

#[test]
fn a_run_whose_deadline_moves_earlier_times_out_on_time() {
    // `a` waits for `b` under the 100ms window; once `b` is taken, the run waits for `c`
    // under a 3ms PREVIOUS_AND_CURRENT window: its deadline moves from 100 to 13.
    let source = r#"pattern p key key time ts
        = begin("a").where(type == "A").followedBy("b").where(type == "B")
          .followedBy("c").where(type == "C").within(3ms, PREVIOUS_AND_CURRENT).within(100ms);"#;
    let mut e = engine(
        source,
        EngineOptions {
            timeouts: true,
            ..EngineOptions::default()
        },
    );
    let mut out = Vec::new();
    for (key, ts, ty) in [
        ("k", 0, "A"),
        ("k", 10, "B"),
        ("other", 20, "D"),
        ("other", 30, "D"),
    ] {
        e.push_json(
            &format!(r#"{{"id":{ts},"key":"{key}","ts":{ts},"type":"{ty}"}}"#),
            &mut out,
        );
    }
    // The watermark is 29 > 13: the timeout is out before the end of input.
    assert_eq!(canonical(&e, &out), ["p \"k\" [a:0,b:10] Some(13)"]);
}

#[test]
fn a_rust_closure_reads_fields_of_earlier_events_of_the_partial_match() {
    // Stored events of patterns without closures keep only time and text; with a closure
    // the partial match's events stay whole. This one compares prices across events.
    use motif::pattern::Pattern;
    use motif::syntax::parse_expr;
    let rising = Pattern::begin("low")
        .where_(parse_expr(r#"kind == "quote""#).expect("expression parses"))
        .followed_by("high")
        .where_fn(|event, partial| {
            let low = partial.events_of("low");
            let (Some(first), Some(now)) = (low.first(), event.field("price").as_f64()) else {
                return false;
            };
            first.field("price").as_f64().is_some_and(|p| p < now)
        })
        .declare("rising")
        .key(&["sym"])
        .time("ts");
    let mut e = Engine::new(&[rising], EngineOptions::default()).expect("pattern compiles");
    let mut out = Vec::new();
    for (ts, price) in [(1, 10.0), (2, 9.0), (3, 12.0)] {
        let line = format!(r#"{{"sym":"x","kind":"quote","ts":{ts},"price":{price}}}"#);
        e.push_json(&line, &mut out);
    }
    e.finish(&mut out);
    let ends: Vec<i64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Match { m, .. } => m.events.last().map(|ev| ev.time),
            _ => None,
        })
        .collect();
    // 10 -> 12 and 9 -> 12 rise; 10 -> 9 does not.
    assert_eq!(ends, vec![3, 3], "{out:?}");
}

#[test]
fn keys_of_several_fields_or_of_numbers_partition_like_string_keys() {
    // The same stream keyed three ways: by one string field, by a number field, and by two
    // fields; every way splits the events into the same partitions, so each finds the same
    // matches (compared by their events).
    let pattern = |key: &str| {
        format!(
            r#"pattern p key {key} time ts = begin("a").where(kind == "a").followedBy("b").where(kind == "b");"#
        )
    };
    let mut lines = Vec::new();
    for i in 0..400u64 {
        let user = i % 7;
        let kind = ["a", "b", "c"][(i % 3) as usize];
        lines.push(format!(
            r#"{{"user":"u{user}","uid":{user},"region":"r{}","kind":"{kind}","ts":{i}}}"#,
            user % 2
        ));
    }
    let events_of = |source: String| {
        let mut e = engine(&source, EngineOptions::default());
        let mut out = Vec::new();
        for l in &lines {
            e.push_json(l, &mut out);
        }
        e.finish(&mut out);
        let mut ms: Vec<Vec<i64>> = out
            .iter()
            .filter_map(|o| match o {
                Output::Match { m, .. } => Some(m.events.iter().map(|ev| ev.time).collect()),
                _ => None,
            })
            .collect();
        ms.sort();
        ms
    };
    let by_name = events_of(pattern("user"));
    assert!(!by_name.is_empty());
    assert_eq!(events_of(pattern("uid")), by_name, "a number key field");
    assert_eq!(
        events_of(pattern("user, region")),
        by_name,
        "two key fields"
    );
}

/// The keys of the matches of `a` then `b` (per key) over `lines`, as JSON text.
fn match_keys(key: &str, lines: &[&str]) -> Vec<String> {
    let source = format!(
        r#"pattern p key {key} time ts = begin("a").where(kind == "a").followedBy("b").where(kind == "b");"#
    );
    let mut e = engine(&source, EngineOptions::default());
    let mut out = Vec::new();
    for l in lines {
        e.push_json(l, &mut out);
    }
    e.finish(&mut out);
    let mut keys: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Match { key, .. } => key.as_deref().map(str::to_string),
            _ => None,
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_number_key_and_its_text_are_different_partitions() {
    // An `a` of key 1 and a `b` of key "1": no match (Flink keys by typed value).
    let lines = [
        r#"{"k":1,"kind":"a","ts":1}"#,
        r#"{"k":"1","kind":"b","ts":2}"#,
    ];
    assert!(match_keys("k", &lines).is_empty());
    // Within one type they match, and the key keeps its type in the output.
    let lines = [
        r#"{"k":1,"kind":"a","ts":1}"#,
        r#"{"k":1,"kind":"b","ts":2}"#,
        r#"{"k":"1","kind":"a","ts":3}"#,
        r#"{"k":"1","kind":"b","ts":4}"#,
        r#"{"k":2.5,"kind":"a","ts":5}"#,
        r#"{"k":2.5,"kind":"b","ts":6}"#,
        r#"{"k":true,"kind":"a","ts":7}"#,
        r#"{"k":true,"kind":"b","ts":8}"#,
    ];
    assert_eq!(match_keys("k", &lines), vec!["\"1\"", "1", "2.5", "true"]);
}

#[test]
fn a_missing_or_null_key_is_a_reject_and_not_the_text_null() {
    // The text "null" is a key like any other.
    let lines = [
        r#"{"k":"null","kind":"a","ts":1}"#,
        r#"{"k":"null","kind":"b","ts":2}"#,
    ];
    assert_eq!(match_keys("k", &lines), vec!["\"null\""]);
    // A missing field, JSON null, an object or an array as a key field: the record has no
    // key (Flink's key selector fails on null); each pattern that keys by it rejects it.
    let mut e = engine(
        r#"pattern p key k, j time ts = begin("a").where(kind == "a").followedBy("b").where(kind == "b");"#,
        EngineOptions::default(),
    );
    let mut out = Vec::new();
    for l in [
        r#"{"j":1,"kind":"a","ts":1}"#,
        r#"{"k":null,"j":1,"kind":"b","ts":2}"#,
        r#"{"k":{"x":1},"j":1,"kind":"a","ts":3}"#,
        r#"{"k":1,"kind":"b","ts":4}"#,
        r#"{"k":1,"j":[1],"kind":"b","ts":5}"#,
    ] {
        e.push_json(l, &mut out);
    }
    e.finish(&mut out);
    let reasons: Vec<String> = out
        .iter()
        .map(|o| match o {
            Output::Reject { reason, .. } => reason.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    for (r, field) in reasons.iter().zip(["k", "k", "k", "j", "j"]) {
        assert!(
            r.starts_with(&format!("missing key field `{field}`")),
            "{r}"
        );
    }
}

#[test]
fn fields_of_a_compound_key_do_not_run_together() {
    // ("a\u{1f}b", "c") and ("a", "b\u{1f}c") were one key when keys were joined by U+001F.
    let lines = [
        r#"{"x":"a\u001fb","y":"c","kind":"a","ts":1}"#,
        r#"{"x":"a","y":"b\u001fc","kind":"b","ts":2}"#,
    ];
    assert!(match_keys("x, y", &lines).is_empty());
    let lines = [
        r#"{"x":"a","y":7,"kind":"a","ts":1}"#,
        r#"{"x":"a","y":7,"kind":"b","ts":2}"#,
    ];
    assert_eq!(match_keys("x, y", &lines), vec![r#"["a",7]"#]);
}

#[test]
fn a_borrowed_state_serialises_as_its_snapshot() {
    // The checkpoint of a single-threaded engine is written from the state where it lives;
    // it must read back as the snapshot would.
    let lines = shuffle_within(&stream(2000, 30, 5), 40, 3);
    let options = EngineOptions {
        timeouts: true,
        shards: 3,
        ..EngineOptions::default()
    };
    let mut e = engine(ABC, options);
    let mut out = Vec::new();
    for l in &lines[..1200] {
        e.push_json(l, &mut out);
    }
    assert!(e.open_partial_matches() > 0);
    let owned = motif::checkpoint::format::encode(&e.snapshot()).unwrap();
    let borrowed = motif::checkpoint::format::encode(&e.state_ref()).unwrap();
    assert_eq!(owned, borrowed);
}

/// A two-partition source whose partition 0 runs 10 s ahead of partition 1, noting what
/// the pipeline tells it ([`motif::source::Source::align`]).
struct Skewed {
    records: Vec<(String, usize)>,
    next: usize,
    told: Vec<Vec<bool>>,
}

impl motif::source::Source for Skewed {
    fn next_record(
        &mut self,
    ) -> Option<Result<motif::source::Record<'_>, motif::source::SourceError>> {
        let (json, partition) = self.records.get(self.next)?;
        self.next += 1;
        Some(Ok(motif::source::Record {
            json,
            origin: "<skewed>",
            line: self.next as u64,
            partition: *partition,
        }))
    }
    fn ended(&mut self) -> Option<usize> {
        None
    }
    fn may_wait(&self) -> bool {
        false
    }
    fn partitions(&self) -> usize {
        2
    }
    fn position(&self) -> motif::source::SourcePosition {
        motif::source::SourcePosition {
            interleaved: true,
            inputs: Vec::new(),
            next: 0,
        }
    }
    fn seek(
        &mut self,
        _: &motif::source::SourcePosition,
    ) -> Result<(), motif::source::SourceError> {
        Ok(())
    }
    fn alignment(&self) -> Option<i64> {
        Some(1000)
    }
    fn align(&mut self, ahead: &[bool]) {
        self.told.push(ahead.to_vec());
    }
}

/// The pipeline tells a source that can align which of its partitions run more than the
/// drift ahead, with either engine (enough records for the parallel engine's workers to
/// report leads: it learns them from finished chunks of 1,024 records).
#[test]
fn the_pipeline_tells_an_aligning_source_which_partition_runs_ahead() {
    use motif::pipeline::{self, OutputSpec, PipelineOptions};
    let decls = motif::syntax::load_str("<test>", ABC).expect("pattern");
    let records: Vec<(String, usize)> = (0..20_000)
        .map(|i| {
            let partition = i % 2;
            let ts = 1_000 * i64::from(partition == 0) * 10 + i as i64;
            let json = format!(r#"{{"key":"k{}","type":"A","ts":{ts},"price":1}}"#, i % 7);
            (json, partition)
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("motif-skewed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for workers in [1, 2] {
        let mut source = Skewed {
            records: records.clone(),
            next: 0,
            told: Vec::new(),
        };
        let options = PipelineOptions {
            engine: EngineOptions {
                source_partitions: 2,
                ..EngineOptions::default()
            },
            workers,
            ordered: false,
            strict: false,
            format: motif::output::OutputFormat::JsonLines,
            checkpoint: None,
            aggregates: Vec::new(),
            db_errors: motif::sink::table::DbErrorPolicy::Skip,
            batch_records: pipeline::DEFAULT_BATCH_RECORDS,
            quiet_advance_ms: None,
        };
        let spec = OutputSpec {
            matches: Some(dir.join(format!("matches-{workers}.jsonl"))),
            ..OutputSpec::default()
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let summary = pipeline::run(
            &decls,
            &options,
            &mut source,
            &spec,
            &stop,
            &mut |_| {},
            &mut |_| {},
        )
        .expect("run");
        assert_eq!(summary.stats.records, 20_000);
        assert!(
            source.told.iter().any(|t| t == &[true, false]),
            "{workers} worker(s): partition 0, 10 s ahead, is said to be ahead: {:?}",
            source.told
        );
        assert!(
            !source.told.iter().any(|t| t[1]),
            "{workers} worker(s): partition 1 is never ahead"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
