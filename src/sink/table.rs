//! Database sinks for aggregation rows: what PostgreSQL and MySQL/MariaDB have in common.
//!
//! A [`TableSink`] writes each batch of an aggregate in one transaction together with the
//! batch id in a progress table (`motif_progress`, one row per sink), so a batch at or below
//! the committed id — a batch replayed after a restart — is a no-op. Rows are keyed by
//! `row_key`, a 128-bit hash of the row's window and group values: `update` upserts by it,
//! `append` inserts (upserting, so nothing can be doubled), `complete` replaces the table's
//! rows. The table is created on request (`create=true`) with typed columns:
//! `row_key`, `window_start`, `window_end` (milliseconds, when the aggregate has a window),
//! the group columns and the aggregate columns (their SQL types from the first values seen:
//! `BIGINT`, `DOUBLE PRECISION`, `TEXT`, `BOOLEAN`), and `batch_id`.
//!
//! Connection problems (refused, reset, timed out) are retried with back-off and never
//! lose the batch: the pipeline waits, so the source pauses. A row the database refuses is
//! reported with the database's reason; the run skips it or stops, per
//! [`DbErrorPolicy`].

use std::fmt::{self, Write};
use std::time::Duration;

use crate::aggregate::{AggFunc, AggregateDecl, Batch, Cell, OutputMode};

/// Why a database sink failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The sink's URL is not one motif understands.
    #[error("{url}: {why}")]
    Url {
        /// The URL as given (without its password).
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// A table or column name that is not a plain identifier.
    #[error("`{0}` is not a valid SQL identifier (letters, digits and `_`, not starting with a digit, at most 63 characters)")]
    Identifier(String),
    /// The database is unreachable (after the retries allowed).
    #[error("{target}: cannot reach the database: {why}")]
    Unreachable {
        /// Where.
        target: String,
        /// The client's message.
        why: String,
    },
    /// The database refused a statement.
    #[error("{target}: the database refused {what}: {why}")]
    Refused {
        /// Where.
        target: String,
        /// What it was doing.
        what: String,
        /// The database's reason.
        why: String,
    },
    /// The table has not the columns the aggregate writes.
    #[error("{target}: table {table} lacks column {column} (create it with `create=true`, or drop the table)")]
    NoColumn {
        /// Where.
        target: String,
        /// The table.
        table: String,
        /// The missing column.
        column: String,
    },
}

/// What the run does with a row the database refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DbErrorPolicy {
    /// Report it (with the database's reason) and go on with the other rows.
    #[default]
    Skip,
    /// Stop the run.
    Stop,
}

/// A row the database refused, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRow {
    /// The row's values, in the table's column order, as JSON.
    pub row: String,
    /// The database's reason.
    pub reason: String,
}

/// What writing a batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    /// Rows written.
    pub written: u64,
    /// The batch was committed before (a replay): nothing was written.
    pub skipped: bool,
    /// Rows the database refused (with [`DbErrorPolicy::Skip`]).
    pub refused: Vec<RefusedRow>,
    /// Connection attempts that failed and were retried.
    pub retries: u32,
}

impl BatchReport {
    /// The report of a batch the sink held already (a replay): nothing written.
    pub fn skipped() -> BatchReport {
        BatchReport {
            skipped: true,
            ..BatchReport::default()
        }
    }
}

/// The current-thread tokio runtime a database sink runs its client on.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub fn runtime(target: &str) -> Result<tokio::runtime::Runtime, DbError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DbError::Unreachable {
            target: target.to_string(),
            why: e.to_string(),
        })
}

/// A sink of aggregation rows into a database table, idempotent per batch id.
pub trait TableSink: Send {
    /// Writes batch `batch` in one transaction with its id; a batch whose id is at or below
    /// the committed one is skipped.
    fn write_batch(&mut self, batch: &Batch) -> Result<BatchReport, DbError>;

