//! The parallel engine against the single-threaded one: on random streams mixing good,
//! malformed, untimed and late records, across chunk boundaries, any number of workers
//! emits exactly the single engine's lines (matches, timed-out partial matches, late events,
//! rejects) at the same steps, the same watermark moves, and keeps the collector contract
//! (nothing of a step after its completion) that the `--ordered` and `--strict` policies
//! rest on.

use std::sync::mpsc;
use std::time::Duration;

use motif::output::{Line, Render};
use motif::runtime::{
    AsIs, Collect, Engine, EngineOptions, Input, Output, OutputKind, ParallelEngine, Prepare, Run,
    Serial, END_OF_INPUT,
};
use proptest::prelude::*;

/// Two patterns over different keys, one with a window and timeouts, one unkeyed.
const PATTERNS: &str = r#"
pattern abc
    key key
    time ts
    lateness 20ms
= begin("a").where(type == "A")
  .followedBy("b").where(type == "B" and price > a.price)
  .followedBy("c").where(type == "C")
  .within(100ms);
pattern pair
    time ts
    lateness 5ms
= begin("x").where(type == "C").next("y").where(type == "A");
"#;

/// One input record: an event (key, type, time offset, price) or a malformed line.
#[derive(Debug, Clone)]
enum Rec {
    Event(u8, u8, u16, u8),
    NoTime(u8),
    Bad,
    /// The watermark moved to 1000 + this without an event ([`Run::advance_watermark`]).
    Advance(u16),
    /// The input quiet for this many ms ([`Run::advance_quiet`]).
    Quiet(u16),
}

fn rec() -> impl Strategy<Value = Rec> {
    prop_oneof![
        20 => (0u8..6, 0u8..3, 0u16..40, 0u8..100).prop_map(|(k, t, d, p)| Rec::Event(k, t, d, p)),
        1 => (0u8..6).prop_map(Rec::NoTime),
        1 => Just(Rec::Bad),
        1 => (0u16..60).prop_map(Rec::Advance),
        1 => (0u16..60).prop_map(Rec::Quiet),
    ]
}

/// The records as JSON lines; times advance ~3 ms a record with up to 40 ms of disorder, so
/// some events are late for the 5 ms pattern and a few for the 20 ms one.
fn lines(recs: &[Rec]) -> Vec<String> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| match r {
            Rec::Event(k, t, d, p) => format!(
                r#"{{"id":{i},"key":"k{k}","type":"{}","ts":{},"price":{p}}}"#,
                ["A", "B", "C"][*t as usize],
                1000 + 3 * i as i64 - i64::from(*d)
            ),
            Rec::NoTime(k) => format!(r#"{{"id":{i},"key":"k{k}","type":"A"}}"#),
            Rec::Bad => format!("{{\"id\":{i},"),
            Rec::Advance(t) => format!("!advance {}", 1000 + i64::from(*t) + 3 * i as i64),
            Rec::Quiet(ms) => format!("!quiet {ms}"),
        })
        .collect()
}

fn options() -> EngineOptions {
    EngineOptions {
        timeouts: true,
        watermarks: true,
        ..EngineOptions::default()
    }
}

/// What an engine gave its collector, with any breach of [`Collect`]'s contract: an output
/// or a watermark of a step already said to be complete, completion going backwards, a
/// watermark that does not come after every output of its pattern's earlier steps.
struct Got<T> {
    outputs: Vec<(u64, T)>,
    watermarks: Vec<(u64, usize, i64)>,
    /// For each watermark move, how many outputs had come before it.
    watermarks_after: Vec<usize>,
    completed: Option<u64>,
    breaches: Vec<String>,
}

impl<T> Default for Got<T> {
    fn default() -> Got<T> {
        Got {
            outputs: Vec::new(),
            watermarks: Vec::new(),
            watermarks_after: Vec::new(),
            completed: None,
            breaches: Vec::new(),
        }
    }
}

