//! The MySQL/MariaDB sink of aggregation rows (see [`super::table`]), on mysql_async.

use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, TxOpts, Value};
use tokio::runtime::Runtime;

use super::table::{
    backoff, push_copy_field, report_of, stop_at, BatchReport, DbError, DbErrorPolicy, Dialect,
    Layout, RefusedRow, SqlValue, TableSink,
};
use super::url::DbUrl;
use crate::aggregate::{AggregateDecl, Batch, OutputMode};

/// Aggregation rows into a MySQL or MariaDB table.
pub struct MysqlSink {
    rt: Runtime,
    opts: Opts,
    conn: Option<Conn>,
    url: DbUrl,
    target: String,
    /// The progress table's key for this sink: `aggregate:table`.
    name: String,
    layout: Layout,
    ready: bool,
    committed: Option<u64>,
    policy: DbErrorPolicy,
    /// Batches go in by `LOAD DATA LOCAL INFILE` (until the server refuses it: then by
    /// multi-row `INSERT`s).
    bulk: bool,
}

/// Server errors saying `LOAD DATA LOCAL` is off (on the server, or for this client).
const LOCAL_INFILE_OFF: [u16; 2] = [1148, 3948];

/// Appends one field in `LOAD DATA`'s default format (tab-separated, `\N` for null,
/// backslash escapes): PostgreSQL's `COPY` text format but for booleans, which are numbers.
fn push_load_field(out: &mut String, v: &SqlValue) {
    match v {
        SqlValue::Bool(b) => out.push(if *b { '1' } else { '0' }),
        v => push_copy_field(out, v),
    }
}

/// Whether an error is the connection's (retry) rather than the statement's: lost
/// connections, lock wait timeouts and deadlocks.
fn transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Server(s) => matches!(s.code, 1205 | 1213 | 2006 | 2013 | 1927),
        _ => true,
    }
}

fn why(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} (error {})", s.message, s.code),
        e => e.to_string(),
    }
}

fn value(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::NULL,
        SqlValue::Int(i) => Value::Int(*i),
        SqlValue::Double(f) => Value::Double(*f),
        SqlValue::Text(s) => Value::Bytes(s.as_bytes().to_vec()),
        SqlValue::Bool(b) => Value::Int(i64::from(*b)),
    }
}

impl MysqlSink {
    /// A sink for aggregate `agg`'s rows (`visible` select columns) at `url`; connects and
    /// reads the last batch committed.
    pub fn open(
        url: DbUrl,
        agg: &AggregateDecl,
        visible: usize,
        policy: DbErrorPolicy,
    ) -> Result<MysqlSink, DbError> {
        let layout = Layout::of(agg, visible)?;
        Self::open_layout(url, &agg.name, layout, policy)
    }

    /// A sink for rows of `layout` at `url`; `name` keys its progress (with the table).
    pub fn open_layout(
        url: DbUrl,
        name: &str,
        layout: Layout,
        policy: DbErrorPolicy,
    ) -> Result<MysqlSink, DbError> {
        let target = format!("{} table {}", url.shown, url.table);
        let opts = Opts::from_url(&url.client).map_err(|e| DbError::Url {
            url: url.shown.clone(),
            why: e.to_string(),
        })?;
        let rt = super::table::runtime(&target)?;
        let mut sink = MysqlSink {
            rt,
            opts,
            conn: None,
            layout,
            name: format!("{name}:{}", url.table),
            url,
            target,
            ready: false,
            committed: None,
            policy,
            bulk: true,
        };
        let create = sink.url.create;
        let name = sink.name.clone();
        let committed = sink.with_retries(|rt, c| {
            rt.block_on(async {
                if create {
                    c.query_drop(
                        "CREATE TABLE IF NOT EXISTS motif_progress \
                         (sink VARCHAR(255) PRIMARY KEY, batch BIGINT NOT NULL) ENGINE=InnoDB",
                    )
                    .await?;
                }
                c.exec_first::<i64, _, _>(
                    "SELECT batch FROM motif_progress WHERE sink = ?",
                    (name.as_str(),),
                )
                .await
            })
        })?;
        sink.committed = committed.and_then(|b| u64::try_from(b).ok());
        Ok(sink)
    }

    fn table(&self) -> String {
        Dialect::Mysql.quote(&self.url.table)
    }

