//! Crash recovery: a run killed with SIGKILL at random moments and restarted with the same
//! command and checkpoint directory writes exactly the bytes an uninterrupted run writes.
//!
//! The stream has windows, timed-out partial matches, a trailing `notFollowedBy`, late
//! events and rejected records, and the matches feed three aggregations (append, update and
//! complete modes, each with another window and trigger) whose row files must come out the
//! same too. `MOTIF_SOAK=1` runs a longer version (5M events, 100 kills).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PATTERNS: &str = r#"
pattern abc key key time ts lateness 5ms
= begin("a").where(type == "A")
  .followedBy("b").where(type == "B")
  .followedBy("c").where(type == "C")
  .within(100ms);

pattern a_then_no_d key key time ts lateness 5ms
= begin("a").where(type == "A" and price > 50)
  .notFollowedBy("d").where(type == "D")
  .within(60ms);

aggregate per_key from abc
  window tumbling(200ms)
  group by key
  select count() as n, max(a.price) as top, count_distinct(b.price) as prices
  output append trigger every 5000 records;

aggregate by_pattern from abc, a_then_no_d
  window sliding(400ms, 200ms) on start
  group by pattern
  select count() as n, avg(a.price) as mean, first(a.price) as first_price
  output update trigger on watermark;

aggregate totals from abc, a_then_no_d
  group by pattern
  select count() as n, sum(a.price) as total
  output complete trigger every 50000 records;
"#;

