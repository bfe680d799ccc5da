//! Aggregation of matches: for each output mode and window kind, the table a run writes
//! equals a reference aggregation computed here straight from the run's full match set;
//! the worker count changes nothing; `motif check` reports aggregate errors with places.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as J;

pub(crate) fn motif() -> Command {
    Command::new(env!("CARGO_BIN_EXE_motif"))
}

pub(crate) fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("motif-agg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small deterministic generator.
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

/// Sensor readings: 12 sensors on 3 sites, about 2 s apart, times unique and out of order
/// by up to 1 s (the pattern allows 2 s), temperatures 40..=109.
pub(crate) fn events(dir: &Path, n: u64, seed: u64) -> PathBuf {
    let mut rng = Lcg(seed);
    let mut out = String::new();
    for i in 0..n {
        let sensor = rng.below(12);
        let site = ["north", "south", "east"][(sensor % 3) as usize];
        let temp = 40 + rng.below(70);
        // Unique: two events of the same parity are at least 2 s apart before the shuffle.
        let ts = 2 * (i * 1_000 + rng.below(1_500)) + (i % 2);
        out.push_str(&format!(
            "{{\"sensor\":\"s{sensor}\",\"site\":\"{site}\",\"temp\":{temp},\"ts\":{ts}}}\n"
        ));
    }
    let p = dir.join("events.jsonl");
    std::fs::write(&p, out).unwrap();
    p
}

pub(crate) const PATTERN: &str = r#"
pattern heat key sensor time ts lateness 2s
  = begin("h").where(temp > 95)
    .followedBy("n").where(temp < 60)
    .within(30s);
"#;

/// What the reference needs of one match.
pub(crate) struct M {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) site: String,
    pub(crate) sensor: String,
    pub(crate) h_temp: i64,
    pub(crate) n_temp: i64,
}