    /// The last batch id committed (`None`: none yet).
    fn committed(&self) -> Option<u64>;

    /// Where it writes (URL without password, and table), for messages.
    fn target(&self) -> &str;
}

/// SQL column types motif writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// 64-bit integer.
    BigInt,
    /// 64-bit float.
    Double,
    /// Text.
    Text,
    /// Boolean.
    Bool,
}

impl SqlType {
    /// The type of a value (`null`: text).
    pub fn of(c: &Cell) -> SqlType {
        match c {
            Cell::Int(_) => SqlType::BigInt,
            Cell::Float(_) => SqlType::Double,
            Cell::Bool(_) => SqlType::Bool,
            Cell::Null | Cell::Str(_) | Cell::Json(_) => SqlType::Text,
        }
    }
}

/// A value converted for a column of type `t`, or why it does not fit.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `NULL`.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// Text.
    Text(String),
    /// A boolean.
    Bool(bool),
}

impl SqlValue {
    /// `c` as a value of column type `t`.
    pub fn convert(c: &Cell, t: SqlType) -> Result<SqlValue, String> {
        Ok(match (c, t) {
            (Cell::Null, _) => SqlValue::Null,
            (Cell::Float(f), _) if !f.is_finite() => SqlValue::Null,
            (Cell::Int(i), SqlType::BigInt) => SqlValue::Int(*i),
            (Cell::Float(f), SqlType::BigInt) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                SqlValue::Int(*f as i64)
            }
            (Cell::Int(i), SqlType::Double) => SqlValue::Double(*i as f64),
            (Cell::Float(f), SqlType::Double) => SqlValue::Double(*f),
            (Cell::Bool(b), SqlType::Bool) => SqlValue::Bool(*b),
            (Cell::Str(s), SqlType::Text) | (Cell::Json(s), SqlType::Text) => {
                SqlValue::Text(s.to_string())
            }
            (c, SqlType::Text) => {
                let mut s = String::new();
                c.write_json(&mut s);
                SqlValue::Text(s)
            }
            (c, t) => {
                let mut s = String::new();
                c.write_json(&mut s);
                return Err(format!("{s} does not fit a {t} column"));
            }
        })
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SqlType::BigInt => "BIGINT",
            SqlType::Double => "DOUBLE PRECISION",
            SqlType::Text => "TEXT",
            SqlType::Bool => "BOOLEAN",
        })
    }
}

/// Checks a name is a plain SQL identifier (so quoting it is always enough).
pub fn identifier(name: &str) -> Result<&str, DbError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(DbError::Identifier(name.to_string()))
    }
}

/// A table's columns as an aggregate writes them.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Column names after `row_key`, in order: window, group, aggregate columns.
    pub columns: Vec<String>,
    /// Their types, once known (from the declaration or the first values seen).
    pub types: Vec<Option<SqlType>>,
    /// Whether the rows have a window (the first two columns).
    pub windowed: bool,
    /// The output mode.
    pub mode: OutputMode,
    /// Number of `select` columns written.
    pub visible: usize,
}

impl Layout {
    /// The layout of aggregate `agg`'s rows (`visible` select columns).
    pub fn of(agg: &AggregateDecl, visible: usize) -> Result<Layout, DbError> {
        let mut columns = Vec::new();
        let mut types = Vec::new();
        let windowed = agg.window.is_some();
        if windowed {
            for c in ["window_start", "window_end"] {
                columns.push(c.to_string());
                types.push(Some(SqlType::BigInt));
            }
        }
        for g in &agg.group_by {
            columns.push(identifier(&g.name)?.to_string());
            types.push(match g.by {
                crate::aggregate::GroupBy::Pattern => Some(SqlType::Text),
                _ => None,
            });
        }
        for s in agg.select.iter().take(visible) {
            columns.push(identifier(&s.name)?.to_string());
            types.push(match s.func {
                AggFunc::Count | AggFunc::CountDistinct => Some(SqlType::BigInt),
                AggFunc::Avg | AggFunc::Sum => Some(SqlType::Double),
                _ => None,
            });
        }
        Ok(Layout {
            columns,
            types,
            windowed,
            mode: agg.mode,
            visible,
        })
    }

