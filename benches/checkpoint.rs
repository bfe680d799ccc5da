//! Checkpoint cost: size and time to take, write and restore checkpoints of states with
//! 100k and 1M open partial matches, and the throughput of a run that checkpoints every
//! 10 s against the same run without checkpoints, measured in the same process.
//!
//! `cargo bench --bench checkpoint` (options after `--`: `--seconds N` length of each
//! throughput run, default 30; `--only states` or `--only throughput`).
//! No assertion on any figure: this prints, tests assert.

/// The allocator the `motif` binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use motif::checkpoint::store::Store;
use motif::checkpoint::Checkpoint;
use motif::gen::{generate, GenOptions};
use motif::runtime::{Engine, EngineOptions, Stats};

/// Every `A` starts a partial match that waits for a `Z` that never comes (no window): the
/// open partial matches are exactly the `A` events.
const WAITING: &str = r#"
pattern waiting key key time ts
= begin("a").where(type == "A").followedByAny("z").where(type == "Z");
"#;

/// Scenario (e) of the throughput bench: 3 steps, `within(40s)`, 10,000 keys.
const THREE_40S: &str = r#"
pattern three key key time ts
= begin("a").where(type == "A" and price < 50.0)
  .followedBy("b").where(type == "B" and price > a.price)
  .followedBy("c").where(type == "C" and price > b.price)
  .within(40s);
"#;

fn engine(source: &str) -> Engine {
    let decls = motif::syntax::load_str("<bench>", source)
        .unwrap_or_else(|e| panic!("bench pattern does not load: {e}"));
    Engine::new(&decls, EngineOptions::default()).expect("bench pattern compiles")
}

fn checkpoint_of(e: &Engine, id: u64) -> Checkpoint {
    Checkpoint {
        id,
        taken_at_ms: 0,
        finished: false,
        records: e.stats().records,
        source: None,
        sinks: Vec::new(),
        stats: e.stats(),
        engine: Some(e.snapshot()),
        aggregates: None,
        match_table: None,
    }
}