fn motif() -> Command {
    Command::new(env!("CARGO_BIN_EXE_motif"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("motif-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `events` generated events (20 keys, up to 20 ms of disorder, so some are late), with a
/// malformed line and a record without its time field every 100,003 lines.
fn input(dir: &Path, events: u64) -> PathBuf {
    let gen = dir.join("gen.jsonl");
    let st = motif()
        .args([
            "gen",
            "-n",
            &events.to_string(),
            "--keys",
            "20",
            "--disorder-ms",
            "20",
        ])
        .args(["--seed", "11", "-o"])
        .arg(&gen)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&gen).unwrap();
    let mut out = String::with_capacity(text.len() + 1024);
    for (i, line) in text.lines().enumerate() {
        out.push_str(line);
        out.push('\n');
        if i % 100_003 == 50_000 {
            out.push_str("{not json\n{\"key\":\"k0001\",\"type\":\"A\"}\n");
        }
    }
    let path = dir.join("events.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

const OUTPUTS: [&str; 7] = [
    "matches",
    "timeouts",
    "late",
    "rejects",
    "per_key",
    "by_pattern",
    "totals",
];

/// The run's arguments, writing its four outputs into `out`.
fn run_args(pat: &Path, input: &Path, out: &Path, workers: usize) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "run".into(),
        pat.display().to_string(),
        "--input".into(),
        input.display().to_string(),
        "--ordered".into(),
        "--workers".into(),
        workers.to_string(),
    ];
    for (flag, name) in [
        ("-o", "matches"),
        ("--timeouts-output", "timeouts"),
        ("--late-output", "late"),
        ("--rejects-output", "rejects"),
    ] {
        a.push(flag.into());
        a.push(out.join(name).display().to_string());
    }
    for name in &OUTPUTS[4..] {
        a.push("--aggregate-output".into());
        a.push(format!("{name}={}", out.join(name).display()));
    }
    a
}

fn summary(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .find(|l| l.contains(" records, "))
        .unwrap_or_default()
        .to_string()
}

/// The id of the newest checkpoint file in `dir` (0: none).
fn newest_checkpoint(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("checkpoint-")?
                    .strip_suffix(".motifckp")?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// The record counts the run's stderr says it resumed at.
fn resumed_records(stderr: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| {
            let rest = l.split(" (").nth(1)?;
            l.contains("resumed from checkpoint")
                .then(|| rest.split(' ').next()?.parse().ok())?
        })
        .collect()
}

/// A small deterministic generator for the kill moments.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

fn kill_and_restart(workers: usize, events: u64, kills: usize) {
    let dir = scratch(&format!("w{workers}"));
    let pat = dir.join("p.motif");
    std::fs::write(&pat, PATTERNS).unwrap();
    let input = input(&dir, events);

    // The uninterrupted run.
    let base = dir.join("base");
    std::fs::create_dir_all(&base).unwrap();
    let started = Instant::now();
    let o = motif()
        .args(run_args(&pat, &input, &base, workers))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let base_summary = summary(&o.stderr);
    for name in OUTPUTS {
        let len = std::fs::metadata(base.join(name)).unwrap().len();
        assert!(
            len > 0,
            "the uninterrupted run wrote no {name}: {base_summary}"
        );
    }

    // The same run, killed `kills` times and restarted each time. Each kill comes a random
    // moment (up to 2.5 % of an uninterrupted run's time) after the restarted run has
    // written a new checkpoint, so the kills fall all along the input however loaded the
    // machine is, and some land while a checkpoint is being written. Should the input be
    // done before the last kill, the run's end stops the kills.
    let out = dir.join("out");
    let ck = dir.join("ck");
    std::fs::create_dir_all(&out).unwrap();
    let mut args = run_args(&pat, &input, &out, workers);
    args.extend(["--checkpoint".into(), ck.display().to_string()]);
    args.extend(["--checkpoint-records".into(), (events / 50).to_string()]);
    let mut rng = Lcg(workers as u64 * 7919 + events);
    let span = (took.as_millis() as u64).max(50);
    let mut killed = 0;
    let mut resumed_at = Vec::new();
    while killed < kills {
        let log = dir.join(format!("stderr-{killed}"));
        let mut child = motif()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let before = newest_checkpoint(&ck);
        let waited = Instant::now();
        while newest_checkpoint(&ck) == before && child.try_wait().unwrap().is_none() {
            assert!(
                waited.elapsed() < Duration::from_secs(120),
                "no new checkpoint in 2 minutes"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.below(span / 40)));
        match child.try_wait().unwrap() {
            Some(st) => {
                assert!(st.success(), "a restarted run failed: {st}");
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
            }
        }
        resumed_at.extend(resumed_records(&std::fs::read(&log).unwrap()));
    }
    assert!(
        killed >= kills / 2,
        "only {killed} of {kills} kills happened before the input was done"
    );
    let o = motif().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        summary(&o.stderr),
        base_summary,
        "counters over the restarts"
    );
    // The restarts resumed from checkpoints, further and further into the input (not from
    // its start each time, which would give the same bytes too).
    resumed_at.extend(resumed_records(&o.stderr));
    assert!(
        resumed_at.len() >= kills / 2 && resumed_at.windows(2).all(|w| w[0] <= w[1]),
        "restarts resumed at records {resumed_at:?}"
    );
    assert!(
        resumed_at.last().is_some_and(|r| *r >= events / 4),
        "the last restart resumed at {resumed_at:?} of {events} records"
    );
    for name in OUTPUTS {
        let want = std::fs::read(base.join(name)).unwrap();
        let got = std::fs::read(out.join(name)).unwrap();
        assert!(
            got == want,
            "{name} differs after {kills} kills (--workers {workers}): {} bytes vs {} uninterrupted",
            got.len(),
            want.len()
        );
    }
    // And it is finished: running it again does nothing.
    let o = motif().args(&args).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("processed to its end"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn sizes() -> (u64, usize) {
    if std::env::var_os("MOTIF_SOAK").is_some() {
        (5_000_000, 100)
    } else if cfg!(debug_assertions) {
        (200_000, 20)
    } else {
        (1_000_000, 20)
    }
}

#[test]
fn killed_and_restarted_one_worker_writes_what_an_uninterrupted_run_writes() {
    let (events, kills) = sizes();
    kill_and_restart(1, events, kills);
}

#[test]
fn killed_and_restarted_two_workers_writes_what_an_uninterrupted_run_writes() {
    let (events, kills) = sizes();
    kill_and_restart(2, events, kills);
}
