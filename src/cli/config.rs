//! `motif run --config pipeline.toml`: a whole pipeline in one file — patterns, input,
//! outputs (files, tables, Parquet directories), aggregate sinks, checkpoints — with
//! `${NAME}` replaced by environment variable `NAME` (for passwords), and paths relative to
//! the file's directory. Flags given on the command line win over the file.
//!
//! ```toml
//! patterns = "patterns/pipeline/"
//! input = "events/"
//! workers = 2
//! ordered = true
//!
//! [outputs]
//! matches = "postgres://motif:${PGPASSWORD}@db:5432/cep?table=matches&create=true"
//! late = "late.jsonl"
//!
//! [aggregates]
//! overheat_per_minute = "mysql://root:${MYSQL_PWD}@127.0.0.1:3306/test?table=overheat&create=true"
//!
//! [checkpoint]
//! dir = "state/"
//! interval = "10s"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a pipeline file can say (every field optional).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// A pattern file or directory.
    pub patterns: Option<String>,
    /// The input (as `--input`).
    pub input: Option<String>,
    /// Input format: `jsonl` or `csv`.
    pub format: Option<String>,
    /// Output format: `jsonl` or `csv`.
    pub output_format: Option<String>,
    /// Read input files as source partitions.
    pub partitioned: Option<bool>,
    /// A source partition silent this long stops holding the watermark back (as
    /// `--idle-timeout`, but a duration: `30s`).
    pub idle_timeout: Option<String>,
    /// A live input silent this long: event time passes with processing time (as
    /// `--quiet-advance`).
    pub quiet_advance: Option<String>,
    /// Partition key fields for patterns without `key`.
    pub key: Option<Vec<String>>,
    /// Report timed-out partial matches.
    pub timeouts: Option<bool>,
    /// Stop at the first rejected record.
    pub strict: Option<bool>,
    /// Worker threads.
    pub workers: Option<usize>,
    /// Deterministic output order.
    pub ordered: Option<bool>,
    /// A batch of matches (to a table) after every this many records.
    pub batch_records: Option<u64>,
    /// `skip` or `stop` at a row a database refuses.
    pub on_db_error: Option<String>,
    /// Where the outputs go.
    pub outputs: Option<Outputs>,
    /// Per aggregate: where its rows go.
    pub aggregates: Option<BTreeMap<String, String>>,
    /// Checkpoints.
    pub checkpoint: Option<Checkpoints>,
}

/// The `[outputs]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// Matches: a file, a table URL or a Parquet directory.
    pub matches: Option<String>,
    /// Timed-out partial matches.
    pub timeouts: Option<String>,
    /// Late events.
    pub late: Option<String>,
    /// Rejected records.
    pub rejects: Option<String>,
}

/// The `[checkpoint]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Checkpoints {
    /// The directory.
    pub dir: String,
    /// Time between checkpoints (`10s`, `500ms`, ...).
    pub interval: Option<String>,
    /// Also after every this many records.
    pub records: Option<u64>,
    /// Start changed patterns fresh.
    pub fresh_patterns: Option<bool>,
}

/// Why a pipeline file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML, or not a pipeline.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A `${NAME}` names an environment variable that is not set.
    #[error("{}: `${{{name}}}` is used but the environment variable {name} is not set", path.display())]
    Unset {
        /// The file.
        path: PathBuf,
        /// The variable.
        name: String,
    },
}

