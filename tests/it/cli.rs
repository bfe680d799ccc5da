//! The `motif` binary: the conformance contract, bad input, exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn motif() -> Command {
    Command::new(env!("CARGO_BIN_EXE_motif"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("motif-cli-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, text).expect("write scratch file");
    p
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = motif()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn motif");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("motif runs")
}

fn stdout_json(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

const AB: &str = r#"
pattern ab
    key card
    time ts
= begin("a").where(kind == "a").followedBy("b").where(kind == "b");
"#;

#[test]
fn run_prints_matches_in_the_spec_format() {
    let dir = scratch("format");
    let pat = write(&dir, "ab.motif", AB);
    let events = r#"{"card":"c1","kind":"a","ts":1000}
{"card":"c2","kind":"a","ts":1001}
{"card":"c1","kind":"x","ts":1002}
{"card":"c1","kind":"b","ts":1003}
"#;
    let out = run_with_stdin(&["run", pat.to_str().unwrap(), "--input", "-"], events);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = stdout_json(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["pattern"], "ab");
    assert_eq!(m[0]["key"], "c1");
    assert_eq!(m[0]["start"], 1000);
    assert_eq!(m[0]["end"], 1003);
    assert_eq!(m[0]["events"]["a"][0]["kind"], "a");
    assert_eq!(m[0]["events"]["b"][0]["ts"], 1003);
    let names: Vec<&String> = m[0]["events"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["a", "b"], "variables in pattern order");
}

#[test]
fn malformed_records_are_reported_counted_and_skipped() {
    let dir = scratch("bad");
    let pat = write(&dir, "ab.motif", AB);
    let events = r#"{"card":"c1","kind":"a","ts":1}
{"card":"c1","kind":
{"card":"c1","kind":"b"}
{"card":"c1","kind":"b","ts":true}
{"card":"c1","kind":"b","ts":"yesterday"}
{"card":"c1","kind":"b","ts":5}
"#;
    let input = write(&dir, "events.jsonl", events);
    let out = motif()
        .args([
            "run",
            pat.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .output()
        .expect("motif runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(":2: rejected: malformed JSON"), "{err}");
    assert!(
        err.contains(":3: rejected: pattern ab: missing time field `ts`"),
        "{err}"
    );
    assert!(
        err.contains(":4: rejected: pattern ab: time field `ts` is the boolean true"),
        "{err}"
    );
    assert!(
        err.contains(":5: rejected: pattern ab: time field `ts` is the string \"yesterday\""),
        "{err}"
    );
    assert!(
        err.contains("6 records, 1 matches, 0 timed out, 0 late, 4 rejected"),
        "{err}"
    );
    let m = stdout_json(&out);
    assert_eq!(m.len(), 1, "nothing accepted is lost");
    assert_eq!(m[0]["end"], 5);
}

#[test]
fn strict_makes_a_bad_record_fatal() {
    let dir = scratch("strict");
    let pat = write(&dir, "ab.motif", AB);
    let out = run_with_stdin(
        &["run", pat.to_str().unwrap(), "--strict"],
        "{\"card\":\"c1\",\"kind\":\"a\",\"ts\":1}\nnot json\n{\"card\":\"c1\",\"kind\":\"b\",\"ts\":2}\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("<stdin>:2"), "{err}");
    assert!(stdout_json(&out).is_empty());
}

#[test]
fn late_events_go_to_the_late_output() {
    let dir = scratch("late");
    let pat = write(&dir, "ab.motif", AB);
    let late = dir.join("late.jsonl");
    let out = run_with_stdin(
        &[
            "run",
            pat.to_str().unwrap(),
            "--late-output",
            late.to_str().unwrap(),
        ],
        "{\"card\":\"c1\",\"kind\":\"a\",\"ts\":10}\n{\"card\":\"c1\",\"kind\":\"b\",\"ts\":5}\n",
    );
    assert!(out.status.success());
    let text = std::fs::read_to_string(&late).expect("late output written");
    let l: serde_json::Value = serde_json::from_str(text.trim()).expect("late line is JSON");
    assert_eq!(l["late"], true);
    assert_eq!(l["event"]["ts"], 5);
    assert_eq!(l["watermark"], 9);
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 late"));
}

#[test]
fn check_reports_errors_with_positions_and_exit_1() {
    let dir = scratch("check");
    let good = write(&dir, "good.motif", AB);
    let bad = write(
        &dir,
        "bad.motif",
        "pattern p = begin(\"a\").where(x > 1)\n  .followedBy(\"b\").where(count(aa) > 1);\n",
    );
    let ok = motif()
        .args(["check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let out = motif()
        .args(["check", good.to_str().unwrap(), bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.motif:2:"), "{err}");
    assert!(err.contains("unknown variable `aa`"), "{err}");
    assert!(err.contains('^'), "a caret under the error: {err}");
}

#[test]
fn explain_prints_states_and_dot() {
    let dir = scratch("explain");
    let pat = write(&dir, "ab.motif", AB);
    let text = motif()
        .args(["explain", pat.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(text.status.success());
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(t.contains("TAKE"), "{t}");
    assert!(t.contains("$endState$"), "{t}");
    assert!(t.contains("kind == \"a\""), "{t}");
    assert!(t.contains("matcher: compact"), "{t}");
    // `AB` with a skip strategy and a `followedByAny` link, explained.
    let explain_with = |file: &str, skip: &str| {
        let source = AB
            .replacen("begin(\"a\")", &format!("begin(\"a\", {skip})"), 1)
            .replacen("followedBy(", "followedByAny(", 1);
        let path = write(&dir, file, &source);
        let out = motif()
            .args(["explain", path.to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Only the chain of earliest events can be reported there: the link runs as followedBy.
    let t = explain_with("skip.motif", "skipPastLastEvent()");
    assert!(
        t.contains("matcher: partial matches grouped by state above 8 per key")
            && t.contains("followedByAny links run as followedBy"),
        "{t}"
    );
    // With another skip strategy the choice between matches with one first event stays.
    let t = explain_with("skip_to_next.motif", "skipToNext()");
    assert!(
        t.contains("matcher: partial matches in one list in Flink's order (two may share")
            && !t.contains("run as followedBy"),
        "{t}"
    );
    let dot = motif()
        .args(["explain", pat.to_str().unwrap(), "--dot"])
        .output()
        .unwrap();
    let d = String::from_utf8_lossy(&dot.stdout);
    assert!(d.starts_with("digraph"), "{d}");
    assert!(d.contains("IGNORE"), "{d}");
}

#[test]
fn timeouts_flag_reports_timed_out_partial_matches() {
    let dir = scratch("timeouts");
    let pat = write(
        &dir,
        "w.motif",
        "pattern w time ts = begin(\"a\").where(k == \"a\").followedBy(\"b\").where(k == \"b\").within(10ms);",
    );
    let events = "{\"k\":\"a\",\"ts\":1}\n{\"k\":\"c\",\"ts\":20}\n";
    let plain = run_with_stdin(&["run", pat.to_str().unwrap(), "--quiet"], events);
    assert!(stdout_json(&plain).is_empty());
    let with = run_with_stdin(
        &["run", pat.to_str().unwrap(), "--timeouts", "--quiet"],
        events,
    );
    let m = stdout_json(&with);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["timed_out"], true);
    assert_eq!(m[0]["timeout"], 11);
    assert!(with.stderr.is_empty(), "--quiet prints no summary");
}

fn gen_events(dir: &Path, n: u64, keys: u64) -> PathBuf {
    let p = dir.join("events.jsonl");
    let out = motif()
        .args([
            "gen",
            "-n",
            &n.to_string(),
            "--keys",
            &keys.to_string(),
            "--disorder-ms",
            "0",
        ])
        .args(["-o", p.to_str().unwrap()])
        .output()
        .expect("motif gen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

const ABC_FILE: &str = r#"
pattern abc
    key key
    time ts
= begin("A", skipPastLastEvent()).where(type == "A")
  .next("B").where(type == "B" and price > A.price).oneOrMore().consecutive().greedy()
  .next("C").where(type == "C")
  .within(10s);
pattern ab_any
    key key
    time ts
= begin("a").where(type == "A").followedByAny("b").where(type == "B").within(20ms);
"#;

#[test]
fn workers_do_not_change_matches_and_ordered_is_deterministic() {
    let dir = scratch("workers");
    let pat = write(&dir, "abc.motif", ABC_FILE);
    let events = gen_events(&dir, 20_000, 100);
    let run = |workers: &str, ordered: bool| {
        let mut c = motif();
        c.args([
            "run",
            pat.to_str().unwrap(),
            "--input",
            events.to_str().unwrap(),
        ])
        .args(["--workers", workers, "--quiet", "--timeouts"]);
        if ordered {
            c.arg("--ordered");
        }
        let out = c.output().expect("motif runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    };
    let sorted = |s: &str| {
        let mut v: Vec<&str> = s.lines().collect();
        v.sort_unstable();
        v.join("\n")
    };
    let one = run("1", false);
    assert!(one.lines().count() > 100, "{} matches", one.lines().count());
    for w in ["2", "4"] {
        assert_eq!(sorted(&run(w, false)), sorted(&one), "--workers {w}");
    }
    let ordered1 = run("1", true);
    assert_eq!(
        run("4", true),
        ordered1,
        "--ordered output is the same for any worker count"
    );
    assert_eq!(run("3", true), ordered1);
    assert_eq!(sorted(&ordered1), sorted(&one));
}

/// Events with bad records and late events mixed in, as a file: every 997th line is not
/// JSON, every 1,013th repeats a line from 5,000 records earlier (late by far).
fn messy_events(dir: &Path) -> PathBuf {
    let clean = gen_events(dir, 20_000, 100);
    let lines: Vec<String> = std::fs::read_to_string(&clean)
        .expect("read generated events")
        .lines()
        .map(str::to_string)
        .collect();
    let mut text = String::new();
    for (i, l) in lines.iter().enumerate() {
        text.push_str(l);
        text.push('\n');
        if i % 997 == 996 {
            text.push_str("{\"key\": oops}\n");
        }
        if i % 1013 == 1012 && i >= 5_000 {
            text.push_str(&lines[i - 5_000]);
            text.push('\n');
        }
    }
    write(dir, "messy.jsonl", &text)
}

/// Runs `motif run` with these extra arguments; (exit code, matches, late, rejects, stderr).
fn run_outputs(
    dir: &Path,
    pat: &Path,
    input: &Path,
    extra: &[&str],
) -> (i32, String, String, String, String) {
    let (late, rejects, out) = (
        dir.join("late.out"),
        dir.join("rejects.out"),
        dir.join("matches.out"),
    );
    for f in [&late, &rejects, &out] {
        let _ = std::fs::remove_file(f);
    }
    let o = motif()
        .args([
            "run",
            pat.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .args(["--late-output", late.to_str().unwrap()])
        .args(["--rejects-output", rejects.to_str().unwrap()])
        .args(["-o", out.to_str().unwrap()])
        .args(extra)
        .output()
        .expect("motif runs");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (
        o.status.code().unwrap_or(-1),
        read(&out),
        read(&late),
        read(&rejects),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn workers_give_the_same_late_and_rejected_records_and_strict_stops_at_the_same_one() {
    let dir = scratch("messy");
    let pat = write(&dir, "abc.motif", ABC_FILE);
    let input = messy_events(&dir);
    let sorted = |s: &str| {
        let mut v: Vec<&str> = s.lines().collect();
        v.sort_unstable();
        v.join("\n")
    };
    let summary = |err: &str| {
        err.lines()
            .find(|l| l.contains(" records, "))
            .unwrap_or_default()
            .to_string()
    };
    let (code, m1, late1, rej1, err1) = run_outputs(&dir, &pat, &input, &["--workers", "1"]);
    assert_eq!(code, 0, "{err1}");
    assert!(late1.lines().count() > 10, "late: {late1}");
    assert!(rej1.lines().count() >= 20, "rejects: {rej1}");
    for w in ["2", "3"] {
        let (code, m, late, rej, err) = run_outputs(&dir, &pat, &input, &["--workers", w]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(sorted(&m), sorted(&m1), "matches, --workers {w}");
        assert_eq!(sorted(&late), sorted(&late1), "late events, --workers {w}");
        assert_eq!(sorted(&rej), sorted(&rej1), "rejects, --workers {w}");
        assert_eq!(summary(&err), summary(&err1), "summary, --workers {w}");
    }
    // --strict stops at the first bad record (line 998) with the same outputs and counts.
    let (code, m1, late1, rej1, err1) =
        run_outputs(&dir, &pat, &input, &["--workers", "1", "--strict"]);
    assert_eq!(code, 2, "{err1}");
    assert!(
        summary(&err1).contains("997 records") || summary(&err1).contains("998 records"),
        "{err1}"
    );
    for w in ["2", "3"] {
        let (code, m, late, rej, err) =
            run_outputs(&dir, &pat, &input, &["--workers", w, "--strict"]);
        assert_eq!(code, 2, "{err}");
        assert_eq!(
            sorted(&m),
            sorted(&m1),
            "matches before the stop, --workers {w}"
        );
        assert_eq!(late, late1);
        assert_eq!(rej, rej1, "only the first rejected record");
        assert_eq!(summary(&err), summary(&err1), "summary, --workers {w}");
    }
}

#[test]
fn matches_of_a_live_stream_come_out_before_it_ends() {
    let dir = scratch("live");
    let pat = write(&dir, "ab.motif", AB);
    for workers in ["1", "2"] {
        live_stream_case(&pat, workers);
    }
}

fn live_stream_case(pat: &Path, workers: &str) {
    let mut child = motif()
        .args([
            "run",
            pat.to_str().unwrap(),
            "--workers",
            workers,
            "--quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn motif");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    stdin
        .write_all(
            b"{\"card\":\"c1\",\"kind\":\"a\",\"ts\":1}\n{\"card\":\"c1\",\"kind\":\"b\",\"ts\":2}\n{\"card\":\"c9\",\"kind\":\"x\",\"ts\":10}\n",
        )
        .expect("write stdin");
    stdin.flush().expect("flush stdin");
    // Three records, far fewer than a chunk, and the input stays open: the match must come
    // out anyway (no timing is asserted beyond "before the input ends").
    let first = rx.recv_timeout(std::time::Duration::from_secs(60));
    drop(stdin);
    let status = child.wait().expect("motif exits");
    let _ = reader.join();
    let first =
        first.unwrap_or_else(|_| panic!("no match while the input is open, --workers {workers}"));
    assert!(first.contains("\"pattern\":\"ab\""), "{first}");
    assert!(status.success());
}

#[test]
fn parallel_run_of_nothing_but_bad_records_ends_and_counts_them() {
    // Chunks without a single usable event still count as progress: the reading thread,
    // which waits for the workers to catch up, must not wait forever.
    let dir = scratch("all-bad");
    let pat = write(&dir, "abc.motif", ABC_FILE);
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("not json {i}\n"));
    }
    let input = write(&dir, "bad.jsonl", &text);
    for extra in [&[][..], &["--ordered"][..]] {
        let mut child = motif()
            .args([
                "run",
                pat.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
            ])
            .args([
                "--workers",
                "2",
                "--rejects-output",
                dir.join("rej").to_str().unwrap(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn motif");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for motif") {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("motif did not finish {extra:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
            .expect("read stderr");
        assert!(status.success(), "{err}");
        assert!(
            err.contains("20000 records") && err.contains("20000 rejected"),
            "{err}"
        );
    }
}

#[test]
fn directory_and_csv_inputs() {
    let dir = scratch("inputs");
    let pat = write(&dir, "ab.motif", AB);
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    write(
        &input,
        "1.jsonl",
        "{\"card\":\"c1\",\"kind\":\"a\",\"ts\":1}\n",
    );
    write(&input, "2.csv", "card,kind,ts\nc1,x,2\n\"c1\",b,3\nc1,b\n");
    let out = motif()
        .args([
            "run",
            pat.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--workers",
            "1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let m = stdout_json(&out);
    assert_eq!(m.len(), 1, "{err}");
    assert_eq!(m[0]["events"]["a"][0]["ts"], 1);
    assert_eq!(
        m[0]["events"]["b"][0],
        serde_json::json!({"card":"c1","kind":"b","ts":3})
    );
    assert!(
        err.contains("2.csv:4: rejected"),
        "short CSV row reported: {err}"
    );
}

#[test]
fn timeouts_output_gets_its_own_file() {
    let dir = scratch("timeouts-file");
    let pat = write(
        &dir,
        "w.motif",
        "pattern w time ts = begin(\"a\").where(k == \"a\").followedBy(\"b\").where(k == \"b\").within(10ms);",
    );
    let file = dir.join("timeouts.jsonl");
    let out = run_with_stdin(
        &["run", pat.to_str().unwrap(), "--quiet", "--timeouts-output", file.to_str().unwrap()],
        "{\"k\":\"a\",\"ts\":1}\n{\"k\":\"b\",\"ts\":5}\n{\"k\":\"a\",\"ts\":7}\n{\"k\":\"c\",\"ts\":30}\n",
    );
    assert!(out.status.success());
    assert_eq!(stdout_json(&out).len(), 1, "the match stays on stdout");
    let t = std::fs::read_to_string(&file).expect("timeouts file written");
    assert_eq!(t.lines().count(), 1, "{t}");
    assert!(t.contains("\"timed_out\":true"));
    assert!(t.contains("\"timeout\":17"), "{t}");
}

#[test]
fn partitioned_files_each_hold_their_own_watermark() {
    // Two sources, each in time order, whose times overlap: read one after the other as one
    // stream, the second file's events are behind the first's watermark and late; read in
    // turn as two partitions (--partitioned), nothing is late and the matches are those of
    // the merged stream.
    let dir = scratch("partitioned");
    let pat = write(&dir, "ab.motif", AB);
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).expect("create input dir");
    let mut a = String::new();
    let mut b = String::new();
    let mut merged = Vec::new();
    for i in 0..50u64 {
        let kind = if i % 2 == 0 { "a" } else { "b" };
        let la = format!(
            r#"{{"card":"x{}","kind":"{kind}","ts":{}}}"#,
            i % 5,
            1000 + 10 * i
        );
        let lb = format!(
            r#"{{"card":"y{}","kind":"{kind}","ts":{}}}"#,
            i % 5,
            1005 + 10 * i
        );
        a.push_str(&la);
        a.push('\n');
        b.push_str(&lb);
        b.push('\n');
        merged.push(la);
        merged.push(lb);
    }
    write(&inputs, "0.jsonl", &a);
    write(&inputs, "1.jsonl", &b);
    let input = inputs.to_string_lossy().to_string();
    let pat = pat.to_string_lossy().to_string();
    let late_one = dir.join("late-one.jsonl");
    let one = motif()
        .args(["run", &pat, "--input", &input, "--quiet", "--workers", "1"])
        .args(["--late-output", &late_one.to_string_lossy()])
        .output()
        .expect("motif runs");
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let late_lines = std::fs::read_to_string(&late_one).expect("late output");
    assert!(
        late_lines.lines().count() > 0,
        "one stream: the second file is late"
    );

    let want = run_with_stdin(
        &["run", &pat, "--quiet", "--workers", "1"],
        &merged.join("\n"),
    );
    let mut want = stdout_json(&want);
    want.sort_by_key(|v| v.to_string());
    assert!(!want.is_empty());
    for workers in ["1", "2"] {
        let late = dir.join(format!("late-{workers}.jsonl"));
        let got = motif()
            .args(["run", &pat, "--input", &input, "--quiet", "--partitioned"])
            .args([
                "--workers",
                workers,
                "--late-output",
                &late.to_string_lossy(),
            ])
            .output()
            .expect("motif runs");
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(std::fs::read_to_string(&late).expect("late output"), "");
        let mut got = stdout_json(&got);
        got.sort_by_key(|v| v.to_string());
        assert_eq!(got, want, "--partitioned --workers {workers}");
    }
}

#[test]
fn ordered_output_keeps_equal_lines() {
    // Two matches whose lines are equal (the input repeats an event): both come out, with
    // one worker or two, ordered or not.
    let dir = scratch("equal-lines");
    let pat = write(
        &dir,
        "ab.motif",
        r#"pattern ab key card time ts = begin("a").where(kind == "a").followedByAny("b").where(kind == "b");"#,
    );
    let input = "{\"card\":\"c1\",\"kind\":\"a\",\"ts\":1}\n{\"card\":\"c1\",\"kind\":\"b\",\"ts\":2}\n{\"card\":\"c1\",\"kind\":\"b\",\"ts\":2}\n";
    for flags in [
        &["--workers", "1"][..],
        &["--workers", "1", "--ordered"],
        &["--workers", "2", "--ordered"],
    ] {
        let mut args = vec!["run", pat.to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = run_with_stdin(&args, input);
        assert_eq!(stdout_json(&out).len(), 2, "{flags:?}");
    }
}

#[test]
fn csv_output_has_the_json_lines_content_in_columns() {
    let dir = scratch("csv-out");
    let pat = write(&dir, "abc.motif", ABC_FILE);
    let input = messy_events(&dir);
    let run = |format: &str, name: &str| {
        let out = dir.join(format!("{name}.matches"));
        let late = dir.join(format!("{name}.late"));
        let rejects = dir.join(format!("{name}.rejects"));
        let o = motif()
            .args([
                "run",
                pat.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
            ])
            .args([
                "--workers",
                "2",
                "--ordered",
                "--timeouts",
                "--output-format",
                format,
            ])
            .arg("-o")
            .arg(&out)
            .arg("--late-output")
            .arg(&late)
            .arg("--rejects-output")
            .arg(&rejects)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        [out, late, rejects].map(|p| std::fs::read_to_string(p).unwrap())
    };
    let [jm, jl, jr] = run("jsonl", "j");
    let [cm, cl, cr] = run("csv", "c");
    let rows = |text: &str, header: &str| -> Vec<Vec<String>> {
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(header));
        lines
            .map(|l| motif::source::csv::split(l).expect("a CSV row"))
            .collect()
    };
    let matches = rows(&cm, "pattern,key,start,end,timed_out,timeout,events");
    let json: Vec<serde_json::Value> = jm
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!json.is_empty());
    assert_eq!(matches.len(), json.len());
    for (row, j) in matches.iter().zip(&json) {
        assert_eq!(row[0], j["pattern"].as_str().unwrap());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&row[1]).unwrap(),
            j["key"]
        );
        assert_eq!(row[2], j["start"].to_string());
        assert_eq!(row[3], j["end"].to_string());
        let timed_out = j.get("timed_out").is_some();
        assert_eq!(row[4], timed_out.to_string());
        assert_eq!(
            row[5],
            j.get("timeout").map_or(String::new(), |t| t.to_string())
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&row[6]).unwrap(),
            j["events"]
        );
    }
    let late = rows(&cl, "pattern,time,watermark,reason,event");
    assert_eq!(late.len(), jl.lines().count());
    assert!(late.len() > 10);
    let rejects = rows(&cr, "source,line,reason,record");
    let jr: Vec<serde_json::Value> = jr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects.len(), jr.len());
    for (row, j) in rejects.iter().zip(&jr) {
        assert_eq!(row[1], j["line"].to_string());
        assert_eq!(row[2], j["reason"].as_str().unwrap());
        assert_eq!(row[3], j["record"].as_str().unwrap());
    }
}

#[test]
fn a_generated_input_is_the_stream_motif_gen_writes() {
    let dir = scratch("gen-input");
    let pat = write(&dir, "abc.motif", ABC_FILE);
    let generated = motif()
        .args([
            "gen",
            "-n",
            "20000",
            "--keys",
            "50",
            "--disorder-ms",
            "3",
            "--seed",
            "5",
        ])
        .output()
        .unwrap();
    assert!(generated.status.success());
    let file = write(
        &dir,
        "gen.jsonl",
        &String::from_utf8_lossy(&generated.stdout),
    );
    let from_file = motif()
        .args(["run", pat.to_str().unwrap(), "--ordered", "--input"])
        .arg(&file)
        .output()
        .unwrap();
    let from_gen = motif()
        .args(["run", pat.to_str().unwrap(), "--ordered"])
        .args(["--input", "gen:events=20000,keys=50,disorder=3,seed=5"])
        .output()
        .unwrap();
    assert!(
        from_gen.status.success(),
        "{}",
        String::from_utf8_lossy(&from_gen.stderr)
    );
    assert!(!from_gen.stdout.is_empty());
    assert_eq!(from_gen.stdout, from_file.stdout);
    let bad = motif()
        .args(["run", pat.to_str().unwrap(), "--input", "gen:events=lots"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("needs a whole number"));
}
