//! Aggregation and database sinks:
//!
//! - (g) `../shared/peer/abc.motif` through the whole pipeline (generated input, matches to
//!   a file, one worker) alone and with an aggregate over its matches, alternated, as a
//!   ratio (target: within 10 %);
//! - rows per second into PostgreSQL and MariaDB/MySQL through motif's table sinks, appending
//!   new rows and upserting existing ones (update mode), against the same rows loaded by
//!   `COPY` (PostgreSQL) and `LOAD DATA` (MySQL) in the same run, the ceiling (target: at
//!   least half of it). Skipped, with the reason, when a server does not answer.
//!
//! `cargo bench --bench sinks` (options after `--`: `--events N` for (g), default 2,000,000;
//! `--rows N` for the databases, default 200,000; `--only g|postgres|mysql`).
//! No assertion on any figure: this prints, tests assert.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use motif::aggregate::{AggregateDecl, Batch, Cell, OutputMode, Row};
use motif::pipeline::{self, OutputSpec, PipelineOptions};
use motif::runtime::EngineOptions;
use motif::sink::table::{DbErrorPolicy, TableSink};
use motif::source::gen::GenSource;

/// `../shared/peer/abc.motif`, the throughput bench's scenario (b).
const ABC: &str = r#"
pattern abc
    key key
    time ts
= begin("A", skipPastLastEvent()).where(type == "A")
  .next("B").where(type == "B" and price > A.price).oneOrMore().consecutive().greedy()
  .next("C").where(type == "C")
  .within(10s);
"#;

const AGG: &str = "aggregate per_key from abc window tumbling(1s) group by key \
    select count() as n, max(C.price) as top, avg(A.price) as mean output update \
    trigger every 10000 records;";

fn options(aggregates: Vec<AggregateDecl>) -> PipelineOptions {
    PipelineOptions {
        engine: EngineOptions::default(),
        workers: 1,
        ordered: false,
        strict: false,
        format: motif::output::OutputFormat::JsonLines,
        checkpoint: None,
        aggregates,
        db_errors: DbErrorPolicy::Skip,
        batch_records: pipeline::DEFAULT_BATCH_RECORDS,
        quiet_advance_ms: None,
    }
}

/// One run of (g): events/s, matches, aggregate rows written.
fn pipeline_run(events: u64, with_agg: bool, dir: &Path) -> (f64, u64) {
    let text = if with_agg {
        format!("{ABC}\n{AGG}")
    } else {
        ABC.to_string()
    };
    let program =
        motif::syntax::load_program_str("<bench>", &text, &[]).expect("bench patterns load");
    let mut source =
        GenSource::new(&format!("gen:events={events},keys=1000,seed=42")).expect("generator spec");
    let spec = OutputSpec {
        matches: Some(dir.join("matches.jsonl")),
        aggregates: vec![(
            "per_key".to_string(),
            dir.join("rows.jsonl").display().to_string(),
        )],
        ..OutputSpec::default()
    };
    let spec = if with_agg {
        spec
    } else {
        OutputSpec {
            aggregates: Vec::new(),
            ..spec
        }
    };
    let stop = AtomicBool::new(false);
    let t = Instant::now();
    let summary = pipeline::run(
        &program.patterns,
        &options(program.aggregates),
        &mut source,
        &spec,
        &stop,
        &mut |_| {},
        &mut |_| {},
    )
    .expect("bench run");
    let secs = t.elapsed().as_secs_f64();
    (events as f64 / secs, summary.stats.matches)
}