impl<T> Collect<T> for Got<T> {
    fn output(&mut self, seq: u64, _kind: OutputKind, item: T) {
        if self.completed.is_some_and(|c| seq <= c) {
            self.breaches.push(format!(
                "output of step {seq} after completion of {:?}",
                self.completed
            ));
        }
        self.outputs.push((seq, item));
    }

    fn watermark(&mut self, seq: u64, pattern: usize, watermark: i64) {
        if self.completed.is_some_and(|c| seq <= c) {
            self.breaches.push(format!(
                "watermark of step {seq} after completion of {:?}",
                self.completed
            ));
        }
        self.watermarks.push((seq, pattern, watermark));
        self.watermarks_after.push(self.outputs.len());
    }

    fn complete(&mut self, through: u64) {
        if self.completed.is_some_and(|c| through < c) {
            self.breaches.push(format!(
                "completion went back from {:?} to {through}",
                self.completed
            ));
        }
        self.completed = Some(through);
    }
}

/// Gives line `i` to `run`: a record, or a clock step (`!advance T`, `!quiet MS`).
fn step<T>(run: &mut dyn Run<T>, i: usize, line: &str, got: &mut Got<T>) {
    let clock = |what: &str| {
        line.strip_prefix(what)
            .and_then(|n| n.trim().parse::<i64>().ok())
    };
    if let Some(to) = clock("!advance") {
        run.advance_watermark(to, got);
    } else if let Some(ms) = clock("!quiet") {
        run.advance_quiet(ms.unsigned_abs(), got);
    } else {
        let input = Input {
            json: line,
            origin: "<test>",
            line: i as u64 + 1,
            ..Input::default()
        };
        run.push(&input, got);
    }
}

/// The lines of an engine's run in (step, text) order: a deterministic order whatever the
/// number of workers.
fn in_order(mut got: Vec<(u64, Line)>) -> Vec<(u64, Line)> {
    got.sort();
    got
}

/// The single engine's outputs as the command line renders them, with their steps.
fn single(lines: &[String]) -> Got<Line> {
    let decls = motif::syntax::load_str("<test>", PATTERNS).expect("patterns load");
    let engine = Engine::new(&decls, options()).expect("patterns compile");
    let mut run = Serial::new(engine, Render::default());
    let mut got = Got::default();
    for (i, l) in lines.iter().enumerate() {
        step(&mut run, i, l, &mut got);
    }
    run.finish(&mut got).expect("a single engine does not fail");
    got
}

/// The parallel engine's outputs, prepared on the workers by `prepare`, in the order
/// given; fails instead of hanging.
fn parallel<P: Prepare + Clone>(lines: &[String], workers: usize, prepare: P) -> Got<P::Item>
where
    P::Item: Send,
{
    let lines = lines.to_vec();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let decls = motif::syntax::load_str("<test>", PATTERNS).expect("patterns load");
        let (mut e, _) = ParallelEngine::resume(&decls, options(), workers, prepare, None)
            .expect("engine starts");
        let mut got = Got::default();
        for (i, l) in lines.iter().enumerate() {
            step(&mut e, i, l, &mut got);
        }
        e.finish(&mut got).expect("no worker fails");
        let _ = tx.send(got);
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{workers} workers did not finish within 60 s"))
}

