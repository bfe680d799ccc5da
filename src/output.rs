//! Matches, late events and rejects as JSON lines or CSV rows.

mod rows;

use std::fmt::Write;
use std::sync::Arc;

use crate::event::DecodeError;
use crate::nfa::{Match, Nfa};
use crate::runtime::{Engine, EngineOptions, MatchView, Output, Prepare};

/// Where an output line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    /// A match or a timed-out partial match.
    Match,
    /// A late event.
    Late,
    /// A rejected record.
    Reject,
    /// A watermark move (no file of the command line takes these).
    Watermark,
}

/// How outputs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per line (the spec's match format).
    #[default]
    JsonLines,
    /// CSV (RFC 4180) with a header row per output: matches as `pattern, key, start, end,
    /// timed_out, timeout, events` (the key as its JSON value, the events as the JSON object
    /// of the JSON lines format), late events as `pattern, time, watermark, reason, event`,
    /// rejects as `source, line, reason, record`.
    Csv,
}

impl OutputFormat {
    /// The header row of `stream`'s output in this format, if it has one.
    pub fn header(self, stream: Stream) -> Option<&'static str> {
        match self {
            OutputFormat::JsonLines => None,
            OutputFormat::Csv => Some(match stream {
                Stream::Match => "pattern,key,start,end,timed_out,timeout,events\n",
                Stream::Late => "pattern,time,watermark,reason,event\n",
                Stream::Reject => "source,line,reason,record\n",
                Stream::Watermark => "pattern,watermark\n",
            }),
        }
    }
}

/// Appends one CSV field: quoted (inner quotes doubled) when it holds a comma, a quote or a
/// line break.
pub(crate) fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Appends one output of an engine in `format` (see [`write_output`]).
pub fn write_output_as<'a>(
    format: OutputFormat,
    out: &mut String,
    nfa: impl Fn(usize) -> &'a Nfa,
    o: &Output,
) -> Rendered {
    if format == OutputFormat::JsonLines {
        return write_output(out, nfa, o);
    }
    let mut field = String::new();
    match o {
        Output::Match { pattern, key, m } => {
            let nfa = nfa(*pattern);
            push_csv_field(out, &nfa.name);
            out.push(',');
            push_csv_field(out, key.as_deref().unwrap_or(""));
            let _ = write!(out, ",{},{},{},", m.start(), m.end(), m.timed_out.is_some());
            if let Some(t) = m.timed_out {
                let _ = write!(out, "{t}");
            }
            out.push(',');
            write_events(&mut field, nfa, m);
            push_csv_field(out, &field);
            out.push('\n');
            Rendered {
                stream: Stream::Match,
                timed_out: m.timed_out.is_some(),
                human: None,
            }
        }
        Output::Late {
            pattern,
            raw,
            time,
            watermark,
        } => {
            push_csv_field(out, &nfa(*pattern).name);
            let _ = write!(out, ",{time},{watermark},");
            push_csv_field(
                out,
                &format!("event time {time} is not after the watermark {watermark}"),
            );
            out.push(',');
            push_csv_field(out, raw);
            out.push('\n');
            Rendered {
                stream: Stream::Late,
                timed_out: false,
                human: None,
            }
        }
        Output::Reject {
            pattern,
            reason,
            record,
        } => {
            let name = pattern.map(|p| nfa(p).name.as_str());
            let (origin, line_no, record) = (&*record.source, record.line, &*record.text);
            // The JSON line gives the human message; the row is written from its parts.
            let human = write_rejection(&mut field, name, reason, origin, line_no, record);
            let reason = match name {
                Some(p) => format!("pattern {p}: {reason}"),
                None => reason.to_string(),
            };
            push_csv_field(out, origin);
            let _ = write!(out, ",{line_no},");
            push_csv_field(out, &reason);
            out.push(',');
            push_csv_field(out, record);
            out.push('\n');
            Rendered {
                stream: Stream::Reject,
                timed_out: false,
                human: Some(human),
            }
        }
        Output::Watermark { pattern, watermark } => {
            push_csv_field(out, &nfa(*pattern).name);
            let _ = writeln!(out, ",{watermark}");
            Rendered {
                stream: Stream::Watermark,
                timed_out: false,
                human: None,
            }
        }
    }
}