    /// The layout of a raw match table: `match_no` (the match's number in the run, its
    /// key), `pattern`, `key` (JSON), `start_ms`, `end_ms`, `timed_out`, `match_json` (the
    /// whole match as the JSON-lines output writes it, events included).
    pub fn matches() -> Layout {
        let cols = [
            ("match_no", SqlType::BigInt),
            ("pattern", SqlType::Text),
            ("key", SqlType::Text),
            ("start_ms", SqlType::BigInt),
            ("end_ms", SqlType::BigInt),
            ("timed_out", SqlType::Bool),
            ("match_json", SqlType::Text),
        ];
        Layout {
            columns: cols.iter().map(|(c, _)| c.to_string()).collect(),
            types: cols.iter().map(|(_, t)| Some(*t)).collect(),
            windowed: false,
            mode: OutputMode::Append,
            visible: cols.len() - 1,
        }
    }

    /// Fills in unknown column types from the first non-null values of `batch`; columns
    /// still unknown become text.
    pub fn settle(&mut self, batch: &Batch) {
        for row in &batch.rows {
            for (i, c) in row_cells(row).iter().enumerate() {
                if let Some(slot @ None) = self.types.get_mut(i) {
                    if !c.is_null() {
                        *slot = Some(SqlType::of(c));
                    }
                }
            }
        }
    }

    /// Whether every column's type is known.
    pub fn settled(&self) -> bool {
        self.types.iter().all(Option::is_some)
    }

    /// The type of column `i` (text if still unknown).
    pub fn type_of(&self, i: usize) -> SqlType {
        self.types
            .get(i)
            .copied()
            .flatten()
            .unwrap_or(SqlType::Text)
    }

    /// A row's key (its window and group).
    pub fn key_of(&self, row: &crate::aggregate::Row) -> String {
        let cells = row_cells(row);
        let n = if self.windowed { 2 } else { 0 } + row.group.len();
        row_key(&cells[..n.min(cells.len())])
    }

    /// A row's values converted to the columns' types: `row_key` first.
    pub fn values(&self, row: &crate::aggregate::Row) -> Result<(String, Vec<SqlValue>), String> {
        let cells = row_cells(row);
        let mut out = Vec::with_capacity(cells.len());
        for (i, c) in cells.iter().enumerate() {
            let v = SqlValue::convert(c, self.type_of(i)).map_err(|why| {
                format!(
                    "column {}: {why}",
                    self.columns.get(i).map_or("?", String::as_str)
                )
            })?;
            out.push(v);
        }
        let key_cells = if self.windowed { 2 } else { 0 } + row.group.len();
        Ok((row_key(&cells[..key_cells.min(cells.len())]), out))
    }
}

/// A batch's rows as a sink writes them.
#[derive(Debug, Clone, Default)]
pub struct PreparedBatch {
    /// Withdrawn rows: their key, and their window and group values (in column order).
    pub retracted: Vec<(String, Vec<SqlValue>)>,
    /// The rows to write: their key, and their values converted to the columns' types.
    pub rows: Vec<(String, Vec<SqlValue>)>,
    /// Rows that cannot be written (a value that does not fit its column), with why.
    pub refused: Vec<RefusedRow>,
}

impl PreparedBatch {
    /// Puts the rows in primary-key (`row_key`) order, for a database: its server then walks
    /// its index in order (by hand with the mariadb client, 20 `LOAD DATA … REPLACE` of
    /// 10,000 existing rows took 1.10–1.28 s sorted against 1.28–1.33 s in arrival order). A
    /// stable sort: a key twice in a batch keeps its last row last.
    pub fn in_key_order(&mut self) {
        self.rows.sort_by(|a, b| a.0.cmp(&b.0));
    }
}

