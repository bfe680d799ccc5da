//! The PostgreSQL sink of aggregation rows (see [`super::table`]), on tokio-postgres.

use std::fmt::Write;

use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

use futures_util::SinkExt;

use super::table::{
    backoff, push_copy_field, report_of, stop_at, BatchReport, DbError, DbErrorPolicy, Dialect,
    Layout, RefusedRow, SqlType, SqlValue, TableSink,
};
use super::url::DbUrl;
use crate::aggregate::{AggregateDecl, Batch, OutputMode};

/// Aggregation rows into a PostgreSQL table.
pub struct PostgresSink {
    rt: Runtime,
    config: Config,
    client: Option<Client>,
    url: DbUrl,
    target: String,
    /// The progress table's key for this sink: `aggregate:table`.
    name: String,
    layout: Layout,
    /// The table exists with the layout's columns.
    ready: bool,
    committed: Option<u64>,
    policy: DbErrorPolicy,
}

fn quote(id: &str) -> String {
    Dialect::Postgres.quote(id)
}

/// Whether an error is the connection's (retry) rather than the statement's.
fn transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(c) => {
            let c = c.code();
            c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01"
        }
    }
}

fn why(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => e.to_string(),
    }
}

impl PostgresSink {
    /// A sink for aggregate `agg`'s rows (`visible` select columns) at `url`; connects and
    /// reads the last batch committed.
    pub fn open(
        url: DbUrl,
        agg: &AggregateDecl,
        visible: usize,
        policy: DbErrorPolicy,
    ) -> Result<PostgresSink, DbError> {
        let layout = Layout::of(agg, visible)?;
        Self::open_layout(url, &agg.name, layout, policy)
    }

    /// A sink for rows of `layout` at `url`; `name` keys its progress (with the table).
    pub fn open_layout(
        url: DbUrl,
        name: &str,
        layout: Layout,
        policy: DbErrorPolicy,
    ) -> Result<PostgresSink, DbError> {
        let target = format!("{} table {}", url.shown, url.table);
        let config: Config = url.client.parse().map_err(|e| DbError::Url {
            url: url.shown.clone(),
            why: format!("{e}"),
        })?;
        let rt = super::table::runtime(&target)?;
        let mut sink = PostgresSink {
            rt,
            config,
            client: None,
            layout,
            name: format!("{name}:{}", url.table),
            url,
            target,
            ready: false,
            committed: None,
            policy,
        };
        sink.read_progress()?;
        Ok(sink)
    }

    fn table(&self) -> String {
        match &self.url.schema {
            Some(s) => format!("{}.{}", quote(s), quote(&self.url.table)),
            None => quote(&self.url.table),
        }
    }

    fn progress_table(&self) -> String {
        match &self.url.schema {
            Some(s) => format!("{}.motif_progress", quote(s)),
            None => "motif_progress".to_string(),
        }
    }

