//! The command line's record handling under arbitrary bytes (issue 14, "Must show"): input
//! files made of valid events, malformed JSON, invalid UTF-8, byte-order marks, CRLF line
//! ends, blank lines, lines over `--max-line-bytes`, missing time or key fields and raw
//! random bytes, run through the `motif` binary on one and two workers. The property: motif
//! never panics and exits 0, and every record (non-blank line) is accounted for exactly
//! once: matched, late or rejected with its line number, the summary's counts adding up to
//! the number of records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;

/// The line limit the runs use, small so that long lines are cheap to make.
const MAX_LINE: usize = 64;

/// One line of a generated input.
#[derive(Debug, Clone)]
enum Line {
    /// An event (key, time); with `key: None` the key field is missing.
    Event { key: Option<u8>, ts: u8 },
    /// An event without its time field.
    NoTime,
    /// Truncated JSON.
    Malformed,
    /// An event with a byte that is not UTF-8 in a string.
    BadUtf8(u8),
    /// An event padded past the line limit by this many bytes.
    Long(usize),
    /// Spaces and tabs only: not a record.
    Blank(String),
    /// Random bytes (no line end).
    Bytes(Vec<u8>),
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        6 => (proptest::option::weighted(0.9, 0u8..4), any::<u8>())
            .prop_map(|(key, ts)| Line::Event { key, ts }),
        1 => Just(Line::NoTime),
        1 => Just(Line::Malformed),
        1 => (0x80u8..=0xff).prop_map(Line::BadUtf8),
        1 => prop_oneof![1usize..200, 100_000usize..100_001].prop_map(Line::Long),
        1 => "[ \t]{0,3}".prop_map(Line::Blank),
        1 => proptest::collection::vec(any::<u8>().prop_filter("no line end", |b| *b != b'\n'), 0..40)
            .prop_map(Line::Bytes),
    ]
}

/// An input file: a byte-order mark or not, its lines each with `\n` or `\r\n`, the last
/// one's line end possibly missing.
#[derive(Debug, Clone)]
struct Input {
    bom: bool,
    lines: Vec<(Line, bool)>,
    last_ends: bool,
}

fn input() -> impl Strategy<Value = Input> {
    (
        any::<bool>(),
        proptest::collection::vec((line(), any::<bool>()), 0..40),
        any::<bool>(),
    )
        .prop_map(|(bom, lines, last_ends)| Input {
            bom,
            lines,
            last_ends,
        })
}

/// What a line should become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Not a record (blank).
    Blank,
    /// A rejected record.
    Rejected,
    /// An event: matched or late (the property does not predict lateness).
    Event,
    /// Random bytes: rejected, or (if they happen to be blank) nothing.
    Unknown,
}

/// The file's bytes and each line's 1-based number and fate.
fn render(input: &Input) -> (Vec<u8>, Vec<(u64, Fate)>) {
    let mut out = Vec::new();
    let mut fates = Vec::new();
    if input.bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    for (i, (l, crlf)) in input.lines.iter().enumerate() {
        let n = i as u64 + 1;
        let (bytes, fate): (Vec<u8>, Fate) = match l {
            Line::Event { key: Some(k), ts } => (
                format!("{{\"k\":{k},\"ts\":{ts},\"n\":{n}}}").into_bytes(),
                Fate::Event,
            ),
            Line::Event { key: None, ts } => (
                format!("{{\"ts\":{ts},\"n\":{n}}}").into_bytes(),
                Fate::Rejected,
            ),
            Line::NoTime => (
                format!("{{\"k\":1,\"n\":{n}}}").into_bytes(),
                Fate::Rejected,
            ),
            Line::Malformed => (b"{\"k\":1,\"ts\":".to_vec(), Fate::Rejected),
            Line::BadUtf8(b) => {
                let mut v = b"{\"k\":1,\"ts\":1,\"s\":\"".to_vec();
                v.push(*b);
                v.extend_from_slice(b"\"}");
                (v, Fate::Rejected)
            }
            Line::Long(extra) => (
                format!(
                    "{{\"k\":1,\"ts\":1,\"pad\":\"{}\"}}",
                    "x".repeat(MAX_LINE + extra)
                )
                .into_bytes(),
                Fate::Rejected,
            ),
            Line::Blank(s) => (s.clone().into_bytes(), Fate::Blank),
            Line::Bytes(b) => {
                // Bytes that read as blank text (after the BOM of the first line and the
                // line end) are not a record; anything else is rejected.
                let mut content: &[u8] = b;
                while let [rest @ .., b'\r'] = content {
                    content = rest;
                }
                let blank = std::str::from_utf8(content).is_ok_and(|t| t.trim().is_empty());
                let fate = if i == 0 && !input.bom && b.starts_with(b"\xEF\xBB\xBF") {
                    // Its own BOM would be stripped: leave such a line out of the check.
                    Fate::Unknown
                } else if blank && b.len() <= MAX_LINE {
                    Fate::Blank
                } else {
                    Fate::Unknown
                };
                (b.clone(), fate)
            }
        };
        out.extend_from_slice(&bytes);
        let last = i + 1 == input.lines.len();
        if !last || input.last_ends {
            out.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
        }
        fates.push((n, fate));
    }
    (out, fates)
}