    /// Runs `f` until it succeeds or fails for a reason other than the connection, with
    /// back-off between attempts (reconnecting each time).
    fn with_retries<T>(
        &mut self,
        mut f: impl FnMut(&Runtime, &mut Conn) -> Result<T, mysql_async::Error>,
    ) -> Result<T, DbError> {
        let mut attempt = 0u32;
        loop {
            if self.conn.is_none() {
                match self.rt.block_on(Conn::new(self.opts.clone())) {
                    Ok(c) => self.conn = Some(c),
                    Err(e) => {
                        if !transient(&e) {
                            return Err(DbError::Refused {
                                target: self.target.clone(),
                                what: "the connection".to_string(),
                                why: why(&e),
                            });
                        }
                        if self.url.retries.is_some_and(|n| attempt >= n) {
                            return Err(DbError::Unreachable {
                                target: self.target.clone(),
                                why: why(&e),
                            });
                        }
                        std::thread::sleep(backoff(attempt));
                        attempt = attempt.saturating_add(1);
                        continue;
                    }
                }
            }
            let Some(c) = self.conn.as_mut() else {
                continue;
            };
            match f(&self.rt, c) {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) => {
                    self.conn = None;
                    if self.url.retries.is_some_and(|n| attempt >= n) {
                        return Err(DbError::Unreachable {
                            target: self.target.clone(),
                            why: why(&e),
                        });
                    }
                    std::thread::sleep(backoff(attempt));
                    attempt = attempt.saturating_add(1);
                }
                Err(e) => {
                    return Err(DbError::Refused {
                        target: self.target.clone(),
                        what: "a statement".to_string(),
                        why: why(&e),
                    })
                }
            }
        }
    }

    /// Creates the table (with `create`), or checks it has the columns.
    fn prepare_table(&mut self) -> Result<(), DbError> {
        let ddl = Dialect::Mysql.create_table(&self.table(), &self.layout);
        let create = self.url.create;
        let name = self.url.table.clone();
        let cols = self.layout.columns.clone();
        let missing = self.with_retries(|rt, c| {
            rt.block_on(async {
                if create {
                    c.query_drop(&ddl).await?;
                }
                let have: Vec<String> = c
                    .exec(
                        "SELECT column_name FROM information_schema.columns \
                         WHERE table_schema = DATABASE() AND table_name = ?",
                        (name.as_str(),),
                    )
                    .await?;
                Ok(["row_key".to_string(), "batch_id".to_string()]
                    .into_iter()
                    .chain(cols.iter().cloned())
                    .find(|n| !have.iter().any(|h| h.eq_ignore_ascii_case(n))))
            })
        })?;
        if let Some(column) = missing {
            return Err(DbError::NoColumn {
                target: self.target.clone(),
                table: self.url.table.clone(),
                column,
            });
        }
        self.ready = true;
        Ok(())
    }
}