/// Checks that after each watermark move of a pattern no match of that pattern ending at or
/// before it follows (timed-out partial matches and late events excepted), and that a
/// pattern's watermark only moves forward.
fn check_watermarks(got: &Got<Output>) -> Result<(), String> {
    let mut last: Vec<Option<i64>> = Vec::new();
    for (&(seq, p, wm), &after) in got.watermarks.iter().zip(&got.watermarks_after) {
        if last.len() <= p {
            last.resize(p + 1, None);
        }
        if last[p].is_some_and(|prev| wm <= prev) {
            return Err(format!(
                "pattern {p}'s watermark went from {:?} to {wm}",
                last[p]
            ));
        }
        last[p] = Some(wm);
        for (s, o) in &got.outputs[after..] {
            if let Output::Match { pattern, m, .. } = o {
                let end = m.events.last().map_or(i64::MIN, |e| e.time);
                if *pattern == p && m.timed_out.is_none() && end <= wm {
                    return Err(format!(
                        "a match of pattern {p} ending at {end} (step {s}) came after its watermark {wm} (step {seq})"
                    ));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_number_of_workers_emits_the_single_engines_lines(
        recs in prop::collection::vec(rec(), 0..2600),
        workers in 1usize..5,
    ) {
        let lines = lines(&recs);
        let want = single(&lines);
        prop_assert!(want.breaches.is_empty(), "{:?}", want.breaches);
        let got = parallel(&lines, workers, Render::default());
        prop_assert!(got.breaches.is_empty(), "{:?}", got.breaches);
        // The same lines with the same steps; in the same order once sorted by step.
        prop_assert_eq!(in_order(got.outputs), in_order(want.outputs));
        // Watermark moves: the same, in the same order, at the same steps.
        prop_assert_eq!(&got.watermarks, &want.watermarks);
        prop_assert_eq!(got.completed, Some(END_OF_INPUT));
    }

    #[test]
    fn structured_outputs_are_the_rendered_ones_and_respect_watermarks(
        recs in prop::collection::vec(rec(), 0..1500),
        workers in 1usize..4,
    ) {
        let lines = lines(&recs);
        let decls = motif::syntax::load_str("<test>", PATTERNS).expect("patterns load");
        let nfas: Vec<_> = Engine::new(&decls, options()).expect("compiles").nfas().cloned().collect();
        let got = parallel(&lines, workers, AsIs);
        prop_assert!(got.breaches.is_empty(), "{:?}", got.breaches);
        check_watermarks(&got).map_err(TestCaseError::fail)?;
        let rendered: Vec<(u64, Line)> = got
            .outputs
            .iter()
            .map(|(seq, o)| (*seq, Render::default().line(&nfas, o)))
            .collect();
        prop_assert_eq!(in_order(rendered), in_order(single(&lines).outputs));
    }
}

/// Event-time alignment: over two source partitions, the engine says which partition runs
/// ahead of the other by more than the drift — the single engine at once, the parallel one
/// as of the chunks its workers finished (after a flush, all of them).
#[test]
fn both_engines_say_which_source_partition_runs_ahead() {
    let decls = motif::syntax::load_str("<test>", PATTERNS).expect("patterns load");
    let opts = EngineOptions {
        source_partitions: 2,
        ..options()
    };
    let serial = Serial::new(Engine::new(&decls, opts).unwrap(), Render::default());
    let (parallel, _) = ParallelEngine::resume(&decls, opts, 2, Render::default(), None).unwrap();
    let engines: Vec<Box<dyn Run<Line>>> = vec![Box::new(serial), Box::new(parallel)];
    for mut run in engines {
        let mut got = Got::default();
        let push =
            |run: &mut Box<dyn Run<Line>>, got: &mut Got<Line>, partition: usize, ts: i64| {
                let json = format!(r#"{{"key":"k","type":"A","ts":{ts},"price":1}}"#);
                let input = Input {
                    json: &json,
                    origin: "<test>",
                    partition,
                    ..Input::default()
                };
                run.push(&input, got);
            };
        push(&mut run, &mut got, 0, 1000);
        push(&mut run, &mut got, 1, 1000);
        push(&mut run, &mut got, 0, 1500);
        run.flush(&mut got);
        let ahead = |run: &dyn Run<Line>, drift: i64| -> Vec<bool> {
            let leads = run.leads();
            assert_eq!(leads.len(), 2, "both engines can tell");
            leads.iter().map(|l| *l > drift).collect()
        };
        assert_eq!(ahead(&*run, 100), [true, false], "1500 is 500 past 1000");
        assert_eq!(ahead(&*run, 500), [false, false], "within the drift");
        push(&mut run, &mut got, 1, 1700);
        run.flush(&mut got);
        assert_eq!(ahead(&*run, 100), [false, true]);
        run.finish(&mut got).unwrap();
        assert!(got.breaches.is_empty(), "{:?}", got.breaches);
    }
}
