//! Aggregation rows into the real PostgreSQL and MariaDB/MySQL of the machine (each test in
//! a schema or database of its own): for each output mode and window kind the table after
//! the run equals the reference aggregation of the run's matches; running the same input
//! again leaves the table unchanged; a connection cut mid-run and restored loses nothing;
//! a run killed mid-run and restarted from its checkpoint loses and duplicates nothing.
//!
//! A test whose server does not answer says so and passes, unless `MOTIF_REQUIRE_DB` is set
//! (`.ci/run` sets it, after making sure both servers answer).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as J;

use crate::aggregate::{events, matches_of, motif, reference, same, scratch, Table, Win, PATTERN};

const PG: &str = "127.0.0.1:5432";
const MY: &str = "127.0.0.1:3306";

fn answers(addr: &str) -> bool {
    match addr.parse() {
        Ok(a) => TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok(),
        Err(_) => false,
    }
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client of the test PostgreSQL (database `test`), its connection driven by the runtime
/// it is used on.
async fn pg_client() -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    c
}

/// A connection to the test MariaDB's database `name`.
pub(crate) async fn my_conn(name: &str) -> mysql_async::Conn {
    mysql_async::Conn::from_url(format!("mysql://root@127.0.0.1:3306/{name}"))
        .await
        .unwrap()
}

/// A database of its own for one test: a PostgreSQL schema or a MySQL database.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Db {
    Postgres,
    Mysql,
}

impl Db {
    fn addr(self) -> &'static str {
        match self {
            Db::Postgres => PG,
            Db::Mysql => MY,
        }
    }

    /// Whether the server answers; says why a test skips if not.
    pub(crate) fn available(self, test: &str) -> bool {
        if answers(self.addr()) {
            return true;
        }
        assert!(
            std::env::var_os("MOTIF_REQUIRE_DB").is_none(),
            "{test}: no {self:?} server answers at {}, and MOTIF_REQUIRE_DB is set",
            self.addr()
        );
        eprintln!(
            "skipping {test}: no {self:?} server answers at {} (.ci/run starts one)",
            self.addr()
        );
        false
    }

    /// Creates an empty schema/database `name` (dropping any old one).
    pub(crate) fn create(self, name: &str) {
        let rt = rt();
        match self {
            Db::Postgres => rt.block_on(async {
                let c = pg_client().await;
                c.batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
                ))
                .await
                .unwrap();
            }),
            Db::Mysql => rt.block_on(async {
                use mysql_async::prelude::Queryable;
                let mut c = my_conn("test").await;
                c.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                    .await
                    .unwrap();
                c.query_drop(format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                c.disconnect().await.unwrap();
            }),
        }
    }

    /// The sink URL of table `table` in `name`, through `addr`.
    fn url(self, addr: &str, name: &str, table: &str) -> String {
        match self {
            Db::Postgres => format!(
                "postgres://postgres@{addr}/test?table={name}.{table}&create=true&connect_timeout=5"
            ),
            Db::Mysql => {
                format!("mysql://root@{addr}/{name}?table={table}&create=true&prefer_socket=false")
            }
        }
    }

    /// Every row of `name.table` as JSON objects (no `row_key`, `batch_id`).
    fn rows(self, name: &str, table: &str, windowed: bool) -> Vec<J> {
        let rt = rt();
        let texts: Vec<String> = match self {
            Db::Postgres => rt.block_on(async {
                let c = pg_client().await;
                c.query(
                    &format!("SELECT row_to_json(t)::text FROM {name}.{table} t"),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
            }),
            Db::Mysql => rt.block_on(async {
                use mysql_async::prelude::Queryable;
                let mut c = my_conn(name).await;
                let w = if windowed {
                    "'window_start', window_start, 'window_end', window_end, "
                } else {
                    ""
                };
                let v: Vec<String> = c
                    .query(format!(
                        "SELECT JSON_OBJECT({w}'site', site, 'n', n, 'total', total, 'lo', lo, \
                         'hi', hi, 'mean', mean, 'coldest', coldest, 'sensors', sensors) FROM {table}"
                    ))
                    .await
                    .unwrap();
                c.disconnect().await.unwrap();
                v
            }),
        };
        texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect()
    }

    /// The table as the reference's type.
    fn table(self, name: &str, table: &str, windowed: bool) -> Table {
        let mut t = Table::new();
        for j in self.rows(name, table, windowed) {
            let w = j
                .get("window_start")
                .and_then(J::as_i64)
                .zip(j.get("window_end").and_then(J::as_i64));
            let n = |k: &str| {
                j[k].as_i64()
                    .or_else(|| j[k].as_f64().map(|f| f as i64))
                    .unwrap_or_else(|| panic!("{k} in {j}"))
            };
            let agg = crate::aggregate::Agg {
                count: n("n"),
                sum: n("total"),
                min: n("lo"),
                max: n("hi"),
                avg: j["mean"].as_f64().unwrap(),
                low: n("coldest"),
                sensors: n("sensors"),
                first: 0,
                last: 0,
            };
            let prev = t.insert((w, j["site"].as_str().unwrap().to_string()), agg);
            assert!(prev.is_none(), "two rows for one window and group");
        }
        t
    }
}