    /// Runs `f` until it succeeds or fails for a reason other than the connection, with
    /// back-off between attempts (reconnecting each time).
    fn with_retries<T>(
        &mut self,
        mut f: impl FnMut(&Runtime, &mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DbError> {
        let mut attempt = 0u32;
        loop {
            let r = match self.connect() {
                Ok(()) => match self.client.as_mut() {
                    Some(c) => f(&self.rt, c),
                    None => continue,
                },
                Err(e) => Err(e),
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) => {
                    self.client = None;
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

    fn connect(&mut self) -> Result<(), tokio_postgres::Error> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        let (client, connection) = self.rt.block_on(self.config.connect(NoTls))?;
        self.rt.spawn(async move {
            // Ends when the connection does; its error shows in the next statement.
            let _ = connection.await;
        });
        self.client = Some(client);
        Ok(())
    }

    fn read_progress(&mut self) -> Result<(), DbError> {
        let progress = self.progress_table();
        let mut ddl = String::new();
        if self.url.create {
            if let Some(s) = &self.url.schema {
                let _ = write!(ddl, "CREATE SCHEMA IF NOT EXISTS {};", quote(s));
            }
            let _ = write!(
                ddl,
                "CREATE TABLE IF NOT EXISTS {progress} (sink TEXT PRIMARY KEY, batch BIGINT NOT NULL)"
            );
        }
        let name = self.name.clone();
        let committed = self.with_retries(|rt, c| {
            rt.block_on(async {
                if !ddl.is_empty() {
                    c.batch_execute(&ddl).await?;
                }
                let row = c
                    .query_opt(
                        &format!("SELECT batch FROM {progress} WHERE sink = $1"),
                        &[&name],
                    )
                    .await?;
                Ok(row.map(|r| r.get::<_, i64>(0)))
            })
        })?;
        self.committed = committed.and_then(|b| u64::try_from(b).ok());
        Ok(())
    }

    /// Creates the table (with `create`), or checks it has the columns.
    fn prepare_table(&mut self) -> Result<(), DbError> {
        let table = self.table();
        let ddl = Dialect::Postgres.create_table(&table, &self.layout);
        let cols = self.layout.columns.clone();
        let schema = self
            .url
            .schema
            .clone()
            .unwrap_or_else(|| "public".to_string());
        let name = self.url.table.clone();
        let create = self.url.create;
        let missing = self.with_retries(|rt, c| {
            rt.block_on(async {
                if create {
                    c.batch_execute(&ddl).await?;
                }
                let rows = c
                    .query(
                        "SELECT column_name FROM information_schema.columns \
                         WHERE table_schema = $1 AND table_name = $2",
                        &[&schema, &name],
                    )
                    .await?;
                let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                Ok(["row_key".to_string(), "batch_id".to_string()]
                    .into_iter()
                    .chain(cols.iter().cloned())
                    .find(|n| !have.contains(n)))
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

/// One parameter of a typed column.
fn param(v: &SqlValue, t: SqlType) -> Box<dyn ToSql + Sync + Send> {
    match (v, t) {
        (SqlValue::Int(i), _) => Box::new(*i),
        (SqlValue::Double(f), _) => Box::new(*f),
        (SqlValue::Text(s), _) => Box::new(s.clone()),
        (SqlValue::Bool(b), _) => Box::new(*b),
        (SqlValue::Null, SqlType::BigInt) => Box::new(None::<i64>),
        (SqlValue::Null, SqlType::Double) => Box::new(None::<f64>),
        (SqlValue::Null, SqlType::Bool) => Box::new(None::<bool>),
        (SqlValue::Null, SqlType::Text) => Box::new(None::<String>),
    }
}

impl TableSink for PostgresSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<BatchReport, DbError> {
        if self.committed.is_some_and(|c| batch.id <= c) {
            return Ok(BatchReport::skipped());
        }
        let mut prepared = self.layout.prepare(batch);
        prepared.in_key_order();
        if !self.ready {
            self.prepare_table()?;
        }
        let types: Vec<SqlType> = (0..self.layout.columns.len())
            .map(|i| self.layout.type_of(i))
            .collect();
        let id = i64::try_from(batch.id).unwrap_or(i64::MAX);
        if let (Some(r), DbErrorPolicy::Stop) = (prepared.refused.first(), self.policy) {
            return Err(stop_at(&self.target, batch.id, r));
        }
        let report = BatchReport {
            refused: prepared.refused,
            ..BatchReport::default()
        };
        let retracted: Vec<String> = prepared.retracted.into_iter().map(|(k, _)| k).collect();
        // The rows in COPY's text format (the fast way in); as statement parameters only
        // should COPY fail (to find the rows the database refuses).
        let mut copy = String::new();
        let suffix = format!("\t{id}\n");
        for (key, values) in &prepared.rows {
            copy.push_str(key);
            for v in values {
                copy.push('\t');
                push_copy_field(&mut copy, v);
            }
            copy.push_str(&suffix);
        }
        let copy = bytes::Bytes::from(copy);
        let rows = prepared.rows;
        let row_params = |(key, values): &(String, Vec<SqlValue>)| {
            let mut p: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(key.clone())];
            p.extend(values.iter().zip(&types).map(|(v, t)| param(v, *t)));
            p.push(Box::new(id));
            p
        };
        let ncols = self.layout.columns.len() + 2;
        let per_stmt = Dialect::rows_per_statement(&self.layout);
        let table = self.table();
        let progress = self.progress_table();
        let name = self.name.clone();
        let complete = batch.mode == OutputMode::Complete;
        let layout = self.layout.clone();
        let single = Dialect::Postgres.insert(&table, &self.layout, 1);
        let stage_ddl = format!(
            "CREATE TEMP TABLE IF NOT EXISTS motif_stage (LIKE {table}) ON COMMIT DELETE ROWS"
        );
        let copy_sql = format!(
            "COPY motif_stage ({}) FROM STDIN",
            Dialect::Postgres.columns(&self.layout)
        );
        let upsert_sql = Dialect::Postgres.upsert_from(&table, &self.layout, "motif_stage");
        let copy_direct = format!(
            "COPY {table} ({}) FROM STDIN",
            Dialect::Postgres.columns(&self.layout)
        );
        // Append mode writes each window's rows once: they are new rows, unless the table
        // holds an earlier run's (then the direct COPY fails and the upsert takes them).
        let append = batch.mode == OutputMode::Append && retracted.is_empty();
        let policy = self.policy;
        let mut refused_db: Vec<RefusedRow> = Vec::new();
        let mut attempts = 0u32;
        let outcome = self.with_retries(|rt, client| {
            attempts += 1;
            refused_db.clear();
            rt.block_on(async {
                let mut tx = client.transaction().await?;
                let done = tx
                    .query_opt(
                        &format!("SELECT batch FROM {progress} WHERE sink = $1 FOR UPDATE"),
                        &[&name],
                    )
                    .await?
                    .map(|r| r.get::<_, i64>(0));
                if done.is_some_and(|d| d >= id) {
                    tx.rollback().await?;
                    return Ok(true);
                }
                if complete {
                    tx.execute(&format!("DELETE FROM {table}"), &[]).await?;
                }
                if !retracted.is_empty() {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE row_key = ANY($1)"),
                        &[&retracted],
                    )
                    .await?;
                }
                // All rows by COPY: straight into the table in append mode (new windows),
                // else into the staging table and one upsert from it; if the database refuses
                // that, statement by statement to find the rows it refuses.
                let mut copied = false;
                for direct in [append, false] {
                    if copied || (direct && !append) {
                        continue;
                    }
                    let sp = tx.savepoint("copy").await?;
                    let r = async {
                        if !direct {
                            sp.batch_execute(&stage_ddl).await?;
                        }
                        let sql = if direct { &copy_direct } else { &copy_sql };
                        let sink = sp.copy_in(sql.as_str()).await?;
                        let mut sink = std::pin::pin!(sink);
                        sink.send(copy.clone()).await?;
                        sink.as_mut().finish().await?;
                        if !direct {
                            // The staging table empties itself at commit.
                            sp.execute(upsert_sql.as_str(), &[]).await?;
                        }
                        Ok::<(), tokio_postgres::Error>(())
                    }
                    .await;
                    match r {
                        Ok(()) => {
                            sp.commit().await?;
                            copied = true;
                        }
                        Err(e) if transient(&e) => return Err(e),
                        Err(_) => sp.rollback().await?,
                    }
                }
                // COPY refused the batch: statement by statement.
                let good: Vec<Vec<Box<dyn ToSql + Sync + Send>>> = if copied {
                    Vec::new()
                } else {
                    rows.iter().map(row_params).collect()
                };
                let chunks: Vec<(String, Vec<&(dyn ToSql + Sync)>)> = good
                    .chunks(per_stmt)
                    .map(|chunk| {
                        let sql = Dialect::Postgres.insert(&table, &layout, chunk.len());
                        let params: Vec<&(dyn ToSql + Sync)> = chunk
                            .iter()
                            .flat_map(|p| p.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)))
                            .collect();
                        (sql, params)
                    })
                    .collect();
                for (sql, params) in &chunks {
                    let sp = tx.savepoint("chunk").await?;
                    match sp.execute(sql.as_str(), params).await {
                        Ok(_) => sp.commit().await?,
                        Err(e) if transient(&e) => return Err(e),
                        Err(e) => {
                            sp.rollback().await?;
                            // Row by row, to find the rows the database refuses.
                            let n = params.len() / ncols;
                            for r in 0..n {
                                let row = &params[r * ncols..(r + 1) * ncols];
                                let one = tx.savepoint("row").await?;
                                match one.execute(single.as_str(), row).await {
                                    Ok(_) => one.commit().await?,
                                    Err(e2) if transient(&e2) => return Err(e2),
                                    Err(e2) => {
                                        one.rollback().await?;
                                        refused_db.push(RefusedRow {
                                            row: format!("{:?}", &row[..row.len() - 1]),
                                            reason: why(&e2),
                                        });
                                        if policy == DbErrorPolicy::Stop {
                                            let _ = e;
                                            return Ok(false);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                tx.execute(
                    &format!(
                        "INSERT INTO {progress} (sink, batch) VALUES ($1, $2) \
                         ON CONFLICT (sink) DO UPDATE SET batch = EXCLUDED.batch"
                    ),
                    &[&name, &id],
                )
                .await?;
                tx.commit().await?;
                Ok(false)
            })
        })?;
        if let (Some(r), DbErrorPolicy::Stop) = (refused_db.first(), policy) {
            return Err(stop_at(&self.target, batch.id, r));
        }
        let report = report_of(report, attempts, outcome, rows.len(), refused_db);
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
