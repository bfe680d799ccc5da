//! Long sequences and large windows (issue 15): how the cost of matching grows with the
//! window `W` and the sequence length `n`, in events per second on one core, as a ratio
//! against decoding the same events alone in the same process, and in microseconds per
//! output match.
//!
//! `cargo bench --bench long_sequences` (options after `--`: `--only any,anyrare,skip,rare` some
//! families, `--n-max N` longest chain (default 4), `--w-max W` largest window (default
//! 1024), `--repeat N` runs of each point, the median reported (default 1)). One key, one
//! event per millisecond, so a window of `W` ms holds `W` events.
//! Families:
//!   any:  `followedByAny` chains of n variables over the alphabet a..e, no skip strategy,
//!         every match counted (the output grows as W^(n-1));
//!   anyrare: the same chains with a last type 1 in 2,000 events (few matches, W^(n-1)
//!         partial matches for the list matcher);
//!   skip: the same chains with `skipPastLastEvent()` and a last type 1 in 200 events;
//!   rare: `begin(a).next(b).followedBy(z)`, z one event in 50,000, W = 100 ms .. 100 s,
//!         without and with `skipPastLastEvent()`.
//! Each point runs with the partial matches in one list, as Flink keeps them, and (where the
//! pattern allows it: no skip strategy, or no two runs sharing a first event) grouped by state, the engine's
//! default above 8 per key (`--group-runs-at N` sets that threshold), and on the compact
//! matcher where it runs the pattern (the engine's default then), each with the speed-up
//! against the list.
//! No assertion on any figure: this prints, tests assert.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Instant;

use motif::event::StrCache;
use motif::nfa::Grouping;
use motif::runtime::{Engine, EngineOptions};

/// A small deterministic generator (xorshift), so every run sees the same events.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` events, one per millisecond; the type of event `i` is `pick(i, random)`.
fn events(n: usize, mut pick: impl FnMut(usize, u64) -> char) -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| format!(r#"{{"k":"x","t":"{}","ts":{i}}}"#, pick(i, rng.next())))
        .collect()
}

fn chain(n: usize, window_ms: u64, skip: &str) -> String {
    let names = ["a", "b", "c", "d", "e", "f"];
    let mut s = format!(
        "pattern p\n    key k\n    time ts\n= begin(\"v1\"{skip}).where(t == \"{}\")",
        names[0]
    );
    for (i, t) in names.iter().enumerate().take(n).skip(1) {
        s.push_str(&format!(
            "\n  .followedByAny(\"v{}\").where(t == \"{t}\")",
            i + 1
        ));
    }
    s.push_str(&format!("\n  .within({window_ms}ms);\n"));
    s
}

struct Figures {
    events: usize,
    secs: f64,
    matches: u64,
}

fn run(
    source: &str,
    input: &[String],
    group_runs_at: Option<usize>,
    list_matcher: bool,
) -> Figures {
    let decls = motif::syntax::load_str("<bench>", source)
        .unwrap_or_else(|e| panic!("bench pattern does not load: {e}"));
    let options = EngineOptions {
        // The families are about the partial matches; no cap may change what they find.
        max_runs_per_key: Some(0),
        group_runs_at,
        list_matcher,
        ..EngineOptions::default()
    };
    let mut e = Engine::new(&decls, options).expect("bench pattern compiles");
    let mut out = Vec::with_capacity(1024);
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
        events: input.len(),
        secs: t.elapsed().as_secs_f64(),
        matches,
    }
}

/// Decoding the events alone (the fields the pattern reads): the ceiling.
fn decode_only(source: &str, input: &[String]) -> f64 {
    let decls = motif::syntax::load_str("<bench>", source).expect("loads");
    let e = Engine::new(&decls, EngineOptions::default()).expect("compiles");
    let mut strings = StrCache::new();
    let t = Instant::now();
    let mut n = 0usize;
    for l in input {
        let row = e
            .schema()
            .decode_row_with(l, &mut strings)
            .expect("decodes");
        let raw: Arc<str> = Arc::from(l.as_str());
        n += row.len() + raw.len();
    }
    std::hint::black_box(n);
    input.len() as f64 / t.elapsed().as_secs_f64()
}

/// Runs a family's point with the runs in one list (as Flink keeps them) and, where the
/// pattern allows it, grouped by state (the default above 8 runs a key).
/// How a point runs: the grouping threshold and how many times (the median is reported).
#[derive(Clone, Copy)]
struct Setup {
    group_at: Option<usize>,
    repeat: usize,
}

