//! Checkpoints through the `motif` binary: a signal's final checkpoint, `motif state`,
//! restoring into changed patterns, a corrupt newest checkpoint, another worker count.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn motif() -> Command {
    Command::new(env!("CARGO_BIN_EXE_motif"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("motif-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Four steps in a window, per card.
const FOUR: &str = r#"pattern p key card time ts
= begin("a").where(kind == "a").followedBy("b").where(kind == "b")
  .followedBy("c").where(kind == "c").followedBy("d").where(kind == "d").within(1h);"#;

/// The same name, one step: restoring FOUR's state into it used to panic.
const ONE: &str = r#"pattern p key card time ts = begin("a").where(kind == "a");"#;

fn ev(card: &str, kind: &str, ts: u64) -> String {
    format!("{{\"card\":\"{card}\",\"kind\":\"{kind}\",\"ts\":{ts}}}\n")
}

/// Runs `args` reading `first` from stdin until checkpoint `wait_for` is in `ck` (the run
/// checkpoints every record), then sends SIGTERM, then one more record so a run blocked
/// reading its input sees the signal at the next record boundary. (A run the signal reaches
/// between two records stops without reading it: `last` must change nothing.)
fn run_until_signal(args: &[&str], ck: &Path, wait_for: u64, first: &str, last: &str) -> Output {
    let mut child = motif()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(first.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let name = format!("checkpoint-{wait_for:020}.motifckp");
    let started = std::time::Instant::now();
    while !ck.join(&name).exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "no {name}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(100));
    let _ = stdin.write_all(last.as_bytes());
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn run_stdin(args: &[&str], input: &str) -> Output {
    let mut child = motif()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run may refuse to start and exit before reading its input.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A checkpoint directory holding a mid-stream state of FOUR (two cards with partial
/// matches), taken when SIGTERM stopped the run.
fn interrupted_run(dir: &Path, workers: &str) -> (PathBuf, PathBuf) {
    let pat = dir.join("p.motif");
    std::fs::write(&pat, FOUR).unwrap();
    let ck = dir.join("ck");
    let first = [
        ev("c1", "a", 1),
        ev("c1", "b", 2),
        ev("c1", "c", 3),
        ev("c2", "a", 4),
    ]
    .concat();
    let o = run_until_signal(
        &[
            "run",
            pat.to_str().unwrap(),
            "--checkpoint",
            ck.to_str().unwrap(),
            "--checkpoint-records",
            "1",
            "--workers",
            workers,
        ],
        &ck,
        4,
        &first,
        &ev("c9", "x", 5),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("interrupted"),
        "{}",
        text(&o.stderr)
    );
    assert!(o.stdout.is_empty(), "no match yet");
    (pat, ck)
}

#[test]
fn a_signal_takes_a_final_checkpoint_and_the_run_goes_on_from_it() {
    for workers in ["1", "2"] {
        let dir = scratch(&format!("signal-{workers}"));
        let (pat, ck) = interrupted_run(&dir, workers);
        let state = motif()
            .args(["state", ck.to_str().unwrap()])
            .output()
            .unwrap();
        let s = text(&state.stdout);
        assert!(state.status.success(), "{}", text(&state.stderr));
        assert!(s.contains("records 4:") || s.contains("records 5:"), "{s}");
        assert!(
            s.contains("pattern p: 2 keys with state, 2 open partial matches"),
            "{s}"
        );
        assert!(s.contains("source 0: <stdin>"), "{s}");
        // Restarted (with the other worker count): c1 completes with d.
        let other = if workers == "1" { "2" } else { "1" };
        let o = run_stdin(
            &[
                "run",
                pat.to_str().unwrap(),
                "--checkpoint",
                ck.to_str().unwrap(),
                "--workers",
                other,
            ],
            &ev("c1", "d", 6),
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        let out = text(&o.stdout);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains(r#""key":"c1","start":1,"end":6"#), "{out}");
        assert!(
            text(&o.stderr).contains(" records, 1 matches"),
            "{}",
            text(&o.stderr)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_changed_pattern_is_an_error_naming_it_unless_started_fresh() {
    let dir = scratch("changed");
    let (pat, ck) = interrupted_run(&dir, "1");
    std::fs::write(&pat, ONE).unwrap();
    let args = [
        "run",
        pat.to_str().unwrap(),
        "--checkpoint",
        ck.to_str().unwrap(),
    ];
    let o = run_stdin(&args, &ev("c1", "a", 9));
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("pattern `p` changed since the checkpoint"),
        "{err}"
    );
    assert!(err.contains("--fresh-patterns"), "{err}");
    // With --fresh-patterns the one-step pattern starts without state (no panic).
    let mut fresh = args.to_vec();
    fresh.push("--fresh-patterns");
    let o = run_stdin(&fresh, &ev("c1", "a", 9));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("starts without state"));
    assert_eq!(text(&o.stdout).lines().count(), 1);
    // A pattern of the checkpoint that is no longer loaded is an error too.
    let dir = scratch("removed");
    let (pat, ck) = interrupted_run(&dir, "1");
    std::fs::write(&pat, ONE.replace("pattern p ", "pattern q ")).unwrap();
    let o = run_stdin(
        &[
            "run",
            pat.to_str().unwrap(),
            "--checkpoint",
            ck.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr)
            .contains("pattern `p` is in the checkpoint but not among the patterns loaded"),
        "{}",
        text(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("motif-ckpt-changed-{}", std::process::id())),
    );
}

#[test]
fn a_corrupt_newest_checkpoint_is_named_and_the_one_before_it_used() {
    let dir = scratch("corrupt");
    let (pat, ck) = interrupted_run(&dir, "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let newest = files.last().unwrap().clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x55;
    std::fs::write(&newest, &bytes).unwrap();
    let o = motif()
        .args(["state", ck.to_str().unwrap()])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(err.contains(&newest.display().to_string()), "{err}");
    assert!(err.contains("corrupt"), "{err}");
    // The run resumes from the checkpoint before it.
    let o = run_stdin(
        &[
            "run",
            pat.to_str().unwrap(),
            "--checkpoint",
            ck.to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("skipped") && err.contains("corrupt"), "{err}");
    assert!(err.contains("resumed from checkpoint"), "{err}");
    // Every checkpoint unreadable: a clear error, no panic.
    for f in &files {
        std::fs::write(f, b"not a checkpoint").unwrap();
    }
    let o = run_stdin(
        &[
            "run",
            pat.to_str().unwrap(),
            "--checkpoint",
            ck.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no readable checkpoint"),
        "{}",
        text(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resumed_csv_file_keeps_one_header_and_every_row_once() {
    let dir = scratch("csv");
    let pat = dir.join("p.motif");
    std::fs::write(&pat, FOUR).unwrap();
    let ck = dir.join("ck");
    let out = dir.join("m.csv");
    let args = [
        "run",
        pat.to_str().unwrap(),
        "--checkpoint",
        ck.to_str().unwrap(),
        "--checkpoint-records",
        "1",
        "--output-format",
        "csv",
        "-o",
        out.to_str().unwrap(),
    ];
    // c1 matches before the signal; c2's match needs the restart.
    let first = [
        ev("c1", "a", 1),
        ev("c1", "b", 2),
        ev("c1", "c", 3),
        ev("c1", "d", 4),
        ev("c2", "a", 5),
        ev("c2", "b", 6),
    ]
    .concat();
    let o = run_until_signal(&args, &ck, 6, &first, &ev("c9", "x", 7));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run_stdin(&args, &[ev("c2", "c", 7), ev("c2", "d", 8)].concat());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert_eq!(lines[0], "pattern,key,start,end,timed_out,timeout,events");
    assert!(
        lines[1].starts_with("p,\"\"\"c1\"\"\",1,4,false,,"),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("p,\"\"\"c2\"\"\",5,8,false,,"),
        "{csv}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