/// One rendered output: a JSON line or CSV row and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Line {
    /// Which output it belongs to.
    pub stream: Stream,
    /// The line (JSON or a CSV row), with its newline.
    pub text: String,
    /// Whether it is a timed-out partial match.
    pub timed_out: bool,
    /// For a rejected record: a one-line human message (for stderr).
    pub human: Option<String>,
}

/// Renders outputs as [`Line`]s in a format: what the command line's sinks write. As a
/// [`Prepare`] it runs on the workers of a parallel engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Render {
    /// The format.
    pub format: OutputFormat,
}

impl Render {
    /// Renders one output of the patterns `nfas`.
    pub fn line(&self, nfas: &[Arc<Nfa>], o: &Output) -> Line {
        let mut text = String::new();
        let r = write_output_as(self.format, &mut text, |p| &*nfas[p], o);
        Line {
            stream: r.stream,
            text,
            timed_out: r.timed_out,
            human: r.human,
        }
    }
}

impl Prepare for Render {
    type Item = Line;

    fn prepare(&self, nfas: &[Arc<Nfa>], o: Output) -> Line {
        self.line(nfas, &o)
    }
}

/// How one engine output was rendered (see [`write_output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Where the line goes.
    pub stream: Stream,
    /// Whether it is a timed-out partial match.
    pub timed_out: bool,
    /// For a rejected record: a one-line human message (for stderr).
    pub human: Option<String>,
}

/// Appends one output of an engine as its JSON line; `nfa` gives a pattern by index.
pub fn write_output<'a>(out: &mut String, nfa: impl Fn(usize) -> &'a Nfa, o: &Output) -> Rendered {
    let (stream, timed_out, human) = match o {
        Output::Match { pattern, key, m } => {
            write_match(out, nfa(*pattern), key.as_deref(), m);
            (Stream::Match, m.timed_out.is_some(), None)
        }
        Output::Late {
            pattern,
            raw,
            time,
            watermark,
        } => {
            write_late(out, &nfa(*pattern).name, raw, *time, *watermark);
            (Stream::Late, false, None)
        }
        Output::Reject {
            pattern,
            reason,
            record,
        } => {
            let name = pattern.map(|p| nfa(p).name.as_str());
            let human =
                write_rejection(out, name, reason, &record.source, record.line, &record.text);
            (Stream::Reject, false, Some(human))
        }
        Output::Watermark { pattern, watermark } => {
            out.push_str("{\"watermark\":");
            let _ = write!(out, "{watermark},\"pattern\":");
            push_json_str(out, &nfa(*pattern).name);
            out.push_str("}\n");
            (Stream::Watermark, false, None)
        }
    };
    Rendered {
        stream,
        timed_out,
        human,
    }
}

/// Appends one match (or timed-out partial match) as a JSON line, without allocating a JSON
/// tree: input events are echoed as the text they arrived as.
pub fn write_match(out: &mut String, nfa: &Nfa, key_json: Option<&str>, m: &Match) {
    out.push_str("{\"pattern\":");
    push_json_str(out, &nfa.name);
    if let Some(k) = key_json {
        out.push_str(",\"key\":");
        out.push_str(k);
    }
    let _ = write!(
        out,
        ",\"start\":{},\"end\":{},\"events\":",
        m.start(),
        m.end()
    );
    write_events(out, nfa, m);
    if let Some(t) = m.timed_out {
        let _ = write!(out, ",\"timed_out\":true,\"timeout\":{t}");
    }
    out.push_str("}\n");
}

