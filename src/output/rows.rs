//! Aggregation rows and late matches as JSON lines or CSV rows.
//!
//! A row is `{"aggregate": NAME, "batch": ID, "mode": MODE, "window_start": MS,
//! "window_end": MS, <group columns>, <aggregate columns>}` (no window fields for an
//! aggregate without a window); in CSV the same columns, with a header row. In update mode a
//! row can be withdrawn: `"mode": "retract"`, with the window and group columns only (CSV:
//! the aggregate columns empty).

use std::fmt::Write;

use super::{push_csv_field, OutputFormat};
use crate::aggregate::{AggregateDecl, Batch, Cell, LateMatch, Row};
use crate::value::push_json_str;

/// The header row of an aggregate's rows in `format`, if it has one; `visible` is the
/// number of `select` columns rows show.
pub fn row_header(format: OutputFormat, agg: &AggregateDecl, visible: usize) -> Option<String> {
    if format != OutputFormat::Csv {
        return None;
    }
    let mut out = String::from("aggregate,batch,mode");
    if agg.window.is_some() {
        out.push_str(",window_start,window_end");
    }
    for name in agg
        .group_by
        .iter()
        .map(|g| &g.name)
        .chain(agg.select.iter().take(visible).map(|s| &s.name))
    {
        out.push(',');
        push_csv_field(&mut out, name);
    }
    out.push('\n');
    Some(out)
}

/// Appends one row of `batch` of aggregate `agg` in `format`, with its newline.
pub fn write_row(
    format: OutputFormat,
    out: &mut String,
    agg: &AggregateDecl,
    visible: usize,
    batch: &Batch,
    row: &Row,
) {
    let names = agg
        .group_by
        .iter()
        .map(|g| g.name.as_str())
        .chain(agg.select.iter().take(visible).map(|s| s.name.as_str()));
    // A retraction has no aggregate values: its columns are left out (JSON) or empty (CSV).
    let blanks = if row.retract { visible } else { 0 };
    let blank = Cell::Null;
    let cells = row
        .group
        .iter()
        .chain(row.values.iter())
        .chain(std::iter::repeat_n(&blank, blanks));
    match format {
        OutputFormat::JsonLines => {
            out.push_str("{\"aggregate\":");
            push_json_str(out, &agg.name);
            let mode = if row.retract {
                "retract"
            } else {
                mode_name(batch)
            };
            let _ = write!(out, ",\"batch\":{},\"mode\":\"{mode}\"", batch.id);
            if let Some((s, e)) = row.window {
                let _ = write!(out, ",\"window_start\":{s},\"window_end\":{e}");
            }
            let shown = row.group.len() + row.values.len();
            for (name, cell) in names.zip(cells).take(shown) {
                out.push(',');
                push_json_str(out, name);
                out.push(':');
                cell.write_json(out);
            }
            out.push_str("}\n");
        }
        OutputFormat::Csv => {
            push_csv_field(out, &agg.name);
            let mode = if row.retract {
                "retract"
            } else {
                mode_name(batch)
            };
            let _ = write!(out, ",{},{mode}", batch.id);
            if let Some((s, e)) = row.window {
                let _ = write!(out, ",{s},{e}");
            }
            let mut text = String::new();
            for cell in cells {
                out.push(',');
                text.clear();
                match cell {
                    Cell::Null => {}
                    Cell::Str(s) => text.push_str(s),
                    c => c.write_json(&mut text),
                }
                push_csv_field(out, &text);
            }
            out.push('\n');
        }
    }
}

/// Appends a match that came too late for its aggregate's windows, as a late output's line.
pub fn write_late_match(
    format: OutputFormat,
    out: &mut String,
    agg: &AggregateDecl,
    late: &LateMatch,
) {
    let pattern = agg.from.get(late.from).map_or("", String::as_str);
    match format {
        OutputFormat::JsonLines => {
            out.push_str("{\"aggregate\":");
            push_json_str(out, &agg.name);
            out.push_str(",\"pattern\":");
            push_json_str(out, pattern);
            let _ = writeln!(
                out,
                ",\"time\":{},\"closed_through\":{},\"reason\":\"the match's window was already finished\"}}",
                late.time, late.closed_through
            );
        }
        OutputFormat::Csv => {
            // The late output's columns: pattern, time, watermark, reason, event.
            push_csv_field(out, pattern);
            let _ = write!(out, ",{},{},", late.time, late.closed_through);
            push_csv_field(
                out,
                &format!(
                    "aggregate {}: the match's window was already finished",
                    agg.name
                ),
            );
            out.push_str(",\n");
        }
    }
}

fn mode_name(batch: &Batch) -> &'static str {
    match batch.mode {
        crate::aggregate::OutputMode::Append => "append",
        crate::aggregate::OutputMode::Update => "update",
        crate::aggregate::OutputMode::Complete => "complete",
    }
}
