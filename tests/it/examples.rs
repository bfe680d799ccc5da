//! The example patterns of `patterns/`: every `X.motif` with sample events `X.events.jsonl`
//! beside it is run through the `motif` binary, and its standard output must be exactly the
//! matches of `X.expected.jsonl`, compared line by line as JSON values and as a multiset (the
//! order of the lines does not matter, the number of copies does).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The examples shipped with motif; the folder must hold at least this many.
const MIN_EXAMPLES: usize = 6;

fn patterns_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns")
}

/// `patterns/X.events.jsonl` or `patterns/X.expected.jsonl` for `patterns/X.motif`.
fn beside(motif: &Path, suffix: &str) -> PathBuf {
    let stem = motif.file_stem().unwrap_or_default().to_string_lossy();
    motif.with_file_name(format!("{stem}.{suffix}"))
}

/// Every `*.motif` of `patterns/` that has sample events beside it, in name order.
fn examples() -> Vec<PathBuf> {
    let dir = patterns_dir();
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "motif"))
        .filter(|p| beside(p, "events.jsonl").is_file())
        .collect();
    found.sort();
    found
}

/// JSON text with the keys of every object sorted, so that equal values are equal text.
fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let mut fields: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = fields
                .into_iter()
                .map(|(k, v)| format!("{}:{}", serde_json::Value::from(k.as_str()), canonical(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

/// One line of JSON output: how many times it occurs, and its text as first seen.
struct Line {
    count: usize,
    text: String,
}

/// The non-blank lines of `text` as a multiset, keyed by their canonical JSON text.
fn json_lines(text: &str, origin: &str) -> Result<BTreeMap<String, Line>, String> {
    let mut lines: BTreeMap<String, Line> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("{origin}:{}: not JSON ({e}): {line}", i + 1))?;
        lines
            .entry(canonical(&v))
            .or_insert_with(|| Line {
                count: 0,
                text: line.trim().to_string(),
            })
            .count += 1;
    }
    Ok(lines)
}

/// The lines of `a` that `b` lacks, each repeated as often as it is missing.
fn missing_from(a: &BTreeMap<String, Line>, b: &BTreeMap<String, Line>) -> Vec<String> {
    a.iter()
        .flat_map(|(canon, line)| {
            let have = b.get(canon).map_or(0, |l| l.count);
            std::iter::repeat_n(line.text.clone(), line.count.saturating_sub(have))
        })
        .collect()
}

/// `key K, start S, end E` of a match line, to find it quickly in a long diff.
fn summary(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    format!("key {}, start {}, end {}", v["key"], v["start"], v["end"])
}

/// Runs one example; `Err` says what differs.
fn check_example(motif: &Path) -> Result<(), String> {
    let events = beside(motif, "events.jsonl");
    let expected_path = beside(motif, "expected.jsonl");
    let expected_text = fs::read_to_string(&expected_path)
        .map_err(|e| format!("cannot read {}: {e}", expected_path.display()))?;
    let out = Command::new(env!("CARGO_BIN_EXE_motif"))
        .arg("run")
        .arg(motif)
        .arg("--input")
        .arg(&events)
        .arg("--quiet")
        .output()
        .map_err(|e| format!("cannot start motif: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("motif exited with {}:\n{stderr}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got = json_lines(&stdout, "motif's output")?;
    let want = json_lines(&expected_text, &expected_path.display().to_string())?;
    let missing = missing_from(&want, &got);
    let unexpected = missing_from(&got, &want);
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let mut report = format!(
        "{} expected match(es), motif printed {}; {} missing, {} unexpected",
        want.values().map(|l| l.count).sum::<usize>(),
        got.values().map(|l| l.count).sum::<usize>(),
        missing.len(),
        unexpected.len()
    );
    for line in &missing {
        report.push_str(&format!("\n  - missing ({}):\n      {line}", summary(line)));
    }
    for line in &unexpected {
        report.push_str(&format!(
            "\n  + unexpected ({}):\n      {line}",
            summary(line)
        ));
    }
    if !stderr.trim().is_empty() {
        report.push_str(&format!("\n  motif's stderr:\n{stderr}"));
    }
    Err(report)
}

#[test]
fn every_example_pattern_produces_its_expected_matches() {
    let examples = examples();
    assert!(
        examples.len() >= MIN_EXAMPLES,
        "expected at least {MIN_EXAMPLES} examples with sample events in {}, found {}",
        patterns_dir().display(),
        examples.len()
    );
    let failures: Vec<String> = examples
        .iter()
        .filter_map(|p| {
            check_example(p).err().map(|e| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                format!("patterns/{name}: {e}")
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} examples differ from their .expected.jsonl:\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n")
    );
}

/// The pipeline example of `patterns/pipeline/`: sensor readings → the over-temperature
/// pattern → per-sensor counts per minute, written to a file exactly as
/// `overheat_per_minute.expected.jsonl`, and into a MariaDB table with the README's command
/// when a server answers.
#[test]
fn the_pipeline_example_writes_its_rows_to_a_file_and_to_mysql() {
    let dir = patterns_dir().join("pipeline");
    let out = std::env::temp_dir().join(format!("motif-pipeline-{}.jsonl", std::process::id()));
    let run = |target: &str| {
        Command::new(env!("CARGO_BIN_EXE_motif"))
            .arg("run")
            .arg(&dir)
            .arg("--input")
            .arg(dir.join("sensor_readings.jsonl"))
            .args(["-q", "-o", "/dev/null", "--aggregate-output"])
            .arg(format!("overheat_per_minute={target}"))
            .output()
            .unwrap()
    };
    let o = run(&out.display().to_string());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = fs::read_to_string(&out).unwrap();
    let want = fs::read_to_string(dir.join("overheat_per_minute.expected.jsonl")).unwrap();
    assert_eq!(got, want, "the example's rows");
    let _ = fs::remove_file(&out);

    let answers = "127.0.0.1:3306".parse().ok().is_some_and(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
    });
    if !answers {
        assert!(
            std::env::var_os("MOTIF_REQUIRE_DB").is_none(),
            "no MariaDB at 127.0.0.1:3306 and MOTIF_REQUIRE_DB is set"
        );
        eprintln!("skipping the MariaDB half: no server answers at 127.0.0.1:3306");
        return;
    }
    let db = format!("motif_demo_{}", std::process::id());
    let sql = |q: &str| {
        let o = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-N", "-B", "-e", q])
            .output()
            .expect("the mariadb client");
        assert!(
            o.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    sql(&format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"
    ));
    let url = format!("mysql://root@127.0.0.1:3306/{db}?table=overheat_per_minute&create=true");
    let o = run(&url);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = sql(&format!(
        "SELECT window_start, sensor_id, location, alerts, peak FROM {db}.overheat_per_minute \
         ORDER BY window_start, sensor_id"
    ));
    let mut expected: Vec<String> = want
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}\t{}\t{}\t{}\t{}",
                j["window_start"],
                j["sensor_id"].as_str().unwrap(),
                j["location"].as_str().unwrap(),
                j["alerts"],
                j["peak"].as_f64().unwrap()
            )
        })
        .collect();
    expected.sort();
    let mut rows: Vec<String> = table.lines().map(str::to_string).collect();
    rows.sort();
    assert_eq!(rows, expected, "the MariaDB table");
    sql(&format!("DROP DATABASE {db}"));
}