fn agg_decl(win: Win, mode: &str, trigger: &str) -> String {
    format!(
        "aggregate a from heat {} group by h.site as site \
         select count() as n, sum(h.temp) as total, min(h.temp) as lo, max(h.temp) as hi, \
         avg(h.temp) as mean, min(n.temp) as coldest, count_distinct(n.sensor) as sensors \
         having count() >= 2 output {mode} trigger {trigger};",
        win.clause()
    )
}

fn assert_same(got: &Table, want: &Table, what: &str) {
    let (gk, wk): (Vec<_>, Vec<_>) = (got.keys().collect(), want.keys().collect());
    assert_eq!(gk, wk, "{what}: the table's windows and groups");
    for (k, w) in want {
        assert!(same(w, &got[k]), "{what}: {k:?}: {:?} vs {w:?}", got[k]);
    }
}

/// Runs the pattern and `agg` with its rows into `target`; returns the match file.
fn run_into(
    dir: &Path,
    input: &Path,
    agg: &str,
    target: &str,
    tag: &str,
    extra: &[&str],
) -> PathBuf {
    let pat = dir.join(format!("{tag}.motif"));
    std::fs::write(&pat, format!("{PATTERN}\n{agg}")).unwrap();
    let m = dir.join(format!("{tag}.matches"));
    let o = motif()
        .arg("run")
        .arg(&pat)
        .arg("-i")
        .arg(input)
        .args(["-w", "2", "-q", "-o"])
        .arg(&m)
        .arg("--aggregate-output")
        .arg(format!("a={target}"))
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    m
}

fn modes_and_windows(db: Db, test: &str) {
    if !db.available(test) {
        return;
    }
    let name = format!("motif_modes_{}", std::process::id());
    db.create(&name);
    let dir = scratch(&format!("db-{db:?}"));
    let input = events(&dir, 2_000, 5);
    let mut n = 0;
    for (wi, win) in [
        Win::Tumbling(60_000),
        Win::Sliding(90_000, 30_000),
        Win::Session(20_000),
        Win::None,
    ]
    .into_iter()
    .enumerate()
    {
        for mode in ["append", "update", "complete"] {
            if matches!(win, Win::None) && mode == "append" {
                continue;
            }
            let table = format!("t{wi}_{mode}");
            let target = db.url(db.addr(), &name, &table);
            let agg = agg_decl(win, mode, "every 53 records");
            let m = run_into(&dir, &input, &agg, &target, &table, &[]);
            let windowed = !matches!(win, Win::None);
            let want = reference(&matches_of(&m), win, false);
            let got = db.table(&name, &table, windowed);
            assert_same(&got, &want, &format!("{db:?} {agg}"));
            // The same input again: every batch was committed, the table does not change.
            let before = db.rows(&name, &table, windowed);
            run_into(&dir, &input, &agg, &target, &table, &[]);
            assert_eq!(
                db.rows(&name, &table, windowed),
                before,
                "{db:?} {agg}: a second run changed the table"
            );
            n += 1;
        }
    }
    assert_eq!(n, 11);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_tables_equal_the_reference_in_every_mode_and_window() {
    modes_and_windows(Db::Postgres, "postgres_tables_equal_the_reference");
}

#[test]
fn mysql_tables_equal_the_reference_in_every_mode_and_window() {
    modes_and_windows(Db::Mysql, "mysql_tables_equal_the_reference");
}

/// A loopback TCP proxy to `upstream` that can be cut: while down, it closes every open
/// connection and every new one at once.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub(crate) fn start(upstream: &'static str) -> Proxy {
        Proxy::on(TcpListener::bind("127.0.0.1:0").unwrap(), upstream)
    }

    /// A proxy accepting on `listener`.
    pub(crate) fn on(listener: TcpListener, upstream: &'static str) -> Proxy {
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (d, o) = (Arc::clone(&down), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        o.lock().unwrap().push(c);
                    }
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, down, open }
    }

    /// Cuts every connection and refuses new ones, until [`Proxy::restore`].
    pub(crate) fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// The last batch id the progress table holds for aggregate `a` into `table` (0: none).
