//! The parallel engine against the single-threaded one: on random streams mixing good,
//! malformed, untimed and late records, across chunk boundaries, any number of workers
//! emits exactly the single engine's lines (matches, timed-out partial matches, late events,
//! rejects), and with `ordered` in the same order whatever the number of workers.

use std::sync::mpsc;
use std::time::Duration;

use motif::output;
use motif::runtime::parallel::{Line, ParallelEngine, Stream};
use motif::runtime::{Engine, EngineOptions, Output};
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
}

fn rec() -> impl Strategy<Value = Rec> {
    prop_oneof![
        20 => (0u8..6, 0u8..3, 0u16..40, 0u8..100).prop_map(|(k, t, d, p)| Rec::Event(k, t, d, p)),
        1 => (0u8..6).prop_map(Rec::NoTime),
        1 => Just(Rec::Bad),
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
        })
        .collect()
}

fn options() -> EngineOptions {
    EngineOptions {
        timeouts: true,
        ..EngineOptions::default()
    }
}

/// The single engine's output as (stream, text) lines, rendered as the CLI renders them.
fn single(lines: &[String]) -> Vec<(Stream, String)> {
    let decls = motif::syntax::load_str("<test>", PATTERNS).expect("patterns load");
    let mut e = Engine::new(&decls, options()).expect("patterns compile");
    let mut outs = Vec::new();
    let mut rendered = Vec::new();
    let mut render = |e: &Engine, outs: &mut Vec<Output>, line_no: u64, record: &str| {
        for o in outs.drain(..) {
            let mut text = String::new();
            let r = output::write_output(&mut text, |p| e.nfa(p), &o, "<test>", line_no, record);
            rendered.push((r.stream, text));
        }
    };
    for (i, l) in lines.iter().enumerate() {
        e.push_json(l, &mut outs);
        render(&e, &mut outs, i as u64 + 1, l);
    }
    e.finish(&mut outs);
    render(&e, &mut outs, 0, "");
    rendered
}

/// The parallel engine's lines, in the order emitted; fails instead of hanging.
fn parallel(lines: &[String], workers: usize, ordered: bool) -> Vec<Line> {
    let lines = lines.to_vec();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let decls = motif::syntax::load_str("<test>", PATTERNS).expect("patterns load");
        let mut e =
            ParallelEngine::new(&decls, options(), workers, ordered).expect("engine starts");
        let mut got = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            e.push_json(l, "<test>", i as u64 + 1, &mut |l| got.push(l));
        }
        e.finish(&mut |l| got.push(l)).expect("no worker fails");
        let _ = tx.send(got);
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{workers} workers did not finish within 60 s"))
}

fn sorted(mut v: Vec<(Stream, String)>) -> Vec<(Stream, String)> {
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_number_of_workers_emits_the_single_engines_lines(
        recs in prop::collection::vec(rec(), 0..2600),
        workers in 1usize..5,
    ) {
        let lines = lines(&recs);
        let want = sorted(single(&lines));
        let got: Vec<(Stream, String)> =
            parallel(&lines, workers, false).into_iter().map(|l| (l.stream, l.text)).collect();
        prop_assert_eq!(sorted(got), want);
        let ordered = parallel(&lines, workers, true);
        let ordered_one = parallel(&lines, 1, true);
        prop_assert_eq!(ordered, ordered_one, "--ordered output depends on the worker count");
    }
}