impl TableSink for MysqlSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<BatchReport, DbError> {
        if self.committed.is_some_and(|c| batch.id <= c) {
            return Ok(BatchReport::skipped());
        }
        let mut prepared = self.layout.prepare(batch);
        prepared.in_key_order();
        if !self.ready {
            self.prepare_table()?;
        }
        let id = i64::try_from(batch.id).unwrap_or(i64::MAX);
        if let (Some(r), DbErrorPolicy::Stop) = (prepared.refused.first(), self.policy) {
            return Err(stop_at(&self.target, batch.id, r));
        }
        let report = BatchReport {
            refused: prepared.refused,
            ..BatchReport::default()
        };
        let retracted: Vec<String> = prepared.retracted.into_iter().map(|(k, _)| k).collect();
        let prepared_rows = prepared.rows;
        let table = self.table();
        let per_stmt = Dialect::rows_per_statement(&self.layout);
        let layout = self.layout.clone();
        // The multi-row `INSERT`s' statements and parameters, built only when the batch
        // does not go in by `LOAD DATA` (refused, or off on this server).
        let statements_for = |rows: &[(String, Vec<SqlValue>)]| -> Vec<(String, Vec<Value>)> {
            rows.chunks(per_stmt)
                .map(|c| {
                    let params = c
                        .iter()
                        .flat_map(|(key, values)| {
                            std::iter::once(Value::Bytes(key.clone().into_bytes()))
                                .chain(values.iter().map(value))
                                .chain(std::iter::once(Value::Int(id)))
                        })
                        .collect();
                    (Dialect::Mysql.insert(&table, &layout, c.len()), params)
                })
                .collect()
        };
        let single = Dialect::Mysql.insert(&table, &self.layout, 1);
        let width = self.layout.columns.len() + 2;
        // The rows as `LOAD DATA LOCAL INFILE … REPLACE` takes them: one statement that
        // inserts new rows and replaces existing ones (the upsert, at bulk-load speed).
        let load = (self.bulk && !prepared_rows.is_empty()).then(|| {
            let mut data = String::with_capacity(prepared_rows.len() * 64);
            for (key, values) in &prepared_rows {
                data.push_str(key);
                for v in values {
                    data.push('\t');
                    push_load_field(&mut data, v);
                }
                data.push_str(&format!("\t{id}\n"));
            }
            bytes::Bytes::from(data)
        });
        let load_sql = format!(
            "LOAD DATA LOCAL INFILE 'motif-batch' REPLACE INTO TABLE {table} CHARACTER SET utf8mb4 ({})",
            Dialect::Mysql.columns(&self.layout)
        );
        let mut bulk_off = false;
        let name = self.name.clone();
        let complete = batch.mode == OutputMode::Complete;
        let policy = self.policy;
        let mut refused_db: Vec<RefusedRow> = Vec::new();
        let mut attempts = 0u32;
        let skipped = self.with_retries(|rt, conn| {
            attempts += 1;
            refused_db.clear();
            rt.block_on(async {
                if let Some(data) = load.clone() {
                    // Read by the next `LOAD DATA LOCAL` on this connection.
                    conn.set_infile_handler(async move {
                        Ok(futures_util::stream::once(async move { Ok(data) }).boxed())
                    });
                }
                let mut tx = conn.start_transaction(TxOpts::default()).await?;
                let done: Option<i64> = tx
                    .exec_first(
                        "SELECT batch FROM motif_progress WHERE sink = ? FOR UPDATE",
                        (name.as_str(),),
                    )
                    .await?;
                if done.is_some_and(|d| d >= id) {
                    tx.rollback().await?;
                    return Ok(true);
                }
                if complete {
                    tx.query_drop(format!("DELETE FROM {table}")).await?;
                }
                for key in &retracted {
                    tx.exec_drop(
                        format!("DELETE FROM {table} WHERE row_key = ?"),
                        (key.as_str(),),
                    )
                    .await?;
                }
                let mut loaded = false;
                if load.is_some() {
                    tx.query_drop("SAVEPOINT motif_load").await?;
                    match tx.query_drop(load_sql.as_str()).await {
                        // A value the table cannot hold is a warning, not an error, outside
                        // strict mode: then the statements below find and report it.
                        Ok(()) if tx.get_warnings() == 0 => loaded = true,
                        Ok(()) => {
                            tx.query_drop("ROLLBACK TO SAVEPOINT motif_load").await?;
                        }
                        Err(e) if transient(&e) => return Err(e),
                        Err(e) => {
                            if let mysql_async::Error::Server(s) = &e {
                                bulk_off |= LOCAL_INFILE_OFF.contains(&s.code);
                            }
                            tx.query_drop("ROLLBACK TO SAVEPOINT motif_load").await?;
                        }
                    }
                }
                let statements = if loaded {
                    Vec::new()
                } else {
                    statements_for(&prepared_rows)
                };
                for (sql, params) in &statements {
                    match tx.exec_drop(sql.as_str(), params.clone()).await {
                        Ok(()) => {}
                        Err(e) if transient(&e) => return Err(e),
                        Err(_) => {
                            // A failed statement leaves the transaction open: find the rows
                            // the database refuses one by one.
                            for row in params.chunks(width) {
                                match tx.exec_drop(single.as_str(), row.to_vec()).await {
                                    Ok(()) => {}
                                    Err(e2) if transient(&e2) => return Err(e2),
                                    Err(e2) => {
                                        refused_db.push(RefusedRow {
                                            row: format!("{:?}", &row[..row.len() - 1]),
                                            reason: why(&e2),
                                        });
                                        if policy == DbErrorPolicy::Stop {
                                            tx.rollback().await?;
                                            return Ok(false);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                tx.exec_drop(
                    "INSERT INTO motif_progress (sink, batch) VALUES (?, ?) \
                     ON DUPLICATE KEY UPDATE batch = VALUES(batch)",
                    (name.as_str(), id),
                )
                .await?;
                tx.commit().await?;
                Ok(false)
            })
        })?;
        if bulk_off {
            self.bulk = false;
        }
        if let (Some(r), DbErrorPolicy::Stop) = (refused_db.first(), policy) {
            return Err(stop_at(&self.target, batch.id, r));
        }
        let report = report_of(report, attempts, skipped, prepared_rows.len(), refused_db);
        self.committed = Some(batch.id);
        Ok(report)
    }

    fn committed(&self) -> Option<u64> {
        self.committed
    }

    fn target(&self) -> &str {
        &self.target
    }
}