/// The same pipeline from a TOML pipeline file (`--config`): paths relative to the file,
/// `${NAME}` from the environment, and a flag on the command line over the file's value.
#[test]
fn a_pipeline_file_runs_the_pipeline_example() {
    let dir = std::env::temp_dir().join(format!("motif-config-run-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let example = patterns_dir().join("pipeline");
    fs::write(
        dir.join("pipeline.toml"),
        format!(
            r#"
patterns = "{}"
input = "{}"
workers = 2
[outputs]
matches = "${{MOTIF_TEST_OUT}}/matches.jsonl"
[aggregates]
overheat_per_minute = "rows.jsonl"
"#,
            example.display(),
            example.join("sensor_readings.jsonl").display()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_motif"))
        .args(["run", "-q", "--config"])
        .arg(dir.join("pipeline.toml"))
        .env("MOTIF_TEST_OUT", &dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = fs::read_to_string(example.join("overheat_per_minute.expected.jsonl")).unwrap();
    assert_eq!(fs::read_to_string(dir.join("rows.jsonl")).unwrap(), want);
    assert!(
        fs::read_to_string(dir.join("matches.jsonl"))
            .unwrap()
            .lines()
            .count()
            > 10
    );
    // A flag wins over the file; an unset variable is an error naming it.
    let o = Command::new(env!("CARGO_BIN_EXE_motif"))
        .args(["run", "-q", "--config"])
        .arg(dir.join("pipeline.toml"))
        .args(["--aggregate-output"])
        .arg(format!(
            "overheat_per_minute={}",
            dir.join("cli.jsonl").display()
        ))
        .env("MOTIF_TEST_OUT", &dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read_to_string(dir.join("cli.jsonl")).unwrap(), want);
    let o = Command::new(env!("CARGO_BIN_EXE_motif"))
        .args(["run", "-q", "--config"])
        .arg(dir.join("pipeline.toml"))
        .env_remove("MOTIF_TEST_OUT")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("MOTIF_TEST_OUT is not set"));
    let _ = fs::remove_dir_all(&dir);
}