fn progress(db: Db, name: &str, table: &str) -> i64 {
    let rt = rt();
    let key = format!("a:{table}");
    match db {
        Db::Postgres => rt.block_on(async {
            let Ok((c, conn)) = tokio_postgres::connect(
                "host=127.0.0.1 port=5432 user=postgres dbname=test",
                tokio_postgres::NoTls,
            )
            .await
            else {
                return 0;
            };
            tokio::spawn(conn);
            c.query_opt(
                &format!("SELECT batch FROM {name}.motif_progress WHERE sink = $1"),
                &[&key],
            )
            .await
            .ok()
            .flatten()
            .map_or(0, |r| r.get::<_, i64>(0))
        }),
        Db::Mysql => rt.block_on(async {
            use mysql_async::prelude::Queryable;
            let Ok(mut c) =
                mysql_async::Conn::from_url(format!("mysql://root@127.0.0.1:3306/{name}")).await
            else {
                return 0;
            };
            let r: Option<i64> = c
                .exec_first(
                    "SELECT batch FROM motif_progress WHERE sink = ?",
                    (key.as_str(),),
                )
                .await
                .ok()
                .flatten();
            let _ = c.disconnect().await;
            r.unwrap_or(0)
        }),
    }
}

fn cut_connection(db: Db, test: &str) {
    if !db.available(test) {
        return;
    }
    let name = format!("motif_cut_{}", std::process::id());
    db.create(&name);
    let dir = scratch(&format!("cut-{db:?}"));
    let input = events(&dir, 20_000, 9);
    let proxy = Proxy::start(db.addr());
    let target = db.url(&format!("127.0.0.1:{}", proxy.port), &name, "cut");
    let agg = agg_decl(Win::Tumbling(60_000), "update", "every 5 records");
    let pat = dir.join("cut.motif");
    std::fs::write(&pat, format!("{PATTERN}\n{agg}")).unwrap();
    let m = dir.join("cut.matches");
    let mut child = motif()
        .arg("run")
        .arg(&pat)
        .arg("-i")
        .arg(&input)
        .args(["-w", "1", "-q", "-o"])
        .arg(&m)
        .arg("--aggregate-output")
        .arg(format!("a={target}"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Cut once some batches are in, for a second, while the run goes on.
    let started = Instant::now();
    while progress(db, &name, "cut") < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress in a minute"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the cut"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.cut();
    let at_cut = progress(db, &name, "cut");
    std::thread::sleep(Duration::from_millis(1_000));
    if child.try_wait().unwrap().is_some() {
        let o = child.wait_with_output().unwrap();
        panic!(
            "the run did not wait for the database ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let during = progress(db, &name, "cut");
    proxy.restore();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        during <= at_cut + 1,
        "batches went in while the connection was cut"
    );
    let want = reference(&matches_of(&m), Win::Tumbling(60_000), false);
    assert_same(
        &db.table(&name, "cut", true),
        &want,
        &format!("{db:?} after a cut"),
    );
    assert!(
        progress(db, &name, "cut") > during,
        "nothing was written after the cut"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_connection_cut_mid_run_loses_nothing() {
    cut_connection(
        Db::Postgres,
        "postgres_connection_cut_mid_run_loses_nothing",
    );
}

#[test]
fn mysql_connection_cut_mid_run_loses_nothing() {
    cut_connection(Db::Mysql, "mysql_connection_cut_mid_run_loses_nothing");
}

fn newest_checkpoint(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| {
                let n = e.ok()?.file_name().into_string().ok()?;
                n.strip_prefix("checkpoint-")?
                    .strip_suffix(".motifckp")?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn killed_and_restarted(db: Db, test: &str, trigger: &str) {
    if !db.available(test) {
        return;
    }
    let name = format!("motif_kill_{}_{}", trigger.len(), std::process::id());
    db.create(&name);
    let dir = scratch(&format!("kill-{db:?}-{}", trigger.len()));
    let n = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    let input = events(&dir, n, 13);
    let target = db.url(db.addr(), &name, "k");
    let agg = agg_decl(Win::Sliding(90_000, 30_000), "update", trigger);
    let pat = dir.join("k.motif");
    std::fs::write(&pat, format!("{PATTERN}\n{agg}")).unwrap();
    let ck = dir.join("ck");
    let m = dir.join("k.matches");
    let args = |child: bool| {
        let mut c = motif();
        c.arg("run")
            .arg(&pat)
            .arg("-i")
            .arg(&input)
            .args(["-w", "2", "--ordered", "-q", "-o"])
            .arg(&m)
            .arg("--aggregate-output")
            .arg(format!("a={target}"))
            .arg("--checkpoint")
            .arg(&ck)
            .args(["--checkpoint-records", "1500"]);
        if child {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        }
        c
    };
    let mut kills = 0;
    for round in 0..8u64 {
        let before = newest_checkpoint(&ck);
        let mut child = args(true).spawn().unwrap();
        let t = Instant::now();
        while newest_checkpoint(&ck) == before && child.try_wait().unwrap().is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no checkpoint in a minute"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(5 + 13 * round % 40));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 2, "only {kills} kills before the input was done");
    let o = args(false).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The reference: the matches of an uninterrupted run (the match file after the
    // restarts is the same, as the crash test shows).
    let want = reference(&matches_of(&m), Win::Sliding(90_000, 30_000), false);
    assert_same(
        &db.table(&name, "k", true),
        &want,
        &format!("{db:?} after {kills} kills"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_killed_and_restarted_loses_and_duplicates_nothing() {
    killed_and_restarted(
        Db::Postgres,
        "postgres_killed_and_restarted",
        "every 7 records",
    );
}

/// With a processing-time trigger the batches' cuts are logged before they are written, so
/// the batches a restart replays are the ones the table already has.
#[test]
fn postgres_killed_and_restarted_with_a_processing_time_trigger_loses_nothing() {
    killed_and_restarted(
        Db::Postgres,
        "postgres_killed_and_restarted_timed",
        "every 3ms",
    );
}

#[test]
fn mysql_killed_and_restarted_loses_and_duplicates_nothing() {
    killed_and_restarted(Db::Mysql, "mysql_killed_and_restarted", "every 7 records");
}

/// Runs SQL on the test server (PostgreSQL: database `test`; MySQL: database `db`).
fn exec(db: Db, name: &str, sql: &str) {
    let rt = rt();
    match db {
        Db::Postgres => rt.block_on(async {
            let c = pg_client().await;
            c.batch_execute(sql).await.unwrap();
        }),
        Db::Mysql => rt.block_on(async {
            use mysql_async::prelude::Queryable;
            let mut c = my_conn(name).await;
            c.query_drop(sql).await.unwrap();
            c.disconnect().await.unwrap();
        }),
    }
}

fn refused_rows(db: Db, test: &str) {
    if !db.available(test) {
        return;
    }
    let name = format!("motif_refuse_{}", std::process::id());
    db.create(&name);
    let dir = scratch(&format!("refuse-{db:?}"));
    let input = events(&dir, 2_000, 17);
    // A table made by hand, with a rule the database enforces: no more than 3 per row.
    let (table, double) = match db {
        Db::Postgres => (format!("{name}.r"), "DOUBLE PRECISION"),
        Db::Mysql => ("r".to_string(), "DOUBLE"),
    };
    let key = match db {
        Db::Postgres => "TEXT",
        Db::Mysql => "CHAR(32)",
    };
    let make_tables = || {
        exec(
            db,
            &name,
            &format!(
                "CREATE TABLE {table} (row_key {key} PRIMARY KEY, window_start BIGINT, window_end BIGINT, \
                 site TEXT, n BIGINT CHECK (n <= 3), total {double}, lo BIGINT, hi BIGINT, mean {double}, \
                 coldest BIGINT, sensors BIGINT, batch_id BIGINT NOT NULL)"
            ),
        );
        if db == Db::Postgres {
            exec(
                db,
                &name,
                &format!(
                    "CREATE TABLE {name}.motif_progress (sink TEXT PRIMARY KEY, batch BIGINT NOT NULL)"
                ),
            );
        } else {
            exec(
                db,
                &name,
                "CREATE TABLE motif_progress (sink VARCHAR(255) PRIMARY KEY, batch BIGINT NOT NULL)",
            );
        }
    };
    make_tables();
    let target = db.url(db.addr(), &name, "r").replace("&create=true", "");
    let agg = agg_decl(Win::Tumbling(60_000), "append", "every 50 records");
    let pat = dir.join("r.motif");
    std::fs::write(&pat, format!("{PATTERN}\n{agg}")).unwrap();
    let m = dir.join("r.matches");
    let rejects = dir.join("r.rejects");
    let o = motif()
        .arg("run")
        .arg(&pat)
        .arg("-i")
        .arg(&input)
        .args(["-w", "1", "-q", "-o"])
        .arg(&m)
        .arg("--rejects-output")
        .arg(&rejects)
        .arg("--aggregate-output")
        .arg(format!("a={target}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = reference(&matches_of(&m), Win::Tumbling(60_000), false);
    let (ok, over): (Table, Table) = want.into_iter().partition(|(_, a)| a.count <= 3);
    assert!(
        !over.is_empty() && !ok.is_empty(),
        "the input gives rows on both sides"
    );
    assert_same(
        &db.table(&name, "r", true),
        &ok,
        &format!("{db:?}: the rows the table took"),
    );
    let refused: Vec<J> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        refused.len(),
        over.len(),
        "every refused row is reported once"
    );
    for r in &refused {
        assert_eq!(r["aggregate"], "a");
        let reason = r["reason"].as_str().unwrap().to_lowercase();
        assert!(
            reason.contains("check") || reason.contains("constraint"),
            "{reason}"
        );
    }
    // With --on-db-error stop the run stops at the first one, naming it.
    db.create(&name);
    make_tables();
    let o = motif()
        .arg("run")
        .arg(&pat)
        .arg("-i")
        .arg(&input)
        .args(["-w", "1", "-q", "-o", "/dev/null", "--on-db-error", "stop"])
        .arg("--aggregate-output")
        .arg(format!("a={target}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("refused"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_reports_the_rows_it_refuses_with_its_reason() {
    refused_rows(Db::Postgres, "postgres_reports_the_rows_it_refuses");
}

#[test]
fn mysql_reports_the_rows_it_refuses_with_its_reason() {
    refused_rows(Db::Mysql, "mysql_reports_the_rows_it_refuses");
}

/// The `match_json` column of a raw match table, sorted.
fn match_json(db: Db, name: &str, table: &str) -> Vec<String> {
    let rt = rt();
    let mut v: Vec<String> = match db {
        Db::Postgres => rt.block_on(async {
            let c = pg_client().await;
            c.query(&format!("SELECT match_json FROM {name}.{table}"), &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
        }),
        Db::Mysql => rt.block_on(async {
            use mysql_async::prelude::Queryable;
            let mut c = my_conn(name).await;
            let v: Vec<String> = c
                .query(format!("SELECT match_json FROM {table}"))
                .await
                .unwrap();
            c.disconnect().await.unwrap();
            v
        }),
    };
    v.sort();
    v
}

fn raw_matches(db: Db, test: &str) {
    if !db.available(test) {
        return;
    }
    let name = format!("motif_raw_{}", std::process::id());
    db.create(&name);
    let dir = scratch(&format!("raw-{db:?}"));
    // Long enough that several kills land before the end, in an optimised build too.
    let n = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    let input = events(&dir, n, 29);
    let pat = dir.join("raw.motif");
    std::fs::write(&pat, PATTERN).unwrap();
    let run = |target: &str, extra: &[&str]| {
        let mut c = motif();
        c.arg("run")
            .arg(&pat)
            .arg("-i")
            .arg(&input)
            .args(["-w", "2", "-q", "--batch-records", "700", "-o", target])
            .args(extra);
        c
    };
    let file = dir.join("raw.jsonl");
    let o = run(&file.display().to_string(), &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut want: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    want.sort();
    assert!(want.len() > 500, "only {} matches", want.len());

    let target = db.url(db.addr(), &name, "m");
    let o = run(&target, &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        match_json(db, &name, "m") == want,
        "{db:?}: the table's matches"
    );
    // Again: nothing is written twice.
    let o = run(&target, &[]).output().unwrap();
    assert!(o.status.success());
    assert!(
        match_json(db, &name, "m") == want,
        "{db:?}: a second run changed the table"
    );

    // Killed and restarted from checkpoints (taken by time, so their cuts are logged).
    let target = db.url(db.addr(), &name, "k");
    let ck = dir.join("ck");
    let mut kills = 0;
    for round in 0..6u64 {
        let before = newest_checkpoint(&ck);
        let mut child = run(
            &target,
            &[
                "--checkpoint",
                &ck.display().to_string(),
                "--checkpoint-interval",
                "5ms",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let t = Instant::now();
        while newest_checkpoint(&ck) <= before + 1 && child.try_wait().unwrap().is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no checkpoint in a minute"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(3 + 7 * round % 20));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 2, "only {kills} kills before the input was done");
    let o = run(
        &target,
        &[
            "--checkpoint",
            &ck.display().to_string(),
            "--checkpoint-interval",
            "5ms",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = match_json(db, &name, "k");
    assert!(
        got == want,
        "{db:?} after {kills} kills: {} matches in the table, {} in the file",
        got.len(),
        want.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_raw_matches_equal_the_match_file_once_each() {
    raw_matches(Db::Postgres, "postgres_raw_matches");
}

#[test]
fn mysql_raw_matches_equal_the_match_file_once_each() {
    raw_matches(Db::Mysql, "mysql_raw_matches");
}