fn scratch() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "motif-records-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// The summary's counts: records, matches, timed out, late, rejected.
fn summary(stderr: &str) -> Option<[u64; 5]> {
    let line = stderr.lines().find(|l| l.contains(" records, "))?;
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(5)
        .map(|s| s.parse().unwrap_or(u64::MAX))
        .collect();
    nums.try_into().ok()
}

/// Runs motif over `input` and checks the property; `Err` says what broke.
fn check(input: &Input, workers: &str) -> Result<(), String> {
    let dir = scratch();
    let (bytes, fates) = render(input);
    let events = dir.join("in.jsonl");
    std::fs::write(&events, &bytes).map_err(|e| e.to_string())?;
    let pat = dir.join("p.motif");
    std::fs::write(
        &pat,
        "pattern p key k time ts lateness 5ms = begin(\"a\");\n",
    )
    .map_err(|e| e.to_string())?;
    let (m, late, rejects) = (dir.join("m"), dir.join("late"), dir.join("rej"));
    let p = |x: &Path| x.to_str().unwrap_or("").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_motif"))
        .args([
            "run".to_string(),
            p(&pat),
            "-i".into(),
            p(&events),
            "-w".into(),
            workers.into(),
            "--max-line-bytes".into(),
            MAX_LINE.to_string(),
            "-o".into(),
            p(&m),
            "--late-output".into(),
            p(&late),
            "--rejects-output".into(),
            p(&rejects),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let result = (|| {
        if !out.status.success() || err.contains("panicked") {
            return Err(format!("exit {:?}: {err}", out.status));
        }
        // Each line's number, by where it went.
        let mut seen: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        let matches = json_lines(&m);
        let lates = json_lines(&late);
        let rejected = json_lines(&rejects);
        for x in &matches {
            let n = x["events"]["a"][0]["n"]
                .as_u64()
                .ok_or(format!("match {x}"))?;
            seen.entry(n).or_default().push("matched");
        }
        for x in &lates {
            let n = x["event"]["n"].as_u64().ok_or(format!("late {x}"))?;
            seen.entry(n).or_default().push("late");
        }
        for x in &rejected {
            let n = x["line"].as_u64().ok_or(format!("reject {x}"))?;
            seen.entry(n).or_default().push("rejected");
        }
        let mut records = 0u64;
        for (n, fate) in &fates {
            let got = seen.remove(n).unwrap_or_default();
            let ok = match fate {
                Fate::Blank => got.is_empty(),
                Fate::Rejected => got == ["rejected"],
                Fate::Event => got == ["matched"] || got == ["late"],
                Fate::Unknown => got.is_empty() || got == ["rejected"],
            };
            if !ok {
                return Err(format!("line {n} ({fate:?}) went to {got:?}"));
            }
            records += u64::from(!got.is_empty());
        }
        if let Some((n, got)) = seen.into_iter().next() {
            return Err(format!("line {n}, not in the input, went to {got:?}"));
        }
        let [r, mm, t, l, rj] = summary(&err).ok_or(format!("no summary: {err}"))?;
        let counted = [r, mm, t, l, rj];
        let expected = [
            records,
            matches.len() as u64,
            0,
            lates.len() as u64,
            rejected.len() as u64,
        ];
        if counted != expected {
            return Err(format!("summary {counted:?}, outputs {expected:?}"));
        }
        if mm + l + rj != r {
            return Err(format!("{mm} + {l} + {rj} != {r} records"));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(|e| {
        format!(
            "-w {workers}: {e}\ninput: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every record of any input is matched, late or rejected with its line number, exactly
    /// once, and the summary adds up; nothing panics.
    #[test]
    fn every_record_is_accounted_for(input in input(), two in any::<bool>()) {
        let workers = if two { "2" } else { "1" };
        if let Err(e) = check(&input, workers) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// A fixed input with one line of each kind, so the property's harness is known to see
/// every fate (a broken harness would pass on inputs it never checks).
#[test]
fn one_line_of_each_kind() {
    let input = Input {
        bom: true,
        lines: vec![
            (
                Line::Event {
                    key: Some(1),
                    ts: 10,
                },
                true,
            ),
            (Line::Event { key: None, ts: 11 }, false),
            (Line::NoTime, true),
            (Line::Malformed, false),
            (Line::BadUtf8(0xff), true),
            (Line::Long(10), false),
            (Line::Long(100_000), false),
            (Line::Blank(" \t".into()), true),
            (Line::Bytes(vec![0, 0xc3, 0x28, b'{']), false),
            (
                Line::Event {
                    key: Some(2),
                    ts: 12,
                },
                true,
            ),
            (
                Line::Event {
                    key: Some(2),
                    ts: 1,
                },
                true,
            ),
        ],
        last_ends: false,
    };
    for workers in ["1", "2"] {
        check(&input, workers).unwrap_or_else(|e| panic!("{e}"));
    }
    let (_, fates) = render(&input);
    assert_eq!(
        fates.iter().filter(|(_, f)| *f == Fate::Rejected).count(),
        6
    );
}