pub(crate) fn matches_of(path: &Path) -> Vec<M> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let j: J = serde_json::from_str(l).unwrap();
            let h = &j["events"]["h"][0];
            let n = &j["events"]["n"][0];
            M {
                start: j["start"].as_i64().unwrap(),
                end: j["end"].as_i64().unwrap(),
                site: h["site"].as_str().unwrap().to_string(),
                sensor: n["sensor"].as_str().unwrap().to_string(),
                h_temp: h["temp"].as_i64().unwrap(),
                n_temp: n["temp"].as_i64().unwrap(),
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Win {
    None,
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

impl Win {
    pub(crate) fn clause(self) -> String {
        match self {
            Win::None => String::new(),
            Win::Tumbling(s) => format!("window tumbling({s}ms)"),
            Win::Sliding(s, d) => format!("window sliding({s}ms, {d}ms)"),
            Win::Session(g) => format!("window session({g}ms)"),
        }
    }
}

/// One row of the reference table: count, sum, min, max, avg of h.temp, min of n.temp,
/// distinct sensors, first and last h.temp by time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Agg {
    pub(crate) count: i64,
    pub(crate) sum: i64,
    pub(crate) min: i64,
    pub(crate) max: i64,
    pub(crate) avg: f64,
    pub(crate) low: i64,
    pub(crate) sensors: i64,
    pub(crate) first: i64,
    pub(crate) last: i64,
}

/// A window (none for an aggregate without one) and a site.
pub(crate) type Cell = (Option<(i64, i64)>, String);

pub(crate) type Table = BTreeMap<Cell, Agg>;

/// The reference aggregation of `ms` (placed by start with `on_start`), `having count() >= 2`.
pub(crate) fn reference(ms: &[M], win: Win, on_start: bool) -> Table {
    let time = |m: &M| if on_start { m.start } else { m.end };
    let mut groups: BTreeMap<Cell, Vec<&M>> = BTreeMap::new();
    match win {
        Win::Session(gap) => {
            let mut by_site: BTreeMap<String, Vec<&M>> = BTreeMap::new();
            for m in ms {
                by_site.entry(m.site.clone()).or_default().push(m);
            }
            for (site, mut v) in by_site {
                v.sort_by_key(|m| time(m));
                let mut cur: Vec<&M> = Vec::new();
                let (mut s, mut e) = (0, 0);
                for m in v {
                    let t = time(m);
                    if cur.is_empty() {
                        (s, e) = (t, t + gap);
                    } else if t < e {
                        e = e.max(t + gap);
                    } else {
                        groups.insert((Some((s, e)), site.clone()), std::mem::take(&mut cur));
                        (s, e) = (t, t + gap);
                    }
                    cur.push(m);
                }
                if !cur.is_empty() {
                    groups.insert((Some((s, e)), site.clone()), cur);
                }
            }
        }
        _ => {
            for m in ms {
                let t = time(m);
                let spans: Vec<Option<(i64, i64)>> = match win {
                    Win::None => vec![None],
                    Win::Tumbling(s) => {
                        let a = t.div_euclid(s) * s;
                        vec![Some((a, a + s))]
                    }
                    Win::Sliding(s, d) => {
                        let mut v = Vec::new();
                        let mut k = (t - s).div_euclid(d) + 1;
                        while k * d <= t {
                            v.push(Some((k * d, k * d + s)));
                            k += 1;
                        }
                        v
                    }
                    Win::Session(_) => unreachable!(),
                };
                for sp in spans {
                    groups.entry((sp, m.site.clone())).or_default().push(m);
                }
            }
        }
    }
    groups
        .into_iter()
        .filter(|(_, v)| v.len() >= 2)
        .map(|(k, v)| {
            let hs: Vec<i64> = v.iter().map(|m| m.h_temp).collect();
            let first = v.iter().min_by_key(|m| time(m)).map_or(0, |m| m.h_temp);
            let last = v.iter().max_by_key(|m| time(m)).map_or(0, |m| m.h_temp);
            let sum: i64 = hs.iter().sum();
            let agg = Agg {
                count: v.len() as i64,
                sum,
                min: *hs.iter().min().unwrap(),
                max: *hs.iter().max().unwrap(),
                avg: sum as f64 / v.len() as f64,
                low: v.iter().map(|m| m.n_temp).min().unwrap(),
                sensors: v.iter().map(|m| &m.sensor).collect::<BTreeSet<_>>().len() as i64,
                first: if on_start { first } else { 0 },
                last: if on_start { last } else { 0 },
            };
            (k, agg)
        })
        .collect()
}

fn agg_of(j: &J, with_order: bool) -> Agg {
    let i = |k: &str| j[k].as_i64().unwrap_or_else(|| panic!("{k} in {j}"));
    Agg {
        count: i("n"),
        sum: i("total"),
        min: i("lo"),
        max: i("hi"),
        avg: j["mean"].as_f64().unwrap(),
        low: i("coldest"),
        sensors: i("sensors"),
        first: if with_order { i("first_temp") } else { 0 },
        last: if with_order { i("last_temp") } else { 0 },
    }
}

pub(crate) fn same(a: &Agg, b: &Agg) -> bool {
    let mut b2 = b.clone();
    b2.avg = a.avg;
    a == &b2 && (a.avg - b.avg).abs() <= 1e-9 * a.avg.abs().max(1.0)
}

/// The table the rows of a run amount to, by mode: append rows are each window's one row,
/// update rows are the latest per window and group, complete's last batch is the table.
pub(crate) fn table_of(rows: &[J], mode: &str, with_order: bool) -> Table {
    let key = |j: &J| {
        let w = j
            .get("window_start")
            .map(|s| (s.as_i64().unwrap(), j["window_end"].as_i64().unwrap()));
        (w, j["site"].as_str().unwrap().to_string())
    };
    let mut t = Table::new();
    match mode {
        "append" => {
            for j in rows {
                let prev = t.insert(key(j), agg_of(j, with_order));
                assert!(prev.is_none(), "append emitted {:?} twice", key(j));
            }
        }
        "update" => {
            for j in rows {
                if j["mode"] == "retract" {
                    assert!(
                        t.remove(&key(j)).is_some(),
                        "retracted {:?}, never emitted",
                        key(j)
                    );
                } else {
                    t.insert(key(j), agg_of(j, with_order));
                }
            }
        }
        _ => {
            let last = rows.iter().map(|j| j["batch"].as_u64().unwrap()).max();
            for j in rows.iter().filter(|j| j["batch"].as_u64() == last) {
                t.insert(key(j), agg_of(j, with_order));
            }
        }
    }
    t
}

/// Runs the pattern and one aggregate; returns the match file and the rows file's text.
pub(crate) fn run(
    dir: &Path,
    input: &Path,
    agg: &str,
    workers: usize,
    tag: &str,
) -> (PathBuf, String) {
    let pat = dir.join(format!("{tag}.motif"));
    std::fs::write(&pat, format!("{PATTERN}\n{agg}")).unwrap();
    let m = dir.join(format!("{tag}-w{workers}.matches"));
    let rows = dir.join(format!("{tag}-w{workers}.rows"));
    let o = motif()
        .arg("run")
        .arg(&pat)
        .arg("-i")
        .arg(input)
        .args(["-w", &workers.to_string(), "--ordered", "-q", "-o"])
        .arg(&m)
        .arg("--aggregate-output")
        .arg(format!("a={}", rows.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (m, std::fs::read_to_string(&rows).unwrap())
}

#[test]
fn every_mode_and_window_gives_the_reference_table_whatever_the_workers() {
    let dir = scratch("modes");
    let input = events(&dir, 3_000, 7);
    let windows = [
        Win::Tumbling(60_000),
        Win::Sliding(90_000, 30_000),
        Win::Session(20_000),
        Win::None,
    ];
    let mut checked = 0;
    for (wi, win) in windows.into_iter().enumerate() {
        for mode in ["append", "update", "complete"] {
            if matches!(win, Win::None) && mode == "append" {
                continue;
            }
            // Placing by start makes `first` and `last` unambiguous (no two matches of a
            // site start at the same event time).
            let on_start = wi % 2 == 1;
            let order_cols = if on_start {
                ", first(h.temp) as first_temp, last(h.temp) as last_temp"
            } else {
                ""
            };
            let on = if on_start && !matches!(win, Win::None) {
                " on start"
            } else {
                ""
            };
            let on_start = on_start && !matches!(win, Win::None);
            let trigger = ["every 5 records", "on watermark", "every 97 records"][checked % 3];
            let agg = format!(
                "aggregate a from heat {}{on} group by h.site as site \
                 select count() as n, sum(h.temp) as total, min(h.temp) as lo, max(h.temp) as hi, \
                 avg(h.temp) as mean, min(n.temp) as coldest, count_distinct(n.sensor) as sensors{order_cols} \
                 having count() >= 2 output {mode} trigger {trigger};",
                win.clause()
            );
            let tag = format!("{wi}-{mode}");
            let (mfile, rows1) = run(&dir, &input, &agg, 1, &tag);
            let (_, rows2) = run(&dir, &input, &agg, 2, &tag);
            assert_eq!(rows1, rows2, "{agg}: --workers 2 wrote other rows");
            let ms = matches_of(&mfile);
            assert!(ms.len() > 100, "only {} matches", ms.len());
            let rows: Vec<J> = rows1
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert!(!rows.is_empty(), "{agg}: no rows");
            let batches: Vec<u64> = rows.iter().map(|j| j["batch"].as_u64().unwrap()).collect();
            assert!(
                batches.windows(2).all(|w| w[0] <= w[1]) && batches[0] >= 1,
                "{agg}: batch ids {batches:?}"
            );
            let want = reference(&ms, win, on_start);
            let got = table_of(&rows, mode, on_start);
            let (wk, gk): (Vec<_>, Vec<_>) = (want.keys().collect(), got.keys().collect());
            assert_eq!(gk, wk, "{agg}: the table's windows and groups");
            for (k, w) in &want {
                assert!(same(w, &got[k]), "{agg}: {k:?}: {:?} vs {w:?}", got[k]);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 11);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn update_mode_emits_only_the_rows_that_changed() {
    let dir = scratch("update");
    let input = events(&dir, 600, 3);
    let agg = "aggregate a from heat window tumbling(60s) group by h.site as site \
               select count() as n, sum(h.temp) as total, min(h.temp) as lo, max(h.temp) as hi, \
               avg(h.temp) as mean, min(n.temp) as coldest, count_distinct(n.sensor) as sensors \
               output update trigger every 10 records;";
    let (_, rows) = run(&dir, &input, agg, 1, "u");
    let rows: Vec<J> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Within a batch a window and group comes once; across batches a row comes again only
    // with a larger count (it changed).
    let mut last: BTreeMap<(i64, String), i64> = BTreeMap::new();
    let mut in_batch = BTreeSet::new();
    for j in &rows {
        let k = (
            j["window_start"].as_i64().unwrap(),
            j["site"].as_str().unwrap().to_string(),
        );
        assert!(in_batch.insert((j["batch"].as_u64().unwrap(), k.clone())));
        let n = j["n"].as_i64().unwrap();
        if let Some(prev) = last.insert(k.clone(), n) {
            assert!(n > prev, "{k:?} emitted again unchanged ({prev} → {n})");
        }
    }
    assert!(rows.len() > last.len(), "no row was ever updated");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_aggregate_errors_with_places_and_suggestions() {
    let dir = scratch("check");
    let f = dir.join("bad.motif");
    std::fs::write(
        &f,
        format!(
            "{PATTERN}\naggregate a from heet group by h.site select count() output append;\n\
             aggregate b from heat group by x.site select max(h.temp), count() as max_temp window tumbling(1m) window tumbling(2m);\n\
             aggregate c from heat select h.temp having nosuch > 1;\n"
        ),
    )
    .unwrap();
    let o = motif().arg("check").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "no pattern `heet` is loaded",
        "did you mean `heat`?",
        "`output append` needs a window",
        "pattern `heat` has no variable `x`",
        "two columns are named `max_temp`",
        "`window` is given twice",
        "`h.temp` is not an aggregate call",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // Every message names its line.
    assert!(err.contains("bad.motif:7:"), "{err}");
    assert!(err.contains("bad.motif:8:"), "{err}");

    let ok = dir.join("ok.motif");
    std::fs::write(
        &ok,
        format!("{PATTERN}\naggregate a from heat window sliding(10m, 1m) group by key, h.site select count() as n;\n"),
    )
    .unwrap();
    let o = motif().arg("check").arg(&ok).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("(1 pattern, 1 aggregate)"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Parquet cell as JSON (strings, integers, doubles, booleans, null).
fn parquet_json(f: &parquet::record::Field) -> J {
    use parquet::record::Field;
    match f {
        Field::Null => J::Null,
        Field::Bool(b) => J::Bool(*b),
        Field::Long(i) => J::from(*i),
        Field::Double(d) => J::from(*d),
        Field::Str(s) => J::from(s.as_str()),
        other => panic!("unexpected Parquet value {other:?}"),
    }
}

/// Every row of a Parquet directory's part files, in batch order, as JSON objects with the
/// columns the JSON-lines rows have (null columns left out, as JSON lines leave them out for
/// a retraction).
fn parquet_rows(dir: &Path) -> Vec<J> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    parts.sort();
    let mut out = Vec::new();
    for p in parts {
        let r = SerializedFileReader::new(std::fs::File::open(&p).unwrap()).unwrap();
        for row in r.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            let mut obj = serde_json::Map::new();
            for (name, f) in row.get_column_iter() {
                let v = parquet_json(f);
                if !v.is_null() {
                    obj.insert(name.clone(), v);
                }
            }
            out.push(J::Object(obj));
        }
    }
    out
}

/// Equal JSON values, floats within a relative 1e-12 (JSON text round-trips them).
fn json_close(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        (J::Number(x), J::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(1.0)
        }
        _ => a == b,
    }
}

#[test]
fn parquet_rows_read_back_equal_the_json_lines_rows() {
    let dir = scratch("parquet");
    let input = events(&dir, 2_000, 21);
    for (i, (win, mode)) in [
        (Win::Tumbling(60_000), "append"),
        (Win::Session(20_000), "update"),
        (Win::None, "complete"),
    ]
    .into_iter()
    .enumerate()
    {
        let agg = format!(
            "aggregate a from heat {} group by h.site as site, key \
             select count() as n, sum(h.temp) as total, avg(h.temp) as mean, max(n.sensor) as top \
             output {mode} trigger every 41 records;",
            win.clause()
        );
        let (_, jsonl) = run(&dir, &input, &agg, 2, &format!("pq{i}"));
        let pat = dir.join(format!("pq{i}.motif"));
        let pq = dir.join(format!("rows{i}.parquet"));
        let o = motif()
            .arg("run")
            .arg(&pat)
            .arg("-i")
            .arg(&input)
            .args(["-w", "2", "-q", "-o", "/dev/null", "--aggregate-output"])
            .arg(format!("a={}", pq.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let want: Vec<J> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got = parquet_rows(&pq);
        assert_eq!(got.len(), want.len(), "{agg}: rows");
        assert!(!want.is_empty());
        for (g, w) in got.iter().zip(&want) {
            assert!(json_close(g, w), "{agg}:\n parquet {g}\n jsonl   {w}");
        }
        // Run again: every batch's file is there, nothing is written twice.
        let before = parquet_rows(&pq);
        let o = motif()
            .arg("run")
            .arg(&pat)
            .arg("-i")
            .arg(&input)
            .args(["-w", "1", "-q", "-o", "/dev/null", "--aggregate-output"])
            .arg(format!("a={}", pq.display()))
            .output()
            .unwrap();
        assert!(o.status.success());
        assert_eq!(parquet_rows(&pq), before);
        // ... and says so: a different input into the same directory would be skipped too.
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("already holds batches up to"), "{err}");
        // pyarrow, where it is installed, reads the directory as it is.
        let py = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, pyarrow.parquet as pq; print(pq.read_table(sys.argv[1]).num_rows)",
            ])
            .arg(&pq)
            .output();
        if let Ok(py) = py {
            if py.status.success() {
                let n: usize = String::from_utf8_lossy(&py.stdout).trim().parse().unwrap();
                assert_eq!(n, want.len(), "pyarrow's row count");
            }
        }
    }
    // Raw matches into a Parquet directory: the match file's lines, once each.
    let pat = dir.join("pq0.motif");
    let file = dir.join("m.jsonl");
    let pq = dir.join("matches.parquet");
    for target in [&file, &pq] {
        let o = motif()
            .arg("run")
            .arg(&pat)
            .arg("-i")
            .arg(&input)
            .args(["-w", "2", "-q", "--batch-records", "300", "-o"])
            .arg(target)
            .args(["--aggregate-output", "a=/dev/null"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut want: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut got: Vec<String> = parquet_rows(&pq)
        .iter()
        .map(|j| j["match_json"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    got.sort();
    assert!(!want.is_empty());
    assert!(
        got == want,
        "{} matches in Parquet, {} in the file",
        got.len(),
        want.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