/// Appends a match's events as a JSON object: per variable (in pattern order) the events it
/// took, each echoed as it arrived.
fn write_events(out: &mut String, nfa: &Nfa, m: &Match) {
    out.push('{');
    let mut first_var = true;
    for (v, name) in nfa.variables.iter().enumerate() {
        let mut evs = m.events.iter().filter(|e| e.var == v).peekable();
        if evs.peek().is_none() {
            continue;
        }
        if !first_var {
            out.push(',');
        }
        first_var = false;
        push_json_str(out, name);
        out.push_str(":[");
        for (i, e) in evs.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&e.raw);
        }
        out.push(']');
    }
    out.push('}');
}

pub use crate::value::push_json_str;
pub use rows::{row_header, write_late_match, write_row};

/// Appends one late event as a JSON line.
pub fn write_late(out: &mut String, pattern: &str, raw: &str, time: i64, watermark: i64) {
    out.push_str("{\"late\":true,\"pattern\":");
    push_json_str(out, pattern);
    let _ = writeln!(
        out,
        ",\"time\":{time},\"watermark\":{watermark},\"reason\":\"event time {time} is not after the watermark {watermark}\",\"event\":{raw}}}"
    );
}

/// Appends one rejected record as a JSON line.
pub fn write_reject(out: &mut String, origin: &str, line: u64, reason: &str, raw: &str) {
    out.push_str("{\"rejected\":true,\"source\":");
    push_json_str(out, origin);
    let _ = write!(out, ",\"line\":{line},\"reason\":");
    push_json_str(out, reason);
    out.push_str(",\"record\":");
    push_json_str(out, raw);
    out.push_str("}\n");
}

/// A record rejected for `reason` (by `pattern`, if the reason is that pattern's, such as a
/// missing time field): appends its JSON line to `out` and returns the one-line message for a
/// person (stderr).
pub fn write_rejection(
    out: &mut String,
    pattern: Option<&str>,
    reason: &DecodeError,
    origin: &str,
    line: u64,
    raw: &str,
) -> String {
    let reason = match pattern {
        Some(p) => format!("pattern {p}: {reason}"),
        None => reason.to_string(),
    };
    write_reject(out, origin, line, &reason, raw);
    format!("motif: {origin}:{line}: rejected: {reason}")
}

/// The match as the JSON line the command line prints (without the newline).
impl std::fmt::Display for MatchView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = String::new();
        write_match(&mut line, self.nfa(), self.key_json(), self.get());
        f.write_str(line.trim_end_matches('\n'))
    }
}

/// Runs the patterns of `source` over JSON lines and returns every match as the JSON object
/// the CLI prints (timed-out partial matches too when `with_timeouts`). Meant for tests and
/// embedding; errors are rendered as text.
pub fn match_lines(
    source: &str,
    lines: &[&str],
    with_timeouts: bool,
) -> Result<Vec<serde_json::Value>, String> {
    match_lines_with(
        source,
        lines,
        EngineOptions {
            timeouts: with_timeouts,
            ..EngineOptions::default()
        },
    )
}

/// [`match_lines`] with explicit engine options.
pub fn match_lines_with(
    source: &str,
    lines: &[&str],
    options: EngineOptions,
) -> Result<Vec<serde_json::Value>, String> {
    let decls = crate::syntax::load_str("<source>", source).map_err(|e| e.to_string())?;
    let mut engine = Engine::new(&decls, options).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for l in lines {
        if !l.trim().is_empty() {
            engine.push_json(l, &mut out);
        }
    }
    engine.finish(&mut out);
    let mut result = Vec::new();
    let mut text = String::new();
    for o in &out {
        if let Output::Match { pattern, key, m } = o {
            text.clear();
            write_match(&mut text, engine.nfa(*pattern), key.as_deref(), m);
            result.push(serde_json::from_str(&text).map_err(|e| e.to_string())?);
        }
    }
    Ok(result)
}
