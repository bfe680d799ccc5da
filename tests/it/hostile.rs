//! Hostile input (issue 14): extreme numbers, huge quantifiers, closed pipes, invalid UTF-8,
//! byte-order marks, bad options. Every test runs the `motif` binary on files in its own
//! scratch directory; nothing is fed through a pipe that the test reads back synchronously.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn motif() -> Command {
    Command::new(env!("CARGO_BIN_EXE_motif"))
}

/// A test's own directory, removed when the test ends.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir =
        std::env::temp_dir().join(format!("motif-hostile-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    Scratch(dir)
}

fn write(dir: &Path, file: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, bytes).expect("write scratch file");
    p
}

fn run(args: &[&str]) -> Output {
    motif().args(args).output().expect("motif runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// Item 1: `i64::MIN / -1` and `i64::MIN % -1` evaluate (to a float and to 0), on one
/// worker and on several, instead of panicking.
#[test]
fn integer_overflow_in_conditions_does_not_crash() {
    let dir = scratch("overflow");
    let pat = write(
        &dir,
        "p.motif",
        "pattern div key k = begin(\"a\").where(x / y > 0);\n\
         pattern rem key k = begin(\"a\").where(x % y == 0);\n",
    );
    let events = write(
        &dir,
        "e.jsonl",
        format!(
            "{{\"k\":1,\"x\":{min},\"y\":-1}}\n{{\"k\":2,\"x\":{max},\"y\":-1}}\n",
            min = i64::MIN,
            max = i64::MAX
        ),
    );
    for workers in ["1", "2"] {
        let out = run(&["run", p(&pat), "-i", p(&events), "-w", workers, "--ordered"]);
        assert!(out.status.success(), "-w {workers}: {}", stderr(&out));
        let m = stdout_lines(&out);
        let names: Vec<&str> = m.iter().map(|m| m["pattern"].as_str().unwrap()).collect();
        // MIN / -1 = 2^63 > 0; MAX / -1 < 0; both remainders are 0.
        assert_eq!(names, ["div", "rem", "rem"], "-w {workers}");
    }
}

/// Item 3: a huge quantifier is an error naming it, found before anything is unrolled (so
/// `check` answers at once instead of allocating until out of memory).
#[test]
fn huge_quantifiers_are_errors_naming_the_quantifier() {
    let dir = scratch("quantifiers");
    let pat = write(
        &dir,
        "big.motif",
        "pattern a = begin(\"a\").times(4294967295);\n\
         pattern b = begin(\"a\").timesOrMore(4294967295);\n\
         pattern c = begin(\"a\").times(2, 4294967295);\n\
         pattern d = begin(\"a\").times(1000000);\n",
    );
    for cmd in ["check", "explain", "run"] {
        let mut args = vec![cmd, p(&pat)];
        if cmd == "run" {
            args.extend(["-i", p(&pat)]);
        }
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        for (line, q) in [
            (1, "`times(4294967295)` on \"a\""),
            (2, "`timesOrMore(4294967295)` on \"a\""),
            (3, "`times(2, 4294967295)` on \"a\""),
            (4, "`times(1000000)` on \"a\""),
        ] {
            if cmd == "check" {
                assert!(
                    err.contains(&format!(
                        "big.motif:{line}:24: error: {q} makes the pattern too large"
                    )),
                    "{cmd}: {err}"
                );
            } else {
                // The other commands stop at the first file with errors, all of its errors shown.
                assert!(err.contains(q), "{cmd}: {err}");
            }
        }
    }
    let ok = write(&dir, "ok.motif", "pattern a = begin(\"a\").times(10000);\n");
    let out = run(&["check", p(&ok)]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Item 10: durations past what an `i64` of milliseconds holds are one clear error each;
/// event time `i64::MAX` (the end of input) is rejected; windows that run past the end of
/// time close at the end of input.
#[test]
fn durations_and_times_at_the_end_of_time() {
    let dir = scratch("durations");
    let pat = write(
        &dir,
        "long.motif",
        "pattern f = begin(\"a\").followedBy(\"b\").notFollowedBy(\"c\").within(200000000000d);\n\
         pattern g = begin(\"a\").within(99999999999999999999d);\n\
         pattern h lateness 200000000000d = begin(\"a\");\n",
    );
    let out = run(&["check", p(&pat)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("error:").count(),
        3,
        "one error per duration: {err}"
    );
    for at in ["long.motif:1:66:", "long.motif:2:31:", "long.motif:3:20:"] {
        assert!(
            err.contains(&format!("{at} error: this duration is too long")),
            "{at}: {err}"
        );
    }

    let pat = write(
        &dir,
        "end.motif",
        "pattern p key k time ts = begin(\"a\").where(x == 1)\n\
           .notFollowedBy(\"b\").where(x == 2).within(10s);\n\
         pattern q key k time ts = begin(\"a\").where(x == 1)\n\
           .followedBy(\"c\").where(x == 3).within(10s);\n",
    );
    let events = write(
        &dir,
        "end.jsonl",
        format!(
            "{{\"k\":1,\"x\":1,\"ts\":{}}}\n{{\"k\":2,\"x\":1,\"ts\":{}}}\n{{\"k\":2,\"x\":3,\"ts\":{}}}\n{{\"k\":3,\"x\":1,\"ts\":{}}}\n",
            i64::MAX - 7,
            i64::MAX - 2,
            i64::MAX - 1,
            i64::MAX
        ),
    );
    for workers in ["1", "2"] {
        let out = run(&[
            "run",
            p(&pat),
            "-i",
            p(&events),
            "--timeouts",
            "--ordered",
            "-w",
            workers,
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        let got: Vec<(String, i64, bool)> = stdout_lines(&out)
            .iter()
            .map(|m| {
                (
                    m["pattern"].as_str().unwrap().to_string(),
                    m["key"].as_i64().unwrap(),
                    m["timed_out"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        let mut got = got;
        got.sort();
        // p: both a's see no b before the end of input; q: key 2 completes, key 1 times out.
        assert_eq!(
            got,
            [
                ("p".to_string(), 1, false),
                ("p".to_string(), 2, false),
                ("q".to_string(), 1, true),
                ("q".to_string(), 2, false)
            ],
            "-w {workers}: {err}"
        );
        assert!(
            err.contains(
                ":4: rejected: pattern p: time field `ts` is 9223372036854775807, the end of time"
            ),
            "{err}"
        );
    }
}

/// The fuzz targets' seeds and saved regressions (`fuzz/seeds`, `fuzz/regressions`) run here
/// through what the `parse` and `compile_run` targets call, so a seed that crashes fails the
/// ordinary test suite even where `cargo fuzz` is not installed. The seeds hold the shapes
/// that crashed or hung before (extreme integers, huge quantifier counts and durations, the
/// end of time, long strings).
#[test]
fn fuzz_seeds_and_regressions_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let files = |target: &str| -> Vec<PathBuf> {
        let mut v = Vec::new();
        for dir in ["seeds", "regressions"] {
            if let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) {
                v.extend(rd.map(|e| e.expect("seed entry").path()));
            }
        }
        v.sort();
        v
    };
    let compile_run = files("compile_run");
    assert!(compile_run.len() >= 10, "{compile_run:?}");
    for f in compile_run {
        let data = std::fs::read(&f).expect("seed");
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let (pattern, events) = text.split_once('\0').unwrap_or((text, ""));
        let lines: Vec<&str> = events.lines().take(64).collect();
        let options = motif::runtime::EngineOptions {
            timeouts: true,
            max_runs_per_key: Some(2_000),
            ..motif::runtime::EngineOptions::default()
        };
        let _ = motif::output::match_lines_with(pattern, &lines, options);
    }
    for f in files("parse") {
        let text = std::fs::read_to_string(&f).expect("seed");
        if let Ok(decls) = motif::syntax::parse_source(&text) {
            let printed = motif::syntax::print_decls(&decls);
            let again = motif::syntax::parse_source(&printed)
                .unwrap_or_else(|e| panic!("{}: printed form does not parse: {e:?}", f.display()));
            assert_eq!(
                motif::syntax::print_decls(&again),
                printed,
                "{}",
                f.display()
            );
        }
        let _ = motif::syntax::load_str("<seed>", &text);
    }
    // records: what fuzz_targets/records.rs checks, on its seeds.
    let seeds = files("records");
    assert!(seeds.len() >= 2, "{seeds:?}");
    let dir = scratch("record-seeds");
    for f in seeds {
        let data = std::fs::read(&f).expect("seed");
        let Some((&mode, bytes)) = data.split_first() else {
            continue;
        };
        let input = write(&dir, "input", bytes);
        let format = if mode & 1 == 0 {
            motif::source::Format::JsonLines
        } else {
            motif::source::Format::Csv
        };
        let mut records = motif::source::Records::new(vec![Some(input)], Some(format))
            .max_line_bytes(8 + usize::from(mode >> 1));
        let decls = motif::syntax::load_str(
            "<seed>",
            "pattern p key k time ts lateness 3ms = begin(\"a\");",
        )
        .expect("loads");
        let mut engine = motif::runtime::Engine::new(&decls, Default::default()).expect("compiles");
        let mut out = Vec::new();
        let mut n = 0;
        while let Some(rec) = records.next_record() {
            let rec = rec.expect("a record");
            n += 1;
            engine.push_input(
                &motif::runtime::Input {
                    json: rec.json,
                    origin: rec.origin,
                    line: rec.line,
                    partition: 0,
                    now_ms: 0,
                },
                &mut out,
            );
        }
        engine.finish(&mut out);
        let accounted = out
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    motif::runtime::Output::Match { .. }
                        | motif::runtime::Output::Late { .. }
                        | motif::runtime::Output::Reject { .. }
                )
            })
            .count();
        assert_eq!(accounted, n, "{}: {out:?}", f.display());
    }
}

/// Waits for `child`, killing it (and failing) if it has not ended after a minute: a hang
/// guard, not a timing assertion (the runs it guards end at their next write).
fn wait_or_kill(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    for _ in 0..1200 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{what}: still running a minute after its output pipe closed");
}

/// Ended quietly by a closed pipe: by SIGPIPE (141 in a shell) or with status 0, never a
/// panic (101) or an error status.
fn ended_quietly(status: std::process::ExitStatus, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.signal() == Some(SIGPIPE) || status.code() == Some(0),
        "{what}: {status:?}"
    );
}

/// The signal number of SIGPIPE (13 on every Unix motif builds for).
const SIGPIPE: i32 = 13;

/// Reads one line from `r`, then drops it (closing the pipe's read end).
fn read_one_line(r: impl std::io::Read) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(r)
        .read_line(&mut line)
        .expect("read a line");
    line
}

/// Items 2 and 4: a closed standard output or standard error (`motif … | head -1`,
/// `2>&1 | head -1`) ends `run`, `check` and `explain` promptly and quietly.
#[test]
fn a_closed_output_pipe_ends_the_program_quietly() {
    use std::process::Stdio;
    let dir = scratch("pipes");
    let pat = write(&dir, "one.motif", "pattern one key key = begin(\"a\");\n");
    // An input far longer than the test waits for: it ends only by the closed pipe.
    let endless = "gen:events=1000000000,keys=10";
    for workers in ["1", "2"] {
        // stdout closed, stderr to a file.
        let err_path = dir.join(format!("stderr-{workers}"));
        let mut child = motif()
            .args(["run", p(&pat), "-i", endless, "-w", workers])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err_path).expect("stderr file"))
            .spawn()
            .expect("spawn");
        let first = read_one_line(child.stdout.take().expect("stdout"));
        assert!(first.starts_with("{\"pattern\":\"one\""), "{first}");
        let status = wait_or_kill(&mut child, "run with stdout closed");
        ended_quietly(status, "run with stdout closed");
        let err = std::fs::read_to_string(&err_path).expect("stderr");
        assert!(!err.contains("panicked"), "{err}");

        // stdout and stderr the same closed pipe (`2>&1 | head -1`).
        let (reader, writer) = std::io::pipe().expect("pipe");
        let mut child = motif()
            .args(["run", p(&pat), "-i", endless, "-w", workers])
            .stdout(writer.try_clone().expect("clone"))
            .stderr(writer)
            .spawn()
            .expect("spawn");
        // The test's own copies of the write end are gone with the Command.
        let first = read_one_line(reader);
        assert!(first.starts_with("{\"pattern\":\"one\""), "{first}");
        let status = wait_or_kill(&mut child, "run with 2>&1 closed");
        ended_quietly(status, "run with 2>&1 closed");
    }

    // stderr closed while rejects are written to it, matches to a file.
    let bad: String = (0..200_000).map(|i| format!("not json {i}\n")).collect();
    let input = write(&dir, "bad.jsonl", bad);
    let mut child = motif()
        .args([
            "run",
            p(&pat),
            "-i",
            p(&input),
            "-o",
            p(&dir.join("m.jsonl")),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let first = read_one_line(child.stderr.take().expect("stderr"));
    // (Workers may report another line first: no --ordered.)
    assert!(first.contains(": rejected: malformed JSON"), "{first}");
    let status = wait_or_kill(&mut child, "run with stderr closed");
    ended_quietly(status, "run with stderr closed");

    // check and explain of many patterns into a reader that takes one line.
    let many: String = (0..2000)
        .map(|i| format!("pattern p{i} = begin(\"a\").times(3).followedBy(\"b\");\n"))
        .collect();
    let many = write(&dir, "many.motif", many);
    for args in [
        vec!["explain", p(&many)],
        vec!["explain", "--dot", p(&many)],
        vec!["check", p(&many), p(&many), p(&many)],
    ] {
        let err_path = dir.join("stderr-cmd");
        let mut child = motif()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err_path).expect("stderr file"))
            .spawn()
            .expect("spawn");
        read_one_line(child.stdout.take().expect("stdout"));
        let status = wait_or_kill(&mut child, args[0]);
        ended_quietly(status, args[0]);
        let err = std::fs::read_to_string(&err_path).expect("stderr");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A pattern whose matches come only at the end of input (a trailing `notFollowedBy`): the
/// end-of-input flush must run whatever came before it.
const AT_END: &str = "pattern p key k time ts = begin(\"a\").where(x == 1)\n\
                      .notFollowedBy(\"b\").where(x == 2).within(1h);\n";

/// Item 5: a line that is not UTF-8 (and a binary file in an input directory) is one
/// rejected record with its line number; the run goes on and the end of input is flushed,
/// on one worker and on several.
#[test]
fn invalid_utf8_is_a_rejected_record_and_the_run_goes_on() {
    let dir = scratch("utf8");
    let pat = write(&dir, "p.motif", AT_END);
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("input dir");
    write(
        &input,
        "a.jsonl",
        b"{\"k\":1,\"x\":1,\"ts\":1}\n{\"k\":2,\"x\":\"\xff\xfe\",\"ts\":2}\n{\"k\":3,\"x\":1,\"ts\":3}\n",
    );
    // A binary file: NULs, invalid bytes, a few line ends.
    let binary: Vec<u8> = (0..3000u32).map(|i| (i * 97 % 256) as u8).collect();
    let binary_lines = binary
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    write(&input, "b.bin", &binary);
    write(&input, "c.jsonl", "{\"k\":4,\"x\":1,\"ts\":4}\n");
    for workers in ["1", "2"] {
        let out = run(&["run", p(&pat), "-i", p(&input), "-w", workers, "--ordered"]);
        let err = stderr(&out);
        assert!(out.status.success(), "-w {workers}: {err}");
        let keys: Vec<i64> = stdout_lines(&out)
            .iter()
            .map(|m| m["key"].as_i64().unwrap())
            .collect();
        assert_eq!(
            keys,
            [1, 3, 4],
            "-w {workers}: the end of input was flushed: {err}"
        );
        assert!(
            err.contains("a.jsonl:2: rejected: invalid UTF-8 (byte 13 of the line)"),
            "{err}"
        );
        assert!(err.contains("b.bin:1: rejected: "), "{err}");
        let records = 3 + binary_lines + 1;
        assert!(
            err.contains(&format!(
                "motif: {records} records, 3 matches, 0 timed out, 0 late, {} rejected",
                1 + binary_lines
            )),
            "-w {workers}: {err}"
        );
    }
}

/// Item 6: a byte-order mark at the start of a JSON lines or CSV input is not part of the
/// first record (JSON) or the first column's name (CSV).
#[test]
fn a_byte_order_mark_is_stripped() {
    let dir = scratch("bom");
    let pat = write(&dir, "one.motif", "pattern one key k = begin(\"a\");\n");
    let json = write(&dir, "e.jsonl", b"\xEF\xBB\xBF{\"k\":1}\r\n{\"k\":2}\r\n");
    let csv = write(&dir, "e.csv", b"\xEF\xBB\xBFk,x\r\n1,a\r\n2,b\r\n");
    for input in [&json, &csv] {
        for workers in ["1", "2"] {
            let out = run(&["run", p(&pat), "-i", p(input), "-w", workers, "--ordered"]);
            let err = stderr(&out);
            assert!(out.status.success(), "{err}");
            let keys: Vec<i64> = stdout_lines(&out)
                .iter()
                .map(|m| m["key"].as_i64().unwrap())
                .collect();
            assert_eq!(keys, [1, 2], "{}: {err}", input.display());
            assert!(err.contains("0 rejected"), "{err}");
        }
    }
}

/// Item 8: a line longer than `--max-line-bytes` (even one that never ends) is one rejected
/// record, skipped without being held whole; `--workers` has bounds.
#[test]
fn line_length_and_worker_limits() {
    let dir = scratch("limits");
    let pat = write(&dir, "one.motif", "pattern one key k = begin(\"a\");\n");
    let mut text = b"{\"k\":1}\n".to_vec();
    text.extend(format!("{{\"k\":2,\"pad\":\"{}\"}}\n", "x".repeat(5000)).as_bytes());
    text.extend(b"{\"k\":3}\n");
    // The last line: 2 MB without a line end.
    text.extend(std::iter::repeat_n(b'y', 2 << 20));
    let input = write(&dir, "long.jsonl", &text);
    for workers in ["1", "2"] {
        let out = run(&[
            "run",
            p(&pat),
            "-i",
            p(&input),
            "-w",
            workers,
            "--ordered",
            "--max-line-bytes",
            "1000",
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        let keys: Vec<i64> = stdout_lines(&out)
            .iter()
            .map(|m| m["key"].as_i64().unwrap())
            .collect();
        assert_eq!(keys, [1, 3], "{err}");
        for line in [2, 4] {
            assert!(
                err.contains(&format!(
                    "long.jsonl:{line}: rejected: line longer than 1000 bytes (the limit: --max-line-bytes)"
                )),
                "{err}"
            );
        }
        assert!(
            err.contains("4 records, 2 matches, 0 timed out, 0 late, 2 rejected"),
            "{err}"
        );
    }
    // The default limit is documented in --help.
    let help = run(&["run", "--help"]);
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("[default: 16777216]"),
        "{}",
        String::from_utf8_lossy(&help.stdout)
    );
    for bad in ["0", "100000"] {
        let out = run(&["run", p(&pat), "-i", p(&input), "-w", bad]);
        assert_eq!(out.status.code(), Some(2), "-w {bad}");
        assert!(
            stderr(&out).contains("is not in 1..=256"),
            "{}",
            stderr(&out)
        );
        // The same bounds in a pipeline file.
        let config = write(&dir, "p.toml", format!("workers = {bad}\n"));
        let o = run(&["run", p(&pat), "-i", p(&input), "--config", p(&config)]);
        assert_eq!(o.status.code(), Some(1), "workers = {bad}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("workers = {bad}: not in 1..=256")),
            "{}",
            stderr(&o)
        );
    }
}

/// Item 11: an output that is an input (or in the input directory, or another output) is
/// refused before anything is written; a missing input fails before any output is created or
/// truncated, with no summary (item 13), exit 1 as for a missing pattern file.
#[test]
fn outputs_never_destroy_inputs() {
    let dir = scratch("paths");
    let pat = write(&dir, "one.motif", "pattern one key k = begin(\"a\");\n");
    let events = "{\"k\":1}\n{\"k\":2}\n";
    let input = write(&dir, "x.jsonl", events);
    let same_via_dot = dir.join(".").join("x.jsonl");
    for out in [&input, &same_via_dot] {
        let o = run(&["run", p(&pat), "-i", p(&input), "-o", p(out)]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("is the input"), "{}", stderr(&o));
        assert_eq!(
            std::fs::read_to_string(&input).unwrap(),
            events,
            "input intact"
        );
    }
    let o = run(&["run", p(&pat), "-i", p(&input), "--late-output", p(&input)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&input).unwrap(), events);

    let indir = dir.join("in");
    std::fs::create_dir_all(&indir).unwrap();
    write(&indir, "a.jsonl", events);
    let o = run(&[
        "run",
        p(&pat),
        "-i",
        p(&indir),
        "-o",
        p(&indir.join("m.jsonl")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is in the input directory"),
        "{}",
        stderr(&o)
    );
    assert!(!indir.join("m.jsonl").exists());

    let m = dir.join("m.jsonl");
    let o = run(&[
        "run",
        p(&pat),
        "-i",
        p(&input),
        "-o",
        p(&m),
        "--rejects-output",
        p(&dir.join(".").join("m.jsonl")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--output and --rejects-output are both"),
        "{}",
        stderr(&o)
    );

    // A missing input: the existing output is left as it was, no summary line.
    let keep = write(&dir, "keep.jsonl", "precious\n");
    let o = run(&[
        "run",
        p(&pat),
        "-i",
        p(&dir.join("nosuch.jsonl")),
        "-o",
        p(&keep),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("motif: cannot read input "), "{err}");
    assert!(!err.contains("records,"), "no summary: {err}");
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "precious\n");
    let o = run(&["run", p(&dir.join("nosuch.motif")), "-i", p(&input)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("motif: cannot read "),
        "{}",
        stderr(&o)
    );
}

/// Item 13: `check` and `explain` take directories as `run` does, and one pattern name in
/// two files of a directory is an error (it would run twice with indistinguishable output).
#[test]
fn pattern_directories_in_every_command() {
    let dir = scratch("patdirs");
    let pats = dir.join("pats");
    std::fs::create_dir_all(&pats).unwrap();
    write(&pats, "a.motif", "pattern a = begin(\"x\");\n");
    write(
        &pats,
        "b.motif",
        "pattern b = begin(\"y\").followedBy(\"z\");\n",
    );
    let o = run(&["check", p(&pats)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    let o = run(&["explain", p(&pats)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("pattern a:") && text.contains("pattern b:"),
        "{text}"
    );

    write(&pats, "c.motif", "pattern a = begin(\"w\");\n");
    let events = write(&dir, "e.jsonl", "{\"x\":1}\n");
    for args in [
        vec!["check", p(&pats)],
        vec!["explain", p(&pats)],
        vec!["run", p(&pats), "-i", p(&events)],
    ] {
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("motif: pattern `a` is declared in ")
                && err.contains("a.motif and in ")
                && err.contains("c.motif: pattern names must be unique"),
            "{args:?}: {err}"
        );
    }
}

/// Item 12: an empty `--key` is a usage error; a record without the key field (absent,
/// null, or an object) is rejected with the reason, on one worker and on several, so
/// `--key nosuch` no longer puts every event silently into one partition.
#[test]
fn key_fields_must_be_named_and_present() {
    let dir = scratch("keys");
    let pat = write(&dir, "u.motif", "pattern u = begin(\"a\");\n");
    let input = write(
        &dir,
        "k.jsonl",
        "{\"k\":1}\n{\"x\":1}\n{\"k\":null}\n{\"k\":{\"a\":1}}\n{\"k\":\"null\"}\n",
    );
    for bad in ["", "a,,b", "a..b", "."] {
        let o = run(&["run", p(&pat), "-i", p(&input), "--key", bad]);
        assert_eq!(o.status.code(), Some(2), "--key {bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("is not a field name"), "{}", stderr(&o));
    }
    for workers in ["1", "2"] {
        let o = run(&[
            "run",
            p(&pat),
            "-i",
            p(&input),
            "--key",
            "k",
            "-w",
            workers,
            "--ordered",
        ]);
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        let keys: Vec<String> = stdout_lines(&o)
            .iter()
            .map(|m| m["key"].to_string())
            .collect();
        assert_eq!(keys, ["1", "\"null\""], "{err}");
        for line in [2, 3, 4] {
            assert!(
                err.contains(&format!(
                    "k.jsonl:{line}: rejected: pattern u: missing key field `k`"
                )),
                "{err}"
            );
        }
        let o = run(&[
            "run",
            p(&pat),
            "-i",
            p(&input),
            "--key",
            "nosuch",
            "-w",
            workers,
        ]);
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        assert!(o.stdout.is_empty());
        assert!(
            err.contains("5 records, 0 matches, 0 timed out, 0 late, 5 rejected"),
            "{err}"
        );
        assert!(err.contains("missing key field `nosuch`"), "{err}");
    }
}

/// Item 9: the per-key cap's default is in `--help`; the first partial match a cap drops is
/// warned about once on stderr, even with `--quiet`; 0 lifts either cap.
#[test]
fn partial_match_caps_are_documented_warned_and_zero_is_no_cap() {
    let dir = scratch("caps");
    let pat = write(
        &dir,
        "ab.motif",
        "pattern ab key k = begin(\"a\").where(x == 1).followedBy(\"b\").where(x == 2);\n",
    );
    // Key 1: ten partial matches at once (the per-key cap); keys 10..19: one each, all open
    // together (the cap over all keys).
    let mut text: String = (0..10).map(|_| "{\"k\":1,\"x\":1}\n").collect();
    text.push_str("{\"k\":1,\"x\":2}\n");
    text.extend((10..20).map(|k| format!("{{\"k\":{k},\"x\":1}}\n")));
    text.extend((10..20).map(|k| format!("{{\"k\":{k},\"x\":2}}\n")));
    let input = write(&dir, "e.jsonl", text);
    let help = String::from_utf8_lossy(&run(&["run", "--help"]).stdout).into_owned();
    assert!(help.contains("0: no cap [default: 100000]"), "{help}");
    for workers in ["1", "2"] {
        let matches = |extra: &[&str]| -> (usize, String) {
            let mut args = vec!["run", p(&pat), "-i", p(&input), "-w", workers];
            args.extend_from_slice(extra);
            let o = run(&args);
            assert!(o.status.success(), "{}", stderr(&o));
            (stdout_lines(&o).len(), stderr(&o))
        };
        let (n, err) = matches(&[]);
        assert_eq!(n, 20, "{err}");
        assert!(!err.contains("warning"), "{err}");
        for cap in [
            &["--max-partial-matches", "3", "-q"][..],
            &["--max-partial-matches-total", "3", "-q"],
        ] {
            let (n, err) = matches(cap);
            assert!(n < 20, "{cap:?}: {n} matches");
            assert_eq!(
                err.matches("motif: warning: a partial-match cap dropped partial matches")
                    .count(),
                1,
                "{cap:?}: {err}"
            );
            assert!(!err.contains("records,"), "quiet: no summary: {err}");
        }
        for no_cap in [
            &["--max-partial-matches", "0"][..],
            &["--max-partial-matches-total", "0"],
        ] {
            let (n, err) = matches(no_cap);
            assert_eq!(n, 20, "{no_cap:?}: 0 is no cap: {err}");
            assert!(!err.contains("warning"), "{err}");
        }
    }
}

/// Item 16: `gen --rate` is the rate asked for (it was rounded to whole milliseconds per
/// event: 600 and 5000 both gave about 1000/s), and 0 keys or a rate of 0 are errors.
#[test]
fn gen_rates_are_exact_and_zero_is_an_error() {
    for (rate, n) in [("600", "6001"), ("5000", "50001")] {
        let o = run(&["gen", "-n", n, "--keys", "3", "--rate", rate]);
        assert!(o.status.success(), "{}", stderr(&o));
        let ts: Vec<i64> = stdout_lines(&o)
            .iter()
            .map(|v| v["ts"].as_i64().unwrap())
            .collect();
        let secs = (ts[ts.len() - 1] - ts[0]) as f64 / 1000.0;
        let got = (ts.len() - 1) as f64 / secs;
        let want: f64 = rate.parse().unwrap();
        assert!((got / want - 1.0).abs() < 0.05, "--rate {rate}: {got:.0}/s");
    }
    for args in [
        ["gen", "--keys", "0"],
        ["gen", "--rate", "0"],
        ["gen", "--rate", "2000000"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).starts_with("motif: gen: "), "{}", stderr(&o));
    }
    let dir = scratch("gen");
    let pat = write(&dir, "one.motif", "pattern one key key = begin(\"a\");\n");
    for spec in ["gen:keys=0", "gen:rate=0"] {
        let o = run(&["run", p(&pat), "-i", spec]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("generator input `{spec}`")),
            "{}",
            stderr(&o)
        );
    }
}

/// Item 7: CSV is read as RFC 4180 by the `csv` crate: a quoted field may hold a line end,
/// cells JSON lacks the form of (`2.`, `.5`, `-.5`) are numbers and `-02` text, and CSV
/// errors are reported as CSV errors (not "malformed JSON"), with the line the row began on.
#[test]
fn csv_is_read_as_rfc_4180() {
    let dir = scratch("csv");
    let pat = write(
        &dir,
        "one.motif",
        "pattern one key k = begin(\"a\").where(x > 0 or x == \"-02\");\n",
    );
    let csv = write(
        &dir,
        "e.csv",
        "k,note,x\n1,\"two\nlines\",2.\n2,plain,.5\n3,x\n4,\"a \"\"q\"\"\",-02\n5,z,-.5\n",
    );
    for workers in ["1", "2"] {
        let o = run(&["run", p(&pat), "-i", p(&csv), "-w", workers, "--ordered"]);
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        let m = stdout_lines(&o);
        let got: Vec<(i64, serde_json::Value)> = m
            .iter()
            .map(|m| (m["key"].as_i64().unwrap(), m["events"]["a"][0]["x"].clone()))
            .collect();
        assert_eq!(
            got,
            [
                (1, serde_json::json!(2.0)),
                (2, serde_json::json!(0.5)),
                (4, serde_json::json!("-02"))
            ],
            "{err}"
        );
        assert_eq!(m[0]["events"]["a"][0]["note"], "two\nlines");
        assert!(
            err.contains("e.csv:5: rejected: CSV: the row has 2 fields, the header 3"),
            "{err}"
        );
        assert!(!err.contains("malformed JSON"), "{err}");
        assert!(
            err.contains("5 records, 3 matches, 0 timed out, 0 late, 1 rejected"),
            "{err}"
        );
    }
}

/// Item 14: field names that are not identifiers, in backticks, in the header and in
/// conditions; `explain` prints them quoted.
#[test]
fn quoted_field_names_run() {
    let dir = scratch("quoted");
    let pat = write(
        &dir,
        "q.motif",
        "pattern q key `user-id` time `@timestamp`\n\
         = begin(\"a\").where(`größe` > 1 and `a.b` == \"x\")\n\
         .followedBy(\"b\").where(`größe` > a.`größe`);\n",
    );
    let events = write(
        &dir,
        "e.jsonl",
        "{\"user-id\":\"u\",\"@timestamp\":1,\"größe\":2,\"a.b\":\"x\"}\n\
         {\"user-id\":\"v\",\"@timestamp\":2,\"größe\":9}\n\
         {\"user-id\":\"u\",\"@timestamp\":3,\"größe\":3}\n",
    );
    let o = run(&["run", p(&pat), "-i", p(&events)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = stdout_lines(&o);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (
            m[0]["key"].as_str(),
            m[0]["start"].as_i64(),
            m[0]["end"].as_i64()
        ),
        (Some("u"), Some(1), Some(3))
    );
    let o = run(&["explain", p(&pat)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("(`größe` > a.`größe`)"), "{text}");
}

/// Item 15: `--idle-timeout` is real for named pipes. Two pipes read in turn
/// (`--partitioned`): one sends events, the other stays open and silent. The silent one is
/// passed over instead of blocking the reader, and once it has been silent for the idle
/// timeout it stops holding the watermark back, so the events of the other are matched while
/// both pipes are still open.
#[test]
fn idle_timeout_releases_a_silent_pipe() {
    use std::io::Write;
    use std::process::Stdio;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = scratch("fifo");
    let pat = write(
        &dir,
        "p.motif",
        "pattern p key k time ts = begin(\"a\").where(x == 1);\n",
    );
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let (a, b) = (input.join("a.jsonl"), input.join("b.jsonl"));
    for f in [&a, &b] {
        let c = std::ffi::CString::new(p(f)).unwrap();
        // SAFETY: a valid NUL-terminated path and a mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }
    let mut child = motif()
        .args([
            "run",
            p(&pat),
            "-i",
            p(&input),
            "--partitioned",
            "--idle-timeout",
            "100",
            "-w",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let closed = Arc::clone(&closed);
        std::thread::spawn(move || {
            // Opening a pipe to write waits for motif to open it to read.
            let mut wa = std::fs::OpenOptions::new()
                .write(true)
                .open(&a)
                .expect("open a");
            let wb = std::fs::OpenOptions::new()
                .write(true)
                .open(&b)
                .expect("open b");
            // A live stream on `a`, an event every 20 ms for at most 30 s; `b` silent.
            for ts in 1..1500 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if writeln!(wa, "{{\"k\":1,\"x\":1,\"ts\":{ts}}}").is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            closed.store(true, Ordering::SeqCst);
            drop(wb);
        })
    };
    // The first match, read on a thread of its own so that a run that never writes one
    // fails the test (after a minute) instead of hanging it.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_one_line(stdout));
    });
    let Ok(first) = rx.recv_timeout(std::time::Duration::from_secs(60)) else {
        let _ = child.kill();
        let _ = child.wait();
        stop.store(true, Ordering::Relaxed);
        panic!("no match within a minute");
    };
    let saw_match_while_open = !closed.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let status = wait_or_kill(&mut child, "run over pipes");
    assert!(
        saw_match_while_open,
        "the match came only after the pipes closed"
    );
    assert!(first.starts_with("{\"pattern\":\"p\""), "{first}");
    // More matches came after the line read: the closed pipe ends it.
    ended_quietly(status, "run over pipes");
}

/// Starts `motif ARGS` with standard input kept open after its first line `first`; the
/// first line it writes to standard output comes on the receiver.
fn on_open_stdin(
    args: &[&str],
    first: &str,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = motif()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{first}").expect("write");
    stdin.flush().expect("flush");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_one_line(stdout));
    });
    (child, stdin, rx)
}

/// Live streams: with `--quiet-advance`, standard input kept open and silent lets event time
/// pass with processing time, so a trailing `notFollowedBy` is decided without another
/// event (on one thread and on workers). Without it the match waits for the end of input,
/// and a later event older than the advanced watermark is late.
#[test]
fn quiet_advance_decides_a_pending_window_on_a_silent_stdin() {
    use std::io::Write;
    let dir = scratch("quiet");
    let pat = write(
        &dir,
        "p.motif",
        "pattern p key k time ts = begin(\"a\").where(t == \"A\")\
         .notFollowedBy(\"b\").where(t == \"B\").within(1s);\n",
    );
    for workers in ["1", "2"] {
        let late_path = dir.join("late.jsonl");
        let args = ["run", p(&pat), "--quiet-advance", "200ms", "-w", workers];
        let (mut child, mut stdin, rx) = on_open_stdin(
            &[&args[..], &["--late-output", p(&late_path)]].concat(),
            r#"{"k":1,"t":"A","ts":1000}"#,
        );
        // A hang guard, not a timing assertion: the match comes about 1.2 s after the event.
        let Ok(first) = rx.recv_timeout(std::time::Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("-w {workers}: no match while standard input stayed open");
        };
        assert!(first.contains("\"pattern\":\"p\""), "-w {workers}: {first}");
        assert!(first.contains("\"ts\":1000"), "-w {workers}: {first}");
        // The watermark has passed 2000: an event at 1500 is late now.
        let _ = writeln!(stdin, "{{\"k\":2,\"t\":\"A\",\"ts\":1500}}");
        drop(stdin);
        let _ = wait_or_kill(&mut child, "quiet run");
        let late = std::fs::read_to_string(dir.join("late.jsonl")).expect("late output");
        assert_eq!(late.lines().count(), 1, "-w {workers}: {late}");
        assert!(late.contains("\"ts\":1500"), "-w {workers}: {late}");
    }

    // Without the flag the window waits for an event or the end of input.
    let (mut child, stdin, rx) =
        on_open_stdin(&["run", p(&pat), "-w", "1"], r#"{"k":1,"t":"A","ts":1000}"#);
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(2500))
            .is_err(),
        "without --quiet-advance a silent stream decides nothing"
    );
    drop(stdin);
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the match at the end of input");
    assert!(first.contains("\"ts\":1000"), "{first}");
    let _ = wait_or_kill(&mut child, "run without quiet advance");
}

/// A stop signal reaches a run waiting on a silent standard input that stays open: it ends
/// with its summary and status 0, without another record.
#[test]
fn a_signal_stops_a_run_waiting_on_a_silent_stdin() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = scratch("signal-quiet");
    let pat = write(
        &dir,
        "p.motif",
        "pattern p key k = begin(\"a\").where(x == 1);\n",
    );
    let mut child = motif()
        .args(["run", p(&pat), "-w", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{{\"k\":1,\"x\":1}}").expect("write");
    stdin.flush().expect("flush");
    let stdout = child.stdout.take().expect("stdout");
    // The match is out: the run is waiting for the next record.
    assert!(read_one_line(stdout).contains("\"pattern\":\"p\""));
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: sending SIGINT to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = wait_or_kill(&mut child, "run on a silent stdin after SIGINT");
    drop(stdin);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("interrupted"), "{err}");
}

/// A looping group whose every step is optional can repeat without taking an event: Flink
/// 2.3 follows that cycle for ever on the first event that reaches it (hangs, then runs out
/// of heap; seen through ../shared/flinkcheck), and motif once did the same (gigabytes in
/// a minute on four events). It runs, with a warning, and stops a repetition that took no
/// event: every match has its first and last step. With a `notFollowedBy` after an empty
/// group inside the loop, Flink's compiler overflows its stack, and motif's once did too.
#[test]
fn a_looping_group_that_can_take_no_event_ends() {
    let events = "{\"id\":\"e1\",\"name\":\"a\",\"ts\":1}\n{\"id\":\"e2\",\"name\":\"b\",\"ts\":2}\n\
                  {\"id\":\"e3\",\"name\":\"a\",\"ts\":3}\n{\"id\":\"e4\",\"name\":\"c\",\"ts\":4}\n";
    for (name, pattern, first, last) in [
        (
            "empty-loop",
            r#"begin("v0").followedBy(begin("v9").optional()).oneOrMore().followedBy("v10")"#,
            "v0",
            "v10",
        ),
        (
            "empty-loop-negation",
            r#"begin("v1").followedBy(begin(begin("v4").optional()).notFollowedBy("v5").followedBy("v6").optional()).oneOrMore()"#,
            "v1",
            "v1",
        ),
    ] {
        let dir = scratch(name);
        let pattern_file = write(
            &dir,
            "p.motif",
            format!("pattern p\n time ts\n= {pattern};\n"),
        );
        let events_file = write(&dir, "e.jsonl", events);
        let out_file = dir.join("out.jsonl");
        let mut child = motif()
            .args([
                "run",
                p(&pattern_file),
                "-i",
                p(&events_file),
                "-o",
                p(&out_file),
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("motif runs");
        let status = wait_or_kill(&mut child, name);
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
            .expect("stderr reads");
        assert!(status.success(), "{pattern}: {status:?}: {err}");
        assert!(err.contains("can repeat without taking an event"), "{err}");
        let text = std::fs::read_to_string(&out_file).expect("matches written");
        let matches: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a match is JSON"))
            .collect();
        assert!(!matches.is_empty(), "{pattern}: {err}");
        for m in &matches {
            assert!(
                m["events"][first].is_array() && m["events"][last].is_array(),
                "{pattern}: {m}"
            );
        }
    }
}