fn report(family: &str, label: &str, source: &str, input: &[String], setup: Setup) {
    let ceiling = decode_only(source, input);
    let decls = motif::syntax::load_str("<bench>", source).expect("loads");
    let engine = Engine::new(&decls, EngineOptions::default()).expect("compiles");
    let groups = engine.nfa(0).grouping() == Grouping::ByState;
    let compact = engine.nfa(0).compact_matcher().is_ok();
    let mut layouts = vec![("list", Some(usize::MAX), true)];
    if groups {
        layouts.push(("grouped", setup.group_at, true));
    }
    if compact {
        layouts.push(("compact", None, false));
    }
    let mut list_secs = None;
    for (layout, group_runs_at, list_matcher) in layouts {
        let mut runs: Vec<Figures> = (0..setup.repeat.max(1))
            .map(|_| run(source, input, group_runs_at, list_matcher))
            .collect();
        runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        let f = runs.swap_remove(runs.len() / 2);
        let eps = f.events as f64 / f.secs;
        let per_match = if f.matches > 0 {
            format!("{:.3}", f.secs * 1e6 / f.matches as f64)
        } else {
            "-".to_string()
        };
        let speedup = match list_secs {
            Some(l) => format!("{:.1}x list", l / f.secs),
            None => String::new(),
        };
        list_secs.get_or_insert(f.secs);
        println!(
            "{family:<7} {label:<12} {layout:<8} {:>9} events {:>10} matches {:>8.3} s {:>12.0} events/s {:>6.3} of decode {:>9} us/match {speedup}",
            f.events, f.matches, f.secs, eps, eps / ceiling, per_match
        );
    }
}

fn main() {
    motif::process::disable_transparent_huge_pages();
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = opt("--only").unwrap_or_else(|| "any,anyrare,skip,rare".to_string());
    let families: Vec<&str> = only.split(',').collect();
    let n_max: usize = opt("--n-max").and_then(|v| v.parse().ok()).unwrap_or(4);
    let setup = Setup {
        group_at: opt("--group-runs-at").and_then(|v| v.parse().ok()),
        repeat: opt("--repeat").and_then(|v| v.parse().ok()).unwrap_or(1),
    };
    let w_max: u64 = opt("--w-max").and_then(|v| v.parse().ok()).unwrap_or(1024);
    let windows: Vec<u64> = [16u64, 64, 256, 1024]
        .into_iter()
        .filter(|w| *w <= w_max)
        .collect();
    let alphabet = ['a', 'b', 'c', 'd', 'e', 'f'];
    if families.contains(&"any") {
        for n in 3..=n_max {
            for &w in &windows {
                // Keep each run to a few million matches: the output grows as W^(n-1).
                let budget = 4_000_000f64 / (w as f64).powi(n as i32 - 1) * 50.0;
                let count = (budget as usize).clamp(500, 200_000);
                let input = events(count, |_, r| alphabet[(r % n as u64) as usize]);
                report(
                    "any",
                    &format!("n={n} W={w}"),
                    &chain(n, w, ""),
                    &input,
                    setup,
                );
            }
        }
    }
    if families.contains(&"anyrare") {
        // The `any` chains waiting for a rare last type (1 in 2,000), no skip strategy:
        // few matches, and W^(n-1) partial matches for the list matcher. Points whose
        // output would pass 5M matches are left out.
        for n in 3..=n_max {
            for &w in &windows {
                let per_last = (w as f64 / (n - 1) as f64).powi(n as i32 - 1)
                    / (1..n).map(|k| k as f64).product::<f64>();
                if per_last * 10.0 > 5e6 {
                    continue;
                }
                let last = alphabet[n - 1];
                let input = events(20_000, |_, r| {
                    if r % 2_000 == 0 {
                        last
                    } else {
                        alphabet[((r >> 11) % (n as u64 - 1)) as usize]
                    }
                });
                report(
                    "anyrare",
                    &format!("n={n} W={w}"),
                    &chain(n, w, ""),
                    &input,
                    setup,
                );
            }
        }
    }
    if families.contains(&"skip") {
        for n in 3..=n_max {
            for &w in &windows {
                let last = alphabet[n - 1];
                let input = events(20_000, |_, r| {
                    if r % 200 == 0 {
                        last
                    } else {
                        alphabet[((r >> 8) % (n as u64 - 1)) as usize]
                    }
                });
                report(
                    "skip",
                    &format!("n={n} W={w}"),
                    &chain(n, w, ", skipPastLastEvent()"),
                    &input,
                    setup,
                );
            }
        }
    }
    if families.contains(&"rare") {
        let source = |w: u64, skip: &str| {
            format!(
                "pattern p\n    key k\n    time ts\n= begin(\"a\"{skip}).where(t == \"a\")\n  .next(\"b\").where(t == \"b\")\n  .followedBy(\"z\").where(t == \"z\")\n  .within({w}ms);\n"
            )
        };
        let input = events(200_000, |i, r| {
            if i % 50_000 == 49_999 {
                'z'
            } else {
                ['a', 'b', 'c'][(r % 3) as usize]
            }
        });
        for w in [100u64, 1_000, 10_000, 100_000] {
            report("rare", &format!("W={w}"), &source(w, ""), &input, setup);
        }
        // The same with a skip strategy: no two of its runs share a first event, so they
        // are grouped too.
        for w in [100u64, 1_000, 10_000, 100_000] {
            let skip = ", skipPastLastEvent()";
            report(
                "rare",
                &format!("W={w} skip"),
                &source(w, skip),
                &input,
                setup,
            );
        }
    }
}