impl Layout {
    /// Settles the column types on `batch` and converts its rows (see [`PreparedBatch`]).
    pub fn prepare(&mut self, batch: &Batch) -> PreparedBatch {
        self.settle(batch);
        let mut out = PreparedBatch::default();
        for r in &batch.rows {
            if r.retract {
                let cells = row_cells(r);
                let values = cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| SqlValue::convert(c, self.type_of(i)).unwrap_or(SqlValue::Null))
                    .collect();
                out.retracted.push((self.key_of(r), values));
                continue;
            }
            match self.values(r) {
                Ok(v) => out.rows.push(v),
                Err(reason) => out.refused.push(RefusedRow {
                    row: format!("{r:?}"),
                    reason,
                }),
            }
        }
        out
    }
}

/// The error of a run that stops at a refused row of batch `batch`.
pub fn stop_at(target: &str, batch: u64, row: &RefusedRow) -> DbError {
    DbError::Refused {
        target: target.to_string(),
        what: format!("a row of batch {batch}"),
        why: row.reason.clone(),
    }
}

/// The report of a batch written in one transaction: `attempts` tries, `skipped` when the
/// table held it already, `written` rows of which the database refused `refused`.
pub fn report_of(
    mut report: BatchReport,
    attempts: u32,
    skipped: bool,
    written: usize,
    refused: Vec<RefusedRow>,
) -> BatchReport {
    report.retries = attempts.saturating_sub(1);
    if skipped {
        report.skipped = true;
    } else {
        report.written = written.saturating_sub(refused.len()) as u64;
        report.refused.extend(refused);
    }
    report
}

/// A row's cells in column order: window (as integers), group, values.
fn row_cells(row: &crate::aggregate::Row) -> Vec<Cell> {
    let mut v = Vec::with_capacity(2 + row.group.len() + row.values.len());
    if let Some((s, e)) = row.window {
        v.push(Cell::Int(s));
        v.push(Cell::Int(e));
    }
    v.extend(row.group.iter().cloned());
    v.extend(row.values.iter().cloned());
    v
}

/// The key of a row: 128 bits of FNV-1a over its window and group values' JSON, in hex.
pub fn row_key(cells: &[Cell]) -> String {
    let mut text = String::new();
    for c in cells {
        c.write_json(&mut text);
        text.push('\u{1f}');
    }
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for byte in text.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        b = (b ^ u64::from(byte))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(5);
    }
    format!("{a:016x}{b:016x}")
}

/// Back-off between connection attempts: 100 ms doubling up to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

/// The SQL dialects of the database sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `"name"`, `$1`, `ON CONFLICT`.
    Postgres,
    /// MySQL and MariaDB: `` `name` ``, `?`, `ON DUPLICATE KEY UPDATE`.
    Mysql,
}

impl Dialect {
    /// An identifier (already checked by [`identifier`]) quoted.
    pub fn quote(self, id: &str) -> String {
        match self {
            Dialect::Postgres => format!("\"{id}\""),
            Dialect::Mysql => format!("`{id}`"),
        }
    }

