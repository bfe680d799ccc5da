//! Aggregation rows as Parquet: a directory (`rows.parquet/`, as Spark writes one) with one
//! file per batch, `part-00001.parquet`, `part-00002.parquet`, ..., each written to a
//! temporary name, synced and renamed, so a file is whole or absent. A batch whose file exists
//! is not written again (a replay after a restart): exactly once, like the database sinks.
//! Spark (`spark.read.parquet(dir)`), pandas (`pd.read_parquet(dir)`) and DuckDB
//! (`read_parquet('dir/*.parquet')`) read the directory as it is.
//!
//! Columns: `aggregate` and `mode` (strings; `mode` is `retract` for a withdrawn row), `batch`
//! (int64), `window_start` and `window_end` (int64, milliseconds, when the aggregate has a
//! window), the group and aggregate columns (int64, double, string or boolean, from the
//! declaration and the first values seen; every column optional).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use super::table::{BatchReport, DbError, Layout, SqlType, SqlValue, TableSink};
use crate::aggregate::{AggregateDecl, Batch};

/// Aggregation rows into a directory of Parquet files, one per batch.
pub struct ParquetSink {
    dir: PathBuf,
    target: String,
    name: String,
    layout: Layout,
    committed: Option<u64>,
}

fn refused(target: &str, what: &str, why: impl ToString) -> DbError {
    DbError::Refused {
        target: target.to_string(),
        what: what.to_string(),
        why: why.to_string(),
    }
}

/// The batch id of a part file's name.
fn part_id(name: &str) -> Option<u64> {
    name.strip_prefix("part-")?
        .strip_suffix(".parquet")?
        .parse()
        .ok()
}

impl ParquetSink {
    /// A sink for aggregate `agg`'s rows (`visible` select columns) into directory `dir`
    /// (created if missing); the batches already there count as committed.
    pub fn open(dir: &Path, agg: &AggregateDecl, visible: usize) -> Result<ParquetSink, DbError> {
        Self::open_layout(dir, &agg.name, Layout::of(agg, visible)?)
    }

    /// A sink for rows of `layout` into `dir`; `name` fills the `aggregate` column.
    pub fn open_layout(dir: &Path, name: &str, layout: Layout) -> Result<ParquetSink, DbError> {
        let target = dir.display().to_string();
        std::fs::create_dir_all(dir).map_err(|e| refused(&target, "creating the directory", e))?;
        let committed = std::fs::read_dir(dir)
            .map_err(|e| refused(&target, "listing the directory", e))?
            .filter_map(|e| part_id(&e.ok()?.file_name().into_string().ok()?))
            .max();
        Ok(ParquetSink {
            dir: dir.to_path_buf(),
            target,
            name: name.to_string(),
            layout,
            committed,
        })
    }

    fn schema(&self) -> Result<Type, parquet::errors::ParquetError> {
        let string = |name: &str, rep: Repetition| {
            Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                .with_logical_type(Some(LogicalType::String))
                .with_repetition(rep)
                .build()
        };
        let mut fields = vec![
            Arc::new(string("aggregate", Repetition::REQUIRED)?),
            Arc::new(
                Type::primitive_type_builder("batch", Physical::INT64)
                    .with_repetition(Repetition::REQUIRED)
                    .build()?,
            ),
            Arc::new(string("mode", Repetition::REQUIRED)?),
        ];
        for (i, c) in self.layout.columns.iter().enumerate() {
            let t = match self.layout.type_of(i) {
                SqlType::BigInt => Type::primitive_type_builder(c, Physical::INT64)
                    .with_repetition(Repetition::OPTIONAL)
                    .build()?,
                SqlType::Double => Type::primitive_type_builder(c, Physical::DOUBLE)
                    .with_repetition(Repetition::OPTIONAL)
                    .build()?,
                SqlType::Bool => Type::primitive_type_builder(c, Physical::BOOLEAN)
                    .with_repetition(Repetition::OPTIONAL)
                    .build()?,
                SqlType::Text => string(c, Repetition::OPTIONAL)?,
            };
            fields.push(Arc::new(t));
        }
        Type::group_type_builder("motif")
            .with_fields(fields)
            .build()
    }

