//! Throughput of motif, in events per second on one core, each scenario also stated as a
//! ratio against the decode-only baseline measured in the same process.
//!
//! `cargo bench --bench throughput` (options after `--`: `--events N` stream length,
//! `--repeat N` runs per scenario, median reported (default 3), `--only c,e` some scenarios).
//! Scenarios:
//!   (a) decode only: JSON line → event row with the fields the patterns read (the ceiling);
//!   (b) ../shared/peer/abc.motif over 1,000 keys, end to end from JSON lines, and
//!   (b') the same on pre-decoded events;
//!   (c) a 3-step followedBy pattern with `within(10s)` over 10,000 keys;
//!   (d) a oneOrMore with an iterative aggregate condition;
//!   (e) (c) with `within` 4× longer;
//!   (f) (b) with `--workers 1` (one thread) and `--workers 2` (parallel engine).
//! No assertion on any figure: this prints, tests assert.

use std::sync::Arc;

/// The allocator the `motif` binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Instant;

use motif::event::StrCache;
use motif::gen::{generate, GenOptions};
use motif::runtime::{Engine, EngineOptions, Output};

const ABC: &str = r#"
pattern abc
    key key
    time ts
= begin("A", skipPastLastEvent()).where(type == "A")
  .next("B").where(type == "B" and price > A.price).oneOrMore().consecutive().greedy()
  .next("C").where(type == "C")
  .within(10s);
"#;

fn three_step(within: &str) -> String {
    format!(
        r#"pattern three
    key key
    time ts
= begin("a").where(type == "A" and price < 50.0)
  .followedBy("b").where(type == "B" and price > a.price)
  .followedBy("c").where(type == "C" and price > b.price)
  .within({within});"#
    )
}

const ITERATIVE: &str = r#"
pattern rising
    key key
    time ts
= begin("first").where(type == "A")
  .followedBy("ups").where(type == "B" and price > avg(ups.price) and count(ups) < 20).oneOrMore()
  .followedBy("end").where(type == "C" and price > max(ups.price))
  .within(5s);
"#;

struct Figures {
    events: u64,
    secs: f64,
    matches: u64,
}

impl Figures {
    fn per_sec(&self) -> f64 {
        self.events as f64 / self.secs
    }
}

fn lines(events: u64, keys: u64) -> Vec<String> {
    let mut v = Vec::with_capacity(events as usize);
    generate(
        &GenOptions {
            events,
            keys,
            ..GenOptions::default()
        },
        |l| v.push(l.to_string()),
    );
    v
}

fn engine(source: &str) -> Engine {
    let decls = motif::syntax::load_str("<bench>", source)
        .unwrap_or_else(|e| panic!("bench pattern does not load: {e}"));
    Engine::new(&decls, EngineOptions::default()).expect("bench pattern compiles")
}

fn run_json(source: &str, input: &[String]) -> Figures {
    let mut e = engine(source);
    let mut out = Vec::with_capacity(64);
    let mut matches = 0;
    let t = Instant::now();
    for l in input {
        e.push_json(l, &mut out);
        matches += out.len() as u64;
        out.clear();
    }
    e.finish(&mut out);
    matches += out.len() as u64;
    Figures {
        events: input.len() as u64,
        secs: t.elapsed().as_secs_f64(),
        matches,
    }
}

/// The engine alone on decoded events: rows are decoded a batch at a time outside the timed
/// part (as a decoding stage would hand them over, still warm in cache, repeated short
/// strings shared through a [`StrCache`] as the engine's own decoder does), and only feeding
/// them to the engine is timed.
fn run_decoded(source: &str, input: &[String]) -> Figures {
    let mut e = engine(source);
    let mut strings = StrCache::new();
    let mut out: Vec<Output> = Vec::with_capacity(64);
    let mut matches = 0;
    let mut secs = 0.0;
    let mut batch = Vec::with_capacity(1024);
    for chunk in input.chunks(1024) {
        batch.extend(chunk.iter().map(|l| {
            (
                e.schema()
                    .decode_row_with(l, &mut strings)
                    .expect("generated JSON decodes"),
                Arc::<str>::from(l.as_str()),
            )
        }));
        let t = Instant::now();
        for (row, raw) in batch.drain(..) {
            e.push_row(row, raw, &mut out);
            matches += out.len() as u64;
            out.clear();
        }
        secs += t.elapsed().as_secs_f64();
    }
    let t = Instant::now();
    e.finish(&mut out);
    secs += t.elapsed().as_secs_f64();
    matches += out.len() as u64;
    Figures {
        events: input.len() as u64,
        secs,
        matches,
    }
}

fn decode_only(source: &str, input: &[String]) -> Figures {
    let e = engine(source);
    let mut strings = StrCache::new();
    let t = Instant::now();
    let mut fields = 0usize;
    for l in input {
        let row = e
            .schema()
            .decode_row_with(l, &mut strings)
            .expect("generated JSON decodes");
        let raw: Arc<str> = Arc::from(l.as_str());
        fields += row.len() + raw.len();
    }
    std::hint::black_box(fields);
    Figures {
        events: input.len() as u64,
        secs: t.elapsed().as_secs_f64(),
        matches: 0,
    }
}