    /// The SQL type of a column.
    pub fn type_name(self, t: SqlType) -> &'static str {
        match (self, t) {
            (_, SqlType::BigInt) => "BIGINT",
            (Dialect::Postgres, SqlType::Double) => "DOUBLE PRECISION",
            (Dialect::Mysql, SqlType::Double) => "DOUBLE",
            (_, SqlType::Text) => "TEXT",
            (_, SqlType::Bool) => "BOOLEAN",
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for a layout's table.
    pub fn create_table(self, table: &str, layout: &Layout) -> String {
        let key = match self {
            Dialect::Postgres => "TEXT",
            Dialect::Mysql => "CHAR(32)",
        };
        let mut ddl = format!("CREATE TABLE IF NOT EXISTS {table} (row_key {key} PRIMARY KEY");
        for (i, c) in layout.columns.iter().enumerate() {
            let _ = write!(
                ddl,
                ", {} {}",
                self.quote(c),
                self.type_name(layout.type_of(i))
            );
        }
        ddl.push_str(", batch_id BIGINT NOT NULL)");
        // Update mode rewrites its rows batch after batch: with half of each page free,
        // every row of a page can be rewritten on its page (HOT: no new index entry; the
        // old versions are pruned when the page is next written). At 70 % full only about
        // 40 % of the updates of a batch stayed on their page (measured: n_tup_hot_upd).
        if self == Dialect::Postgres && layout.mode == OutputMode::Update {
            ddl.push_str(" WITH (fillfactor = 50)");
        }
        ddl
    }

    /// The statement inserting `n` rows of a layout into `table`, upserting by `row_key`;
    /// parameters per row: `row_key`, the columns, `batch_id`.
    pub fn insert(self, table: &str, layout: &Layout, n: usize) -> String {
        let ncols = layout.columns.len() + 2;
        let mut sql = format!("INSERT INTO {table} (row_key");
        for c in &layout.columns {
            let _ = write!(sql, ", {}", self.quote(c));
        }
        sql.push_str(", batch_id) VALUES ");
        for r in 0..n {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..ncols {
                if c > 0 {
                    sql.push_str(", ");
                }
                match self {
                    Dialect::Postgres => {
                        let _ = write!(sql, "${}", r * ncols + c + 1);
                    }
                    Dialect::Mysql => sql.push('?'),
                }
            }
            sql.push(')');
        }
        let set = |sql: &mut String, c: &str| match self {
            Dialect::Postgres => {
                let _ = write!(sql, "{0} = EXCLUDED.{0}", self.quote(c));
            }
            Dialect::Mysql => {
                let _ = write!(sql, "{0} = VALUES({0})", self.quote(c));
            }
        };
        sql.push_str(match self {
            Dialect::Postgres => " ON CONFLICT (row_key) DO UPDATE SET ",
            Dialect::Mysql => " ON DUPLICATE KEY UPDATE ",
        });
        set(&mut sql, "batch_id");
        for c in &layout.columns {
            sql.push_str(", ");
            set(&mut sql, c);
        }
        sql
    }

    /// `INSERT INTO table SELECT ... FROM source`, upserting by `row_key` (PostgreSQL: the
    /// rows of a batch copied into a staging table first).
    pub fn upsert_from(self, table: &str, layout: &Layout, source: &str) -> String {
        let cols = self.columns(layout);
        let mut sql = format!("INSERT INTO {table} ({cols}) SELECT {cols} FROM {source}");
        sql.push_str(" ON CONFLICT (row_key) DO UPDATE SET batch_id = EXCLUDED.batch_id");
        for c in &layout.columns {
            let _ = write!(sql, ", {0} = EXCLUDED.{0}", self.quote(c));
        }
        sql
    }

    /// The column list of a layout's table, `row_key` to `batch_id`.
    pub fn columns(self, layout: &Layout) -> String {
        let mut cols = String::from("row_key");
        for c in &layout.columns {
            let _ = write!(cols, ", {}", self.quote(c));
        }
        cols.push_str(", batch_id");
        cols
    }

    /// Rows per statement for a layout (the parameter limit is 65,535 in both).
    pub fn rows_per_statement(layout: &Layout) -> usize {
        (60_000 / (layout.columns.len() + 2)).clamp(1, 1_000)
    }
}

/// Appends one field in PostgreSQL's `COPY` text format (tab-separated, `\N` for null).
pub fn push_copy_field(out: &mut String, v: &SqlValue) {
    match v {
        SqlValue::Null => out.push_str("\\N"),
        SqlValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        SqlValue::Double(f) => {
            let _ = write!(out, "{f:?}");
        }
        SqlValue::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        SqlValue::Text(s) => {
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}