    fn write_file(
        &self,
        path: &Path,
        batch: &Batch,
        rows: &[(bool, Vec<SqlValue>)],
    ) -> Result<(), parquet::errors::ParquetError> {
        let file = File::create(path)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut w = SerializedFileWriter::new(file, Arc::new(self.schema()?), Arc::new(props))?;
        let mut rg = w.next_row_group()?;
        let n = rows.len();
        let id = i64::try_from(batch.id).unwrap_or(i64::MAX);
        let mode = batch.mode.to_string();
        let mut col = 0usize;
        while let Some(mut c) = rg.next_column()? {
            match col {
                0 => {
                    let v = vec![ByteArray::from(self.name.as_str()); n];
                    c.typed::<ByteArrayType>().write_batch(&v, None, None)?;
                }
                1 => {
                    c.typed::<Int64Type>()
                        .write_batch(&vec![id; n], None, None)?;
                }
                2 => {
                    let v: Vec<ByteArray> = rows
                        .iter()
                        .map(|(retract, _)| {
                            ByteArray::from(if *retract { "retract" } else { mode.as_str() })
                        })
                        .collect();
                    c.typed::<ByteArrayType>().write_batch(&v, None, None)?;
                }
                k => {
                    let i = k - 3;
                    let cells = rows
                        .iter()
                        .map(|(_, v)| v.get(i).unwrap_or(&SqlValue::Null));
                    let defs: Vec<i16> = cells
                        .clone()
                        .map(|v| i16::from(*v != SqlValue::Null))
                        .collect();
                    match self.layout.type_of(i) {
                        SqlType::BigInt => {
                            let v: Vec<i64> = cells
                                .filter_map(|v| match v {
                                    SqlValue::Int(x) => Some(*x),
                                    _ => None,
                                })
                                .collect();
                            c.typed::<Int64Type>().write_batch(&v, Some(&defs), None)?;
                        }
                        SqlType::Double => {
                            let v: Vec<f64> = cells
                                .filter_map(|v| match v {
                                    SqlValue::Double(x) => Some(*x),
                                    _ => None,
                                })
                                .collect();
                            c.typed::<DoubleType>().write_batch(&v, Some(&defs), None)?;
                        }
                        SqlType::Bool => {
                            let v: Vec<bool> = cells
                                .filter_map(|v| match v {
                                    SqlValue::Bool(x) => Some(*x),
                                    _ => None,
                                })
                                .collect();
                            c.typed::<BoolType>().write_batch(&v, Some(&defs), None)?;
                        }
                        SqlType::Text => {
                            let v: Vec<ByteArray> = cells
                                .filter_map(|v| match v {
                                    SqlValue::Text(x) => Some(ByteArray::from(x.as_str())),
                                    _ => None,
                                })
                                .collect();
                            c.typed::<ByteArrayType>()
                                .write_batch(&v, Some(&defs), None)?;
                        }
                    }
                }
            }
            c.close()?;
            col += 1;
        }
        rg.close()?;
        let file = w.into_inner()?;
        file.sync_all()?;
        Ok(())
    }
}

impl TableSink for ParquetSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<BatchReport, DbError> {
        if self.committed.is_some_and(|c| batch.id <= c) {
            return Ok(BatchReport::skipped());
        }
        let prepared = self.layout.prepare(batch);
        let mut report = BatchReport {
            refused: prepared.refused,
            ..BatchReport::default()
        };
        // Withdrawn rows carry their window and group only: the aggregate columns stay null.
        let rows: Vec<(bool, Vec<SqlValue>)> = prepared
            .retracted
            .into_iter()
            .map(|(_, v)| (true, v))
            .chain(prepared.rows.into_iter().map(|(_, v)| (false, v)))
            .collect();
        let name = format!("part-{:05}.parquet", batch.id);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        self.write_file(&tmp, batch, &rows)
            .map_err(|e| refused(&self.target, &format!("writing {name}"), e))?;
        std::fs::rename(&tmp, self.dir.join(&name))
            .map_err(|e| refused(&self.target, &format!("renaming {name}"), e))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        report.written = rows.iter().filter(|(r, _)| !r).count() as u64;
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