/// The run with the median throughput of `runs`.
fn median(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    motif::process::disable_transparent_huge_pages();
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = arg(&args, "--events").unwrap_or(1_000_000);
    // Each scenario runs this many times and the median is reported: on a shared machine
    // single runs vary by tens of percent.
    let repeat: usize = arg::<usize>(&args, "--repeat").unwrap_or(3).max(1);
    let only: Option<String> = arg(&args, "--only");
    let want = |tag: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|t| t == tag))
    };
    println!(
        "motif throughput, {events} generated events per scenario, one core, median of {repeat} runs\n"
    );
    let k1 = lines(events, 1_000);
    let k10 = lines(events, 10_000);

    let base = median((0..repeat).map(|_| decode_only(ABC, &k1)).collect());
    let report = |name: &str, f: &Figures| {
        println!(
            "{name:<58} {:>12.0} events/s/core  {:>6.2}× of decode-only  ({} outputs, {:.2}s)",
            f.per_sec(),
            f.per_sec() / base.per_sec(),
            f.matches,
            f.secs
        );
    };
    report("(a) decode only (the ceiling)", &base);
    if want("b") {
        let f = median((0..repeat).map(|_| run_json(ABC, &k1)).collect());
        report("(b) abc.motif, 1,000 keys, from JSON lines", &f);
    }
    if want("b'") {
        let f = median((0..repeat).map(|_| run_decoded(ABC, &k1)).collect());
        report("(b') abc.motif, 1,000 keys, pre-decoded", &f);
    }
    // (c) and (e) alternate, so that both see the same machine; the ratio is the median of
    // the ratios of each pair.
    let (mut cs, mut es, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeat {
        let c = want("c").then(|| run_json(&three_step("10s"), &k10));
        let e = want("e").then(|| run_json(&three_step("40s"), &k10));
        if let (Some(c), Some(e)) = (&c, &e) {
            ratios.push(e.per_sec() / c.per_sec());
        }
        cs.extend(c);
        es.extend(e);
    }
    if !cs.is_empty() {
        report(
            "(c) 3-step followedBy within(10s), 10,000 keys",
            &median(cs),
        );
    }
    if !es.is_empty() {
        report("(e) (c) with within(40s)", &median(es));
    }
    print_ratios(
        "(e)/(c) throughput ratio",
        &mut ratios,
        " (target: at least 0.75)",
    );
    if want("c") && want("e") {
        for (name, within) in [("(c)", "10s"), ("(e)", "40s")] {
            let (parts, runs) = state_held(&three_step(within), &k10);
            println!(
                "    {name} holds state for {parts:.0} of 10,000 keys, {runs:.0} partial matches (mean over the run, untimed)"
            );
        }
    }
    if want("d") {
        let f = median((0..repeat).map(|_| run_json(ITERATIVE, &k1)).collect());
        report("(d) oneOrMore with iterative aggregates, 1,000 keys", &f);
    }
    if want("f") {
        // As the CLI runs them: `--workers 1` is the single-threaded engine, `--workers N`
        // the parallel one (a reading thread and N workers). Alternating, like (c)/(e).
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let (mut ones, mut twos, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeat {
            let one = run_json(ABC, &k1);
            let two = run_parallel(ABC, &k1, 2);
            ratios.push(two.per_sec() / one.per_sec());
            ones.push(one);
            twos.push(two);
        }
        for (workers, f) in [(1, median(ones)), (2, median(twos))] {
            println!(
                "(f) abc.motif, --workers {workers}: {:>12.0} events/s in all, {:>10.0} events/s per core ({cores} cores), {} outputs",
                f.per_sec(),
                f.per_sec() / (workers.min(cores)) as f64,
                f.matches
            );
        }
        print_ratios("--workers 2 / --workers 1", &mut ratios, "");
    }
}

/// The state an engine holds while it runs over `input`, sampled every 10,000 events in a
/// separate, untimed pass: mean partitions with state and mean open partial matches. The
/// longer the window, the more keys hold state at once, and the less of it stays in cache.
fn state_held(source: &str, input: &[String]) -> (f64, f64) {
    let mut e = engine(source);
    let mut out = Vec::with_capacity(64);
    let (mut parts, mut runs, mut samples) = (0usize, 0usize, 0usize);
    for (i, l) in input.iter().enumerate() {
        e.push_json(l, &mut out);
        out.clear();
        if i % 10_000 == 9_999 {
            parts += e.live_partitions();
            runs += e.open_partial_matches();
            samples += 1;
        }
    }
    let n = samples.max(1) as f64;
    (parts as f64 / n, runs as f64 / n)
}

/// Prints the median and range of per-pair throughput ratios, if there are any.
fn print_ratios(label: &str, ratios: &mut [f64], note: &str) {
    if ratios.is_empty() {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "    {label}: median {:.2}, range {:.2}-{:.2} over {} pairs{note}",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
}

/// Counts the lines a parallel engine gives.
struct Count(u64);

impl motif::runtime::Collect<motif::output::Line> for Count {
    fn output(&mut self, _seq: u64, _kind: motif::runtime::OutputKind, _l: motif::output::Line) {
        self.0 += 1;
    }
}

fn run_parallel(source: &str, input: &[String], workers: usize) -> Figures {
    let decls = motif::syntax::load_str("<bench>", source)
        .unwrap_or_else(|e| panic!("bench pattern does not load: {e}"));
    // Rendered on the workers, as the command line does.
    let (mut e, _) = motif::runtime::ParallelEngine::resume(
        &decls,
        EngineOptions::default(),
        workers,
        motif::output::Render::default(),
        None,
    )
    .expect("bench pattern compiles");
    let mut count = Count(0);
    let t = Instant::now();
    for l in input {
        e.push_json(l, &mut count);
    }
    e.finish(&mut count).expect("no worker fails");
    let matches = count.0;
    Figures {
        events: input.len() as u64,
        secs: t.elapsed().as_secs_f64(),
        matches,
    }
}