fn borrowed_checkpoint(e: &Engine, id: u64) -> Checkpoint<motif::runtime::EngineStateRef<'_>> {
    Checkpoint {
        id,
        taken_at_ms: 0,
        finished: false,
        records: e.stats().records,
        source: None,
        sinks: Vec::new(),
        stats: e.stats(),
        engine: Some(e.state_ref()),
        aggregates: None,
        match_table: None,
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// A state of `partial` open partial matches over 10,000 keys: its checkpoint's size, and
/// the time to snapshot, encode, write (fsync, rename), read, decode and restore it.
fn state(partial: u64, dir: &std::path::Path) {
    let mut e = engine(WAITING);
    let mut out = Vec::new();
    for i in 0..partial {
        let line = format!(
            r#"{{"key":"k{:05}","ts":{},"type":"A","price":{}.5}}"#,
            i % 10_000,
            i,
            i % 100
        );
        e.push_json(&line, &mut out);
    }
    assert_eq!(e.open_partial_matches() as u64, partial);
    // As a single-threaded run writes it: the state serialised where it lives, into a buffer
    // the size of the previous checkpoint (`first`: the first checkpoint, with no size known).
    let t = Instant::now();
    let first = borrowed_checkpoint(&e, 1).to_bytes().expect("encodes");
    let first_write = t.elapsed();
    let t = Instant::now();
    let bytes = borrowed_checkpoint(&e, 1)
        .to_bytes_sized(first.len())
        .expect("encodes");
    let encode = t.elapsed();
    assert_eq!(bytes, first);
    // As a parallel run does: the state copied (the workers send it), then encoded.
    let t = Instant::now();
    let cp = checkpoint_of(&e, 1);
    let snap = t.elapsed();
    let t = Instant::now();
    let copied = cp.to_bytes_sized(first.len()).expect("encodes");
    let copied_encode = t.elapsed();
    assert_eq!(copied, first);
    let store = Store::open(dir).expect("store");
    let t = Instant::now();
    store.write(1, &bytes).expect("writes");
    let write = t.elapsed();
    drop(cp);
    let t = Instant::now();
    let read = std::fs::read(store.path_of(1)).expect("reads");
    let back = Checkpoint::from_bytes(&read).expect("decodes");
    let decode = t.elapsed();
    let mut fresh = engine(WAITING);
    let t = Instant::now();
    fresh
        .restore(back.engine.expect("has state"), false)
        .expect("restores");
    let restore = t.elapsed();
    assert_eq!(fresh.open_partial_matches() as u64, partial);
    println!(
        "{partial:>9} partial matches: {:.1} MB ({:.0} B each); one thread: serialise in place {} (first checkpoint {}); workers' way: copy {} + encode {}; write+fsync {}, read+decode {}, restore {} (read+decode+restore {})",
        bytes.len() as f64 / 1e6,
        bytes.len() as f64 / partial as f64,
        secs(encode),
        secs(first_write),
        secs(snap),
        secs(copied_encode),
        secs(write),
        secs(decode),
        secs(restore),
        secs(decode + restore)
    );
}

/// Events per second over `seconds` of scenario (e)'s stream, taking a checkpoint (snapshot,
/// encode, atomic write with fsync) every `every` if set.
fn throughput(
    seconds: u64,
    every: Option<Duration>,
    dir: &std::path::Path,
) -> (f64, u64, Duration, Stats) {
    let mut input = Vec::new();
    generate(
        &GenOptions {
            events: 2_000_000,
            keys: 10_000,
            ..GenOptions::default()
        },
        |l| input.push(l.to_string()),
    );
    let mut e = engine(THREE_40S);
    let store = Store::open(dir).expect("store");
    let mut out = Vec::new();
    let mut n = 0u64;
    let mut checkpoints = 0;
    let mut in_checkpoints = Duration::ZERO;
    let mut last_size = 0;
    let start = Instant::now();
    let mut last = start;
    let deadline = Duration::from_secs(seconds);
    // The stream is replayed with its times shifted each lap, so it never ends.
    let lap_ms = 3_000_000i64;
    'run: for lap in 0.. {
        for l in &input {
            let shifted = shift_ts(l, lap * lap_ms);
            e.push_json(&shifted, &mut out);
            out.clear();
            n += 1;
            if n.is_multiple_of(4096) {
                let now = Instant::now();
                if now - start >= deadline {
                    break 'run;
                }
                if every.is_some_and(|d| now - last >= d) {
                    checkpoints += 1;
                    let bytes = borrowed_checkpoint(&e, checkpoints)
                        .to_bytes_sized(last_size + last_size / 8)
                        .expect("encodes");
                    last_size = bytes.len();
                    store.write(checkpoints, &bytes).expect("writes");
                    last = Instant::now();
                    in_checkpoints += last - now;
                }
            }
        }
    }
    (
        n as f64 / start.elapsed().as_secs_f64(),
        checkpoints,
        in_checkpoints,
        e.stats(),
    )
}

/// `line` with its `ts` moved by `by` ms (the generator's lines have `"ts":<digits>`).
fn shift_ts(line: &str, by: i64) -> String {
    if by == 0 {
        return line.to_string();
    }
    let Some(at) = line.find("\"ts\":") else {
        return line.to_string();
    };
    let digits = at + 5;
    let end = line[digits..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(line.len(), |e| digits + e);
    let ts: i64 = line[digits..end].parse().unwrap_or(0);
    format!("{}{}{}", &line[..digits], ts + by, &line[end..])
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
    let seconds: u64 = opt("--seconds").and_then(|s| s.parse().ok()).unwrap_or(30);
    let only = opt("--only");
    let wants = |what: &str| only.as_deref().is_none_or(|o| o == what);
    let dir = std::env::temp_dir().join(format!("motif-bench-ckpt-{}", std::process::id()));
    if wants("states") {
        for partial in [100_000, 1_000_000] {
            let d = dir.join(format!("s{partial}"));
            state(partial, &d);
        }
    }
    if wants("throughput") {
        // Alternated, so both see the same host.
        let mut ratios = Vec::new();
        for round in 0..3 {
            let (plain, _, _, _) = throughput(seconds, None, &dir.join(format!("p{round}")));
            let (with, n, spent, stats) = throughput(
                seconds,
                Some(Duration::from_secs(10)),
                &dir.join(format!("c{round}")),
            );
            ratios.push(with / plain);
            println!(
                "scenario (e) for {seconds} s: without checkpoints {:.2}M ev/s, with one every 10 s ({n} taken, {:.1} ms in all, {:.3} % of the run) {:.2}M ev/s: {:.3} of it ({} matches)",
                plain / 1e6,
                spent.as_secs_f64() * 1e3,
                spent.as_secs_f64() / seconds as f64 * 100.0,
                with / 1e6,
                with / plain,
                stats.matches
            );
        }
        println!("ratio with/without checkpoints per round: {ratios:.3?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