fn bench_aggregation(events: u64) {
    let dir = std::env::temp_dir().join(format!("motif-bench-sinks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut ratios = Vec::new();
    let (mut alone, mut with) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (a, m) = pipeline_run(events, false, &dir);
        let (w, m2) = pipeline_run(events, true, &dir);
        assert_eq!(m, m2, "the aggregate changed the matches");
        alone.push(a);
        with.push(w);
        ratios.push(w / a);
    }
    let rows = std::fs::read_to_string(dir.join("rows.jsonl")).map_or(0, |s| s.lines().count());
    ratios.sort_by(f64::total_cmp);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "(g) abc.motif, {events} events, 1,000 keys, whole pipeline, one worker: alone {:.2}M ev/s, with an aggregate {:.2}M ev/s ({rows} rows): ratio median {:.3} (range {:.3}–{:.3}, 5 alternated pairs)",
        median(&mut alone) / 1e6,
        median(&mut with) / 1e6,
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn answers(addr: &str) -> bool {
    addr.parse()
        .ok()
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// An aggregate whose rows are (window, key) → count, sum, max.
fn decl() -> AggregateDecl {
    let text = "pattern p key k = begin(\"a\");\n\
        aggregate bench from p window tumbling(1m) group by key \
        select count() as n, sum(a.x) as total, max(a.x) as top output update;";
    motif::syntax::load_program_str("<bench>", text, &[])
        .expect("bench aggregate loads")
        .aggregates
        .remove(0)
}

/// `rows` rows in batches of 10,000, the values of round `round`.
fn batches(rows: u64, round: i64, mode: OutputMode) -> Vec<Batch> {
    let per = 10_000u64;
    (0..rows.div_ceil(per))
        .map(|b| Batch {
            agg: 0,
            id: b + 1 + (round as u64) * 1_000_000,
            mode,
            watermark: 0,
            rows: (b * per..((b + 1) * per).min(rows))
                .map(|i| Row {
                    window: Some((60_000 * (i as i64 % 7), 60_000 * (i as i64 % 7 + 1))),
                    group: vec![Cell::Str(Arc::from(format!("key-{i:08}").as_str()))].into(),
                    values: vec![
                        Cell::Int(1 + round),
                        Cell::Float(i as f64 * 0.5 + round as f64),
                        Cell::Float(i as f64),
                    ]
                    .into(),
                    retract: false,
                })
                .collect(),
        })
        .collect()
}

/// The CSV the ceiling loads: the same rows, with the columns the sink writes.
fn csv(rows: u64, path: &Path) {
    let mut out = String::new();
    for b in batches(rows, 0, OutputMode::Append) {
        for r in b.rows {
            let (s, e) = r.window.unwrap_or_default();
            let key = match &r.group[0] {
                Cell::Str(k) => k.to_string(),
                _ => String::new(),
            };
            let v = |i: usize| match &r.values[i] {
                Cell::Int(x) => x.to_string(),
                Cell::Float(x) => x.to_string(),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{},{s},{e},{key},{},{},{},{}\n",
                motif::sink::table::row_key(&[Cell::Int(s), Cell::Int(e), r.group[0].clone()]),
                v(0),
                v(1),
                v(2),
                b.id
            ));
        }
    }
    std::fs::write(path, out).expect("write the ceiling's CSV");
}

fn write_all(sink: &mut dyn TableSink, batches: &[Batch]) -> f64 {
    let n: usize = batches.iter().map(|b| b.rows.len()).sum();
    let t = Instant::now();
    for b in batches {
        let r = sink.write_batch(b).expect("bench batch");
        assert!(!r.skipped && r.refused.is_empty());
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn psql(sql: &str) {
    let o = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-q",
            "-c",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        o.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn mariadb(sql: &str) {
    let o = std::process::Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "-e", sql])
        .output()
        .expect("mariadb");
    assert!(
        o.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn bench_db(kind: &str, rows: u64) {
    let (addr, schema) = match kind {
        "postgres" => ("127.0.0.1:5432", "motif_bench"),
        _ => ("127.0.0.1:3306", "motif_bench"),
    };
    if !answers(addr) {
        println!("{kind}: skipped, no server answers at {addr}");
        return;
    }
    let agg = decl();
    let url = |table: &str| match kind {
        "postgres" => format!("postgres://postgres@{addr}/test?table={schema}.{table}&create=true"),
        _ => format!("mysql://root@{addr}/{schema}?table={table}&create=true&prefer_socket=false"),
    };
    let open = |table: &str| -> Box<dyn TableSink> {
        let u = motif::sink::url::parse(&url(table)).expect("bench url");
        match kind {
            "postgres" => Box::new(
                motif::sink::postgres::PostgresSink::open(u, &agg, 3, DbErrorPolicy::Skip)
                    .expect("open"),
            ),
            _ => Box::new(
                motif::sink::mysql::MysqlSink::open(u, &agg, 3, DbErrorPolicy::Skip).expect("open"),
            ),
        }
    };
    let csv_path =
        std::env::temp_dir().join(format!("motif-bench-{kind}-{}.csv", std::process::id()));
    csv(rows, &csv_path);
    let mut results = Vec::new();
    for round in 0..3 {
        match kind {
            "postgres" => psql(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            )),
            _ => mariadb(&format!(
                "DROP DATABASE IF EXISTS {schema}; CREATE DATABASE {schema}"
            )),
        }
        let mut sink = open("rows");
        let append = write_all(sink.as_mut(), &batches(rows, 1, OutputMode::Append));
        // The same keys again: every row an update of an existing one.
        let upsert = write_all(sink.as_mut(), &batches(rows, 2, OutputMode::Update));
        // The ceiling: the same rows loaded in bulk into a table of the same shape.
        drop(open("bulk"));
        let t = Instant::now();
        let cols = "row_key, window_start, window_end, key, n, total, top, batch_id";
        match kind {
            "postgres" => psql(&format!(
                "CREATE TABLE IF NOT EXISTS {schema}.bulk (row_key TEXT PRIMARY KEY, window_start BIGINT, window_end BIGINT, key TEXT, n BIGINT, total DOUBLE PRECISION, top DOUBLE PRECISION, batch_id BIGINT NOT NULL); \
                 COPY {schema}.bulk ({cols}) FROM '{}' WITH (FORMAT csv)",
                csv_path.display()
            )),
            _ => mariadb(&format!(
                "CREATE TABLE IF NOT EXISTS {schema}.bulk (row_key CHAR(32) PRIMARY KEY, window_start BIGINT, window_end BIGINT, `key` TEXT, n BIGINT, total DOUBLE, top DOUBLE, batch_id BIGINT NOT NULL); \
                 LOAD DATA INFILE '{}' INTO TABLE {schema}.bulk FIELDS TERMINATED BY ',' ({})",
                csv_path.display(),
                "row_key, window_start, window_end, `key`, n, total, top, batch_id"
            )),
        }
        let bulk = rows as f64 / t.elapsed().as_secs_f64();
        // Raw matches: a match table in append batches, against COPY / LOAD DATA of the same.
        let raw = raw_matches(kind, rows, &url("matches"), schema);
        println!(
            "{kind} round {round}: {rows} rows in batches of 10,000: append {:.0} rows/s, update-mode upserts {:.0} rows/s; {} {:.0} rows/s: append {:.2}, upsert {:.2} of it",
            append,
            upsert,
            if kind == "postgres" { "COPY" } else { "LOAD DATA" },
            bulk,
            append / bulk,
            upsert / bulk
        );
        println!(
            "{kind} round {round}: {rows} raw matches in batches of 10,000: {:.0} rows/s; {} {:.0} rows/s: {:.2} of it",
            raw.0,
            if kind == "postgres" { "COPY" } else { "LOAD DATA" },
            raw.1,
            raw.0 / raw.1
        );
        results.push((append / bulk, upsert / bulk));
    }
    let _ = std::fs::remove_file(&csv_path);
    match kind {
        "postgres" => psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")),
        _ => mariadb(&format!("DROP DATABASE IF EXISTS {schema}")),
    }
    let _ = results;
}

/// `rows` raw matches (about 300 bytes of JSON each) through a match table, and the same
/// rows bulk-loaded: rows/s of each.
fn raw_matches(kind: &str, rows: u64, url: &str, schema: &str) -> (f64, f64) {
    use motif::sink::table::{Layout, SqlValue};
    let layout = Layout::matches();
    let u = motif::sink::url::parse(url).expect("bench url");
    let mut sink: Box<dyn TableSink> = match kind {
        "postgres" => Box::new(
            motif::sink::postgres::PostgresSink::open_layout(
                u,
                "matches",
                layout.clone(),
                DbErrorPolicy::Skip,
            )
            .expect("open"),
        ),
        _ => Box::new(
            motif::sink::mysql::MysqlSink::open_layout(
                u,
                "matches",
                layout.clone(),
                DbErrorPolicy::Skip,
            )
            .expect("open"),
        ),
    };
    let json = |i: u64| {
        format!(
            "{{\"pattern\":\"abc\",\"key\":\"k{:04}\",\"start\":{i},\"end\":{},\"events\":{{\"A\":[{{\"id\":{i},\"key\":\"k{:04}\",\"ts\":{i},\"type\":\"A\",\"price\":12.5}}],\"B\":[{{\"id\":{},\"type\":\"B\",\"price\":40.25}}],\"C\":[{{\"id\":{},\"type\":\"C\",\"price\":7.0}}]}}}}",
            i % 1000,
            i + 9,
            i % 1000,
            i + 3,
            i + 9
        )
    };
    let per = 10_000u64;
    let batches: Vec<Batch> = (0..rows.div_ceil(per))
        .map(|b| Batch {
            agg: 0,
            id: b + 1,
            mode: OutputMode::Append,
            watermark: 0,
            rows: (b * per..((b + 1) * per).min(rows))
                .map(|i| Row {
                    window: None,
                    group: vec![Cell::Int(i as i64 + 1)].into(),
                    values: vec![
                        Cell::Str(Arc::from("abc")),
                        Cell::Json(Arc::from(format!("\"k{:04}\"", i % 1000).as_str())),
                        Cell::Int(i as i64),
                        Cell::Int(i as i64 + 9),
                        Cell::Bool(false),
                        Cell::Str(Arc::from(json(i).as_str())),
                    ]
                    .into(),
                    retract: false,
                })
                .collect(),
        })
        .collect();
    let ours = write_all(sink.as_mut(), &batches);
    // The ceiling: the same rows, as CSV, bulk-loaded.
    let path = std::env::temp_dir().join(format!("motif-bench-raw-{}.csv", std::process::id()));
    let mut out = String::new();
    for b in &batches {
        for r in &b.rows {
            let (key, values) = layout.values(r).expect("bench row");
            let q = |v: &SqlValue| match v {
                SqlValue::Int(i) => i.to_string(),
                SqlValue::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                SqlValue::Text(t) => format!("\"{}\"", t.replace('"', "\"\"")),
                _ => String::new(),
            };
            let cols: Vec<String> = values.iter().map(q).collect();
            out.push_str(&format!("{key},{},{}\n", cols.join(","), b.id));
        }
    }
    std::fs::write(&path, out).expect("write the ceiling's CSV");
    let cols =
        "row_key, match_no, pattern, `key`, start_ms, end_ms, timed_out, match_json, batch_id";
    let t = Instant::now();
    match kind {
        "postgres" => psql(&format!(
            "CREATE TABLE {schema}.raw_bulk (row_key TEXT PRIMARY KEY, match_no BIGINT, pattern TEXT, key TEXT, start_ms BIGINT, end_ms BIGINT, timed_out BOOLEAN, match_json TEXT, batch_id BIGINT NOT NULL); \
             COPY {schema}.raw_bulk ({}) FROM '{}' WITH (FORMAT csv)",
            cols.replace('`', ""),
            path.display()
        )),
        _ => mariadb(&format!(
            "CREATE TABLE {schema}.raw_bulk (row_key CHAR(32) PRIMARY KEY, match_no BIGINT, pattern TEXT, `key` TEXT, start_ms BIGINT, end_ms BIGINT, timed_out BOOLEAN, match_json TEXT, batch_id BIGINT NOT NULL); \
             LOAD DATA INFILE '{}' INTO TABLE {schema}.raw_bulk FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ({cols})",
            path.display()
        )),
    }
    let bulk = rows as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    (ours, bulk)
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
    let only = opt("--only");
    let wants = |what: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|x| x == what))
    };
    let events: u64 = opt("--events")
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let rows: u64 = opt("--rows")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    if wants("g") {
        bench_aggregation(events);
    }
    for kind in ["postgres", "mysql"] {
        if wants(kind) {
            bench_db(kind, rows);
        }
    }
}