/// Replaces every `${NAME}` in `s` by the environment variable (`$$` is a `$`).
fn expand(s: &str, path: &Path) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("`${{` without its `}}` in {s:?}"),
                });
            };
            let name = &r[..end];
            match std::env::var(name) {
                Ok(v) => out.push_str(&v),
                Err(_) => {
                    return Err(ConfigError::Unset {
                        path: path.to_path_buf(),
                        name: name.to_string(),
                    })
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_all(v: &mut toml::Value, path: &Path) -> Result<(), ConfigError> {
    match v {
        toml::Value::String(s) => *s = expand(s, path)?,
        toml::Value::Array(a) => {
            for x in a {
                expand_all(x, path)?;
            }
        }
        toml::Value::Table(t) => {
            for (_, x) in t.iter_mut() {
                expand_all(x, path)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A path of the file, relative to the file's directory unless absolute, standard input
/// (`-`), the generator (`gen:…`) or a database URL.
fn resolve(dir: &Path, p: &str) -> String {
    if p == "-" || p.starts_with("gen:") || p.contains("://") || Path::new(p).is_absolute() {
        p.to_string()
    } else {
        dir.join(p).display().to_string()
    }
}

/// Reads a pipeline file.
pub fn load(path: &Path) -> Result<PipelineFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let mut value: toml::Value = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    expand_all(&mut value, path)?;
    let mut f = PipelineFile::deserialize(value).map_err(|e| invalid(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let fix = |p: &mut Option<String>| {
        if let Some(x) = p.as_mut() {
            *x = resolve(dir, x);
        }
    };
    fix(&mut f.patterns);
    fix(&mut f.input);
    if let Some(o) = f.outputs.as_mut() {
        fix(&mut o.matches);
        fix(&mut o.timeouts);
        fix(&mut o.late);
        fix(&mut o.rejects);
    }
    if let Some(a) = f.aggregates.as_mut() {
        for t in a.values_mut() {
            *t = resolve(dir, t);
        }
    }
    if let Some(c) = f.checkpoint.as_mut() {
        c.dir = resolve(dir, &c.dir);
    }
    Ok(f)
}

/// Fills what the command line left open from the pipeline file.
pub(super) fn apply(args: &mut super::RunArgs, f: PipelineFile) -> Result<(), String> {
    fn or<T>(cli: &mut Option<T>, file: Option<T>) {
        if cli.is_none() {
            *cli = file;
        }
    }
    or(&mut args.patterns, f.patterns.map(PathBuf::from));
    or(&mut args.input, f.input);
    or(&mut args.format, f.format);
    or(&mut args.output_format, f.output_format);
    if let Some(w) = f.workers {
        // The same bounds as --workers.
        let max = super::MAX_WORKERS;
        match u16::try_from(w) {
            Ok(n) if (1..=max).contains(&usize::from(n)) => or(&mut args.workers, Some(n)),
            _ => return Err(format!("workers = {w}: not in 1..={max}")),
        }
    }
    if args.idle_timeout.is_none() {
        if let Some(t) = &f.idle_timeout {
            let d = super::parse_duration(t).map_err(|e| format!("idle_timeout: {e}"))?;
            args.idle_timeout = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
    }
    if args.quiet_advance.is_none() {
        if let Some(t) = &f.quiet_advance {
            args.quiet_advance =
                Some(super::parse_duration(t).map_err(|e| format!("quiet_advance: {e}"))?);
        }
    }
    or(&mut args.batch_records, f.batch_records);
    or(&mut args.on_db_error, f.on_db_error);
    for (flag, v) in [
        (&mut args.partitioned, f.partitioned),
        (&mut args.timeouts, f.timeouts),
        (&mut args.strict, f.strict),
        (&mut args.ordered, f.ordered),
    ] {
        *flag |= v.unwrap_or(false);
    }
    if args.key.is_empty() {
        args.key = f.key.unwrap_or_default();
    }
    if let Some(o) = f.outputs {
        or(&mut args.output, o.matches.map(PathBuf::from));
        or(&mut args.timeouts_output, o.timeouts.map(PathBuf::from));
        or(&mut args.late_output, o.late.map(PathBuf::from));
        or(&mut args.rejects_output, o.rejects.map(PathBuf::from));
    }
    for (name, target) in f.aggregates.unwrap_or_default() {
        let given = args
            .aggregate_output
            .iter()
            .any(|s| s.split_once('=').is_some_and(|(n, _)| n == name));
        if !given {
            args.aggregate_output.push(format!("{name}={target}"));
        }
    }
    if let Some(c) = f.checkpoint {
        if args.checkpoint.is_none() {
            args.checkpoint = Some(PathBuf::from(&c.dir));
            if args.checkpoint_interval.is_none() {
                if let Some(i) = &c.interval {
                    args.checkpoint_interval = Some(
                        super::parse_duration(i)
                            .map_err(|e| format!("checkpoint.interval: {e}"))?,
                    );
                }
            }
            or(&mut args.checkpoint_records, c.records);
            args.fresh_patterns |= c.fresh_patterns.unwrap_or(false);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_file_expands_variables_and_resolves_paths() {
        let dir = std::env::temp_dir().join(format!("motif-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        std::env::set_var("MOTIF_CONFIG_TEST_PW", "s3cret");
        std::fs::write(
            &path,
            r#"
patterns = "patterns/"
input = "-"
workers = 2
[outputs]
matches = "postgres://u:${MOTIF_CONFIG_TEST_PW}@h/db?table=m"
late = "late.jsonl"
[aggregates]
a = "rows.parquet"
[checkpoint]
dir = "/var/state"
interval = "5s"
"#,
        )
        .unwrap();
        let f = load(&path).unwrap();
        assert_eq!(
            f.patterns.as_deref(),
            Some(dir.join("patterns/").to_str().unwrap())
        );
        assert_eq!(f.input.as_deref(), Some("-"));
        assert_eq!(f.workers, Some(2));
        let o = f.outputs.unwrap();
        assert_eq!(
            o.matches.as_deref(),
            Some("postgres://u:s3cret@h/db?table=m")
        );
        assert_eq!(
            o.late.as_deref(),
            Some(dir.join("late.jsonl").to_str().unwrap())
        );
        assert_eq!(
            f.aggregates.unwrap()["a"],
            dir.join("rows.parquet").display().to_string()
        );
        assert_eq!(f.checkpoint.unwrap().dir, "/var/state");

        std::fs::write(&path, "input = \"${MOTIF_CONFIG_TEST_UNSET_X}\"").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("MOTIF_CONFIG_TEST_UNSET_X is not set"), "{e}");
        std::fs::write(&path, "inptu = \"x\"").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("inptu"), "{e}");
        std::fs::write(&path, "input = ").unwrap();
        assert!(load(&path).is_err());
        assert_eq!(expand("a$$b$c", &path).unwrap(), "a$b$c");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
