//! The `motif` command line: `run`, `check`, `explain`, `gen`, `state`. `run` assembles a
//! [`crate::pipeline`] from its flags; the loop, the policies and checkpoints live there.

mod config;
mod metrics;
#[cfg(feature = "kafka")]
mod produce;
mod signals;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::checkpoint::store::Store;
use crate::checkpoint::Checkpoint;
use crate::gen::{generate, GenOptions};
use crate::nfa::explain;
use crate::output::OutputFormat;
use crate::pattern::PatternDecl;
use crate::pipeline::{self, CheckpointOptions, OutputSpec, PipelineOptions};
use crate::runtime::{EngineOptions, Stats};
use crate::source::{self, Format, Records, Source};
use crate::syntax::{self, LoadError};

/// motif: complex event processing with Flink CEP's pattern semantics.
#[derive(Debug, Parser)]
#[command(name = "motif", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find every match of the patterns in a stream of events.
    Run(Box<RunArgs>),
    /// Check pattern files; exits 1 if any has an error (errors on standard error).
    Check {
        /// Pattern files, or directories of `*.motif` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the NFA a pattern file compiles to.
    Explain {
        /// A pattern file, or a directory of `*.motif` files.
        file: PathBuf,
        /// Print Graphviz DOT instead of text.
        #[arg(long)]
        dot: bool,
    },
    /// Generate a synthetic event stream (JSON lines): keys, rate, disorder, seed.
    Gen(GenArgs),
    /// Print what the newest checkpoint of a checkpoint directory holds: per pattern the
    /// keys with state, open partial matches and watermark; per source its position; per
    /// sink what it committed.
    State {
        /// The directory given to `run --checkpoint`.
        dir: PathBuf,
    },
    /// Send each line of a JSON-lines file (`-`: standard input) as one message to a Kafka
    /// topic, `kafka://BROKERS/TOPIC[?key=FIELD]`, keyed by that field of the line (other
    /// options are librdkafka properties).
    #[cfg(feature = "kafka")]
    Produce {
        /// The file.
        file: PathBuf,
        /// The topic.
        topic: String,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A pattern file, or a directory of `*.motif` files (all loaded at start-up).
    #[arg(required_unless_present = "config")]
    patterns: Option<PathBuf>,
    /// A pipeline file (TOML): patterns, input, outputs, aggregate sinks, checkpoints, with
    /// `${NAME}` for environment variables and paths relative to the file; flags given here
    /// win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Events: a file, a directory (its files in name order), `-` for standard input, or
    /// `gen:events=N,keys=K,rate=R,disorder=MS,seed=S` for the generator's stream (as
    /// `motif gen` writes it). JSON lines, or CSV with a header for `.csv` files (see
    /// --format).
    /// (default: `-`)
    #[arg(long, short)]
    input: Option<String>,
    /// Read the input files in turn, one record from each, each file a source partition with
    /// its own watermark (as a Kafka partition would be): a pattern's watermark is the
    /// minimum over files still being read. Without it files are read one after the other
    /// as one stream.
    #[arg(long)]
    partitioned: bool,
    /// With --partitioned: an input that yields nothing for this many milliseconds (a named
    /// pipe in the input directory, which is passed over while silent) stops holding the
    /// watermark back until it does.
    /// With a Kafka input: a topic partition that yields nothing for this many milliseconds
    /// stops holding the watermark back until it does. Off by default: a partition read
    /// later than the others (after a rebalance, or assigned to another process) could
    /// then find its events late.
    #[arg(long)]
    idle_timeout: Option<u64>,
    /// A live input (standard input, named pipes, Kafka) silent this long, e.g. `5s`: from
    /// then on, until the next record, event time passes with processing time — every
    /// pattern's watermark moves as if an event had come that much later than the newest
    /// one, so a trailing `notFollowedBy` or a timeout is decided on a quiet stream. An
    /// event that then comes with an older time is late. Off by default (event time
    /// passes only with events); results then depend on when events arrive.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    quiet_advance: Option<std::time::Duration>,
    /// Input format: `jsonl` or `csv` (default: by file extension; stdin is JSON lines).
    #[arg(long, value_parser = ["jsonl", "csv"])]
    format: Option<String>,
    /// Output format of matches, timed-out matches, late events and rejects: `jsonl` (one
    /// JSON object per line) or `csv` (a header row, then one row per output).
    /// (default: `jsonl`)
    #[arg(long, value_parser = ["jsonl", "csv"])]
    output_format: Option<String>,
    /// Partition key fields (comma-separated dotted paths) for patterns without `key`.
    #[arg(long, value_delimiter = ',')]
    key: Vec<String>,
    /// Also print timed-out partial matches (patterns with `within`).
    #[arg(long)]
    timeouts: bool,
    /// Stop at the first rejected record instead of reporting and skipping it.
    #[arg(long)]
    strict: bool,
    /// Worker threads, each decoding a share of the input and matching a share of the keys
    /// (by hash); 1 runs everything on one thread (default: all cores; at most 256).
    /// Results do not depend on it.
    #[arg(long, short, value_parser = clap::value_parser!(u16).range(1..=MAX_WORKERS as i64))]
    workers: Option<u16>,
    /// The longest input line, in bytes without its line end: a longer line is rejected
    /// (reported with its line number, counted) and its rest skipped unread into memory.
    #[arg(long, value_name = "BYTES", default_value_t = source::DEFAULT_MAX_LINE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..=(1u64 << 32)))]
    max_line_bytes: u64,
    /// Deterministic output order: by input record, then by text.
    #[arg(long)]
    ordered: bool,
    /// Cap on partial matches per key (for a pattern on the compact matcher: on the events
    /// it holds over all steps); beyond it the oldest are dropped (counted, and warned about
    /// once on stderr). 0: no cap.
    #[arg(long, value_name = "N", default_value_t = crate::nfa::matcher::DEFAULT_MAX_RUNS)]
    max_partial_matches: usize,
    /// Cap on partial matches of each pattern over all keys; at the cap, keys without
    /// state start no new ones until some end (counted, and warned about once on stderr).
    /// 0: no cap [default: no cap].
    #[arg(long, value_name = "N")]
    max_partial_matches_total: Option<usize>,
    /// Write matches here instead of standard output: a file, a table
    /// (`postgres://…?table=T`, `mysql://…?table=T`, with `&create=true` to create it) or a
    /// Parquet directory (`matches.parquet`), the last two in batches (see --batch-records).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write timed-out partial matches here instead of with the matches (implies
    /// --timeouts).
    #[arg(long)]
    timeouts_output: Option<PathBuf>,
    /// Write late events here (JSON lines) instead of standard error.
    #[arg(long)]
    late_output: Option<PathBuf>,
    /// Write rejected records here (JSON lines) instead of standard error.
    #[arg(long)]
    rejects_output: Option<PathBuf>,
    /// Write the rows of aggregate NAME to TARGET (repeatable): a file, or a database table
    /// `postgres://USER@HOST:PORT/DB?table=T[&create=true]` or
    /// `mysql://USER@HOST:PORT/DB?table=T[&create=true]`, written a batch per transaction,
    /// exactly once. An aggregate without one writes to standard output.
    #[arg(long, value_name = "NAME=TARGET")]
    aggregate_output: Vec<String>,
    /// With `-o` naming a table (`postgres://…?table=T`, `mysql://…?table=T`) or a Parquet
    /// directory (`matches.parquet`): a batch of matches after every N records (and at
    /// each checkpoint and the end), each in one transaction or file.
    /// (default: 10,000)
    #[arg(long, value_name = "N")]
    batch_records: Option<u64>,
    /// A row a database refuses: `skip` it (reported with the database's reason on the
    /// rejects output) or `stop` the run.
    /// (default: `skip`)
    #[arg(long, value_parser = ["skip", "stop"])]
    on_db_error: Option<String>,
    /// No status line and no summary at the end.
    #[arg(long, short)]
    quiet: bool,
    /// Serve the run's counters and gauges (per partition for a Kafka scale-out member) as
    /// a Prometheus text endpoint on this address, e.g. `127.0.0.1:9464`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Take checkpoints in this directory, and resume from its newest one: a run that was
    /// killed and is started again with the same command writes exactly what an
    /// uninterrupted run writes to its output files (standard output and error: at least
    /// once).
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
    /// Time between checkpoints, e.g. `10s`, `500ms`, `2m` (default 10s).
    #[arg(long, requires = "checkpoint", value_parser = parse_duration, value_name = "DURATION")]
    checkpoint_interval: Option<Duration>,
    /// Also take a checkpoint after every N records.
    #[arg(long, requires = "checkpoint", value_name = "N")]
    checkpoint_records: Option<u64>,
    /// On restore, start patterns that changed since the checkpoint without state (and drop
    /// the state of patterns no longer loaded) instead of refusing to start.
    #[arg(long, requires = "checkpoint")]
    fresh_patterns: bool,
}

/// The most worker threads `--workers` takes: each has its own buffers and channels, and
/// more threads than cores only add switching.
const MAX_WORKERS: usize = 256;

/// Parses `10s`, `500ms`, `2m`, `1h` or a number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m or h)")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too long"))
}

#[derive(Debug, clap::Args)]
struct GenArgs {
    /// Number of events.
    #[arg(long, short = 'n', default_value_t = 1000)]
    events: u64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Events per second of event time, 1 to 1000000 (sets the mean gap; 1000 = one per
    /// ms).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Bounded disorder: each event's time moves back by up to this many ms.
    #[arg(long, default_value_t = 0)]
    disorder_ms: u64,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Runs the CLI with the process arguments; returns the exit code.
pub fn main() -> i32 {
    signals::default_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Check { files } => check(&files),
        Command::Explain { file, dot } => explain_cmd(&file, dot),
        Command::Gen(args) => gen_cmd(&args),
        Command::State { dir } => state_cmd(&dir),
        #[cfg(feature = "kafka")]
        Command::Produce { file, topic } => produce::produce(&file, &topic),
    }
}

/// The pattern files `path` names: the file itself, or every `*.motif` file of a directory
/// in name order.
fn pattern_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("motif: {}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "motif"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("motif: {}: no *.motif files", path.display()));
    }
    Ok(files)
}

/// A load error as the command line prints it: diagnostics rustc-style (they begin with
/// the file's name), anything else after `motif:`.
fn load_error(e: &LoadError) -> String {
    match e {
        LoadError::Invalid(_) => e.to_string(),
        _ => format!("motif: {e}"),
    }
}

/// Loads one file, or every `*.motif` file of a directory in name order: its patterns and
/// aggregates (an aggregate may read patterns of other files of the directory; a pattern
/// name is declared once over all of them).
pub fn load_program(path: &Path) -> Result<syntax::Program, String> {
    let files = pattern_files(path)?;
    syntax::load_program_files(&files)
        .map_err(|errors| errors.iter().map(load_error).collect::<Vec<_>>().join("\n"))
}

/// A status line on stderr when it is a terminal, at most a few times a second.
struct Status {
    enabled: bool,
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Status {
    fn new(quiet: bool) -> Status {
        let now = Instant::now();
        Status {
            enabled: !quiet && io::stderr().is_terminal(),
            started: now,
            last: now,
            shown: false,
        }
    }

    fn due(&mut self) -> bool {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(250) {
            return false;
        }
        self.last = Instant::now();
        true
    }

    fn show(
        &mut self,
        s: &Stats,
        partial: Option<usize>,
        lag: Option<i64>,
        aggs: Option<pipeline::AggregateProgress>,
    ) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let partial = partial.map_or("-".to_string(), |p| p.to_string());
        let lag = lag.map_or("-".to_string(), |l| format!("{l}ms"));
        eprint!(
            "\r\x1b[2Kmotif: {} records ({:.0}/s), watermark lag {lag}, {partial} open partial matches, {} matches, {} late, {} rejected",
            s.records,
            s.records as f64 / secs,
            s.matches,
            s.late,
            s.rejected
        );
        if let Some(a) = aggs {
            eprint!(", {} batches ({} rows)", a.batches, a.rows);
            if a.retries > 0 {
                eprint!(", {} database retries", a.retries);
            }
        }
        self.shown = true;
    }

    /// Per partition (a Kafka scale-out member's): how many, and the largest offset lag.
    fn show_partitions(&self, parts: &[pipeline::PartitionProgress]) {
        if !self.enabled || parts.is_empty() {
            return;
        }
        let lag = parts.iter().filter_map(|p| p.offset_lag).max();
        eprint!(
            ", {} partitions (offset lag {})",
            parts.len(),
            lag.map_or("-".to_string(), |l| format!("≤ {l}"))
        );
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
        }
    }
}

/// The warning given the first time a partial-match cap drops something.
fn cap_warning(args: &RunArgs) -> String {
    let total = match args.max_partial_matches_total {
        Some(n) if n > 0 => format!(", --max-partial-matches-total {n} over all keys"),
        _ => String::new(),
    };
    format!(
        "motif: warning: a partial-match cap dropped partial matches (--max-partial-matches {} per key{total}); \
         matches they would have completed are missing; the summary counts them (0 lifts a cap)",
        args.max_partial_matches
    )
}

/// Whether two paths name one file (both exist and have the same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// Whether two paths are the same once made absolute (`.` dropped): for files that do not
/// exist yet.
fn lexically_same(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| std::path::absolute(p).map(|p| p.components().collect::<PathBuf>());
    matches!((norm(a), norm(b)), (Ok(x), Ok(y)) if x == y)
}

/// Checks, before any output file is created: every input file can be opened; no output is
/// an input, none would be created in an input directory (the next run would read it), and
/// no two outputs are one file.
fn check_paths(args: &RunArgs, input: &str, inputs: &[Option<PathBuf>]) -> Result<(), String> {
    for p in inputs.iter().flatten() {
        // A named pipe is not opened here: a writer that saw this reader come and go would
        // write into a pipe with no reader.
        let check = if source::is_fifo(p) {
            std::fs::metadata(p).map(drop)
        } else {
            source::open_file(p).map(drop)
        };
        check.map_err(|e| format!("cannot read input {}: {e}", p.display()))?;
    }
    let mut outputs: Vec<(&str, &Path)> = [
        ("--output", &args.output),
        ("--timeouts-output", &args.timeouts_output),
        ("--late-output", &args.late_output),
        ("--rejects-output", &args.rejects_output),
    ]
    .into_iter()
    .filter_map(|(flag, p)| p.as_deref().map(|p| (flag, p)))
    .collect();
    // Aggregate rows written to files (not to a database URL).
    outputs.extend(
        args.aggregate_output
            .iter()
            .filter_map(|spec| spec.split_once('=').map(|(_, target)| target))
            .filter(|target| !target.contains("://"))
            .map(|target| ("--aggregate-output", Path::new(target))),
    );
    let input_dir = Path::new(input);
    for (i, (flag, out)) in outputs.iter().enumerate() {
        if let Some(input) = inputs.iter().flatten().find(|p| same_file(p, out)) {
            return Err(format!(
                "{flag} {} is the input {}: writing it would destroy what is to be read",
                out.display(),
                input.display()
            ));
        }
        if input_dir.is_dir() {
            let parent = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if same_file(parent, input_dir) {
                return Err(format!(
                    "{flag} {} is in the input directory {}: a later run would read it as input",
                    out.display(),
                    input_dir.display()
                ));
            }
        }
        for (other_flag, other) in &outputs[..i] {
            if lexically_same(other, out) || same_file(other, out) {
                return Err(format!(
                    "{other_flag} and {flag} are both {}: give each output its own file",
                    out.display()
                ));
            }
        }
    }
    Ok(())
}

/// The Kafka source of `input`, when motif is built with Kafka.
fn open_kafka(input: &str) -> Result<Box<dyn Source>, String> {
    #[cfg(feature = "kafka")]
    {
        source::kafka::KafkaSource::open(input)
            .map(|k| Box::new(k) as Box<dyn Source>)
            .map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "kafka"))]
    {
        Err(format!(
            "{input}: this motif is built without Kafka (cargo feature `kafka`)"
        ))
    }
}

/// Whether `input` is a Kafka URL with a `state_topic` (a scale-out group member).
fn group_mode(input: &str) -> bool {
    #[cfg(feature = "kafka")]
    {
        input.starts_with(source::kafka::PREFIX)
            && source::kafka::KafkaSpec::parse(input).is_ok_and(|s| s.state_topic.is_some())
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = input;
        false
    }
}

/// Runs this process as a member of a scale-out group ([`pipeline::group`]).
fn run_group(
    decls: &[crate::pattern::PatternDecl],
    options: &PipelineOptions,
    input: &str,
    spec: &OutputSpec,
    stop: &std::sync::atomic::AtomicBool,
    show: &mut dyn FnMut(&pipeline::Progress<'_>),
) -> Result<pipeline::Summary, pipeline::PipelineError> {
    #[cfg(feature = "kafka")]
    {
        pipeline::group::run(
            decls,
            options,
            input,
            spec,
            stop,
            &mut |n| eprintln!("{n}"),
            show,
        )
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (decls, options, spec, stop, show);
        Err(pipeline::PipelineError::Source(source::SourceError::Spec(
            format!("{input}: this motif is built without Kafka (cargo feature `kafka`)"),
        )))
    }
}

fn run(mut args: RunArgs) -> i32 {
    if let Some(path) = args.config.clone() {
        match config::load(&path).map(|f| config::apply(&mut args, f)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("motif: {}: {e}", path.display());
                return 1;
            }
            Err(e) => {
                eprintln!("motif: {e}");
                return 1;
            }
        }
    }
    let Some(pattern_path) = args.patterns.clone() else {
        eprintln!(
            "motif: no patterns: give a pattern file or directory, or `patterns` in --config"
        );
        return 1;
    };
    let input = args.input.clone().unwrap_or_else(|| "-".to_string());
    if args.idle_timeout.is_some() && !args.partitioned && !input.starts_with("kafka://") {
        eprintln!("motif: --idle-timeout needs --partitioned or a Kafka input (kafka://…)");
        return 2;
    }
    let syntax::Program {
        patterns: mut decls,
        aggregates,
        warnings,
    } = match load_program(&pattern_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    for w in &warnings {
        eprintln!("{w}");
    }
    if let Some(bad) = args
        .key
        .iter()
        .find(|k| k.is_empty() || k.split('.').any(str::is_empty))
    {
        eprintln!(
            "motif: --key: `{bad}` is not a field name (comma-separated dotted paths, e.g. --key user.id,region)"
        );
        return 2;
    }
    let mut aggregate_outputs = Vec::new();
    for spec in &args.aggregate_output {
        match spec.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                aggregate_outputs.push((name.to_string(), path.to_string()));
            }
            _ => {
                eprintln!("motif: --aggregate-output {spec}: expected NAME=FILE");
                return 1;
            }
        }
    }
    if !args.key.is_empty() {
        let key: Vec<Vec<String>> = args
            .key
            .iter()
            .map(|k| k.split('.').map(str::to_string).collect())
            .collect();
        for d in decls.iter_mut().filter(|d| d.key.is_empty()) {
            d.key = key.clone();
        }
    }
    // A Kafka input with a state topic: this process is one member of a scale-out group.
    let group = group_mode(&input);
    let mut records: Box<dyn Source> = if group {
        Box::new(Records::new(Vec::new(), None))
    } else if input.starts_with("kafka://") {
        match open_kafka(&input) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("motif: {e}");
                return 1;
            }
        }
    } else if input.starts_with(source::gen::PREFIX) {
        match source::gen::GenSource::new(&input) {
            Ok(g) => Box::new(g),
            Err(e) => {
                eprintln!("motif: {e}");
                return 1;
            }
        }
    } else {
        let files = match source::expand(&input) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("motif: {e}");
                return 1;
            }
        };
        // Before any output is created (or truncated): every input opens, none is an output.
        if let Err(e) = check_paths(&args, &input, &files) {
            eprintln!("motif: {e}");
            return 1;
        }
        let format = match args.format.as_deref() {
            Some("csv") => Some(Format::Csv),
            Some(_) => Some(Format::JsonLines),
            None => None,
        };
        let max_line = usize::try_from(args.max_line_bytes).unwrap_or(usize::MAX);
        if args.partitioned {
            Box::new(Records::interleaved(files, format).max_line_bytes(max_line))
        } else {
            Box::new(Records::new(files, format).max_line_bytes(max_line))
        }
    };
    let engine = EngineOptions {
        timeouts: args.timeouts || args.timeouts_output.is_some(),
        max_runs_per_key: Some(args.max_partial_matches),
        shards: 1,
        max_partial_matches_total: args.max_partial_matches_total,
        source_partitions: records.partitions(),
        idle_timeout_ms: args.idle_timeout,
        ..EngineOptions::default()
    };
    let workers = args.workers.map_or_else(
        || {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(MAX_WORKERS)
        },
        usize::from,
    );
    let checkpoint = match &args.checkpoint {
        None => None,
        Some(dir) => Some(CheckpointOptions {
            dir: dir.clone(),
            interval: args
                .checkpoint_interval
                .unwrap_or(pipeline::DEFAULT_CHECKPOINT_INTERVAL),
            every_records: args.checkpoint_records,
            fresh_patterns: args.fresh_patterns,
        }),
    };
    let options = PipelineOptions {
        engine,
        workers,
        ordered: args.ordered,
        strict: args.strict,
        format: if args.output_format.as_deref() == Some("csv") {
            OutputFormat::Csv
        } else {
            OutputFormat::JsonLines
        },
        checkpoint,
        aggregates,
        batch_records: args
            .batch_records
            .unwrap_or(pipeline::DEFAULT_BATCH_RECORDS),
        quiet_advance_ms: args
            .quiet_advance
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        db_errors: if args.on_db_error.as_deref() == Some("stop") {
            crate::sink::table::DbErrorPolicy::Stop
        } else {
            crate::sink::table::DbErrorPolicy::Skip
        },
    };
    let spec = OutputSpec {
        matches: args.output.clone(),
        timeouts: args.timeouts_output.clone(),
        late: args.late_output.clone(),
        rejects: args.rejects_output.clone(),
        aggregates: aggregate_outputs,
    };
    let stop = signals::install();
    let mut status = Status::new(args.quiet);
    // The first partial match a cap drops is said at once, even with --quiet: matches may be
    // missing from then on.
    let mut warned_caps = false;
    let metrics = match args.metrics.as_deref().map(metrics::serve) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            eprintln!(
                "motif: --metrics {}: cannot listen there: {e}",
                args.metrics.as_deref().unwrap_or_default()
            );
            return 1;
        }
    };
    // The figures the endpoint serves, taken at most five times a second.
    let mut metrics_taken: Option<Instant> = None;
    let mut show = |p: &pipeline::Progress<'_>| {
        if let Some(m) = &metrics {
            if metrics_taken.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
                metrics_taken = Some(Instant::now());
                m.update(p);
            }
        }
        if p.stats.dropped_runs > 0 && !warned_caps {
            warned_caps = true;
            status.clear();
            eprintln!("{}", cap_warning(&args));
        }
        if status.due() {
            status.show(p.stats, p.partial_matches, p.watermark_lag, p.aggregates);
            status.show_partitions(p.partitions);
        }
    };
    let result = if group {
        run_group(&decls, &options, &input, &spec, stop, &mut show)
    } else {
        pipeline::run(
            &decls,
            &options,
            records.as_mut(),
            &spec,
            stop,
            &mut |n| eprintln!("{n}"),
            &mut show,
        )
    };
    status.clear();
    if let Ok(s) = &result {
        if s.stats.dropped_runs > 0 && !warned_caps && !s.already_finished {
            eprintln!("{}", cap_warning(&args));
        }
    }
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("motif: {e}");
            return 1;
        }
    };
    let stats = summary.stats;
    if !args.quiet && !summary.already_finished {
        eprintln!(
            "motif: {} records, {} matches, {} timed out, {} late, {} rejected{}{}",
            stats.records,
            stats.matches,
            stats.timeouts,
            stats.late,
            stats.rejected,
            if stats.dropped_runs > 0 {
                format!(
                    ", {} partial matches dropped or not started at the caps",
                    stats.dropped_runs
                )
            } else {
                String::new()
            },
            if summary.interrupted {
                " (interrupted: stopped at a record boundary)"
            } else {
                ""
            }
        );
        if summary.possible_duplicates > 0 {
            eprintln!(
                "motif: {} matches delivered again after taking partitions over from a process that stopped without handing them over (possible duplicates)",
                summary.possible_duplicates
            );
        }
        if let Some(a) = summary.aggregates {
            eprintln!(
                "motif: batches: {} rows in {} batches this run{}{}",
                a.rows,
                a.batches,
                if a.skipped > 0 {
                    format!(", {} batches already written (replays) skipped", a.skipped)
                } else {
                    String::new()
                },
                if a.retries > 0 {
                    format!(", {} database connection retries", a.retries)
                } else {
                    String::new()
                }
            );
        }
    }
    match summary.failed {
        Some(msg) => {
            eprintln!("{msg}");
            2
        }
        None => 0,
    }
}

/// `motif state DIR`: what the newest readable checkpoint holds.
fn state_cmd(dir: &Path) -> i32 {
    if !dir.is_dir() {
        eprintln!("motif: {}: no such checkpoint directory", dir.display());
        return 1;
    }
    let store = match Store::open(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("motif: {e}");
            return 1;
        }
    };
    let (newest, skipped) = match store.load_newest(Checkpoint::from_bytes) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("motif: {e}");
            return 1;
        }
    };
    for s in &skipped {
        eprintln!(
            "motif: checkpoint {} skipped: {}",
            s.path.display(),
            s.error
        );
    }
    let Some((_, cp)) = newest else {
        eprintln!("motif: {}: no checkpoint yet", dir.display());
        return 1;
    };
    print!("{}", describe_checkpoint(&store, &cp));
    0
}

/// A checkpoint as text for a person.
fn describe_checkpoint(store: &Store, cp: &Checkpoint) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let when = chrono::DateTime::from_timestamp_millis(cp.taken_at_ms as i64)
        .map_or_else(|| cp.taken_at_ms.to_string(), |t| t.to_rfc3339());
    let _ = writeln!(
        s,
        "checkpoint {} ({}), taken {when}{}",
        cp.id,
        store.path_of(cp.id).display(),
        if cp.finished { ", run finished" } else { "" }
    );
    let st = &cp.stats;
    let _ = writeln!(
        s,
        "records {}: {} matches, {} timed out, {} late, {} rejected, {} partial matches dropped",
        st.records, st.matches, st.timeouts, st.late, st.rejected, st.dropped_runs
    );
    let wm = |w: i64| match w {
        i64::MIN => "none yet".to_string(),
        i64::MAX => "end of input".to_string(),
        w => w.to_string(),
    };
    match &cp.engine {
        None => {
            let _ = writeln!(
                s,
                "patterns: no state left (the input was processed to its end)"
            );
        }
        Some(e) => {
            for p in &e.patterns {
                let _ = writeln!(
                    s,
                    "pattern {}: {} keys with state, {} open partial matches, {} events waiting, watermark {}, fingerprint {:016x}",
                    p.name,
                    p.keys(),
                    p.partial_matches(),
                    p.waiting_events(),
                    wm(p.watermark()),
                    p.fingerprint
                );
            }
        }
    }
    if let Some(src) = &cp.source {
        for (i, input) in src.inputs.iter().enumerate() {
            let _ = writeln!(
                s,
                "source {i}: {} at byte {}, line {}{}",
                input.origin,
                input.offset,
                input.line,
                if input.ended { ", read to its end" } else { "" }
            );
        }
    }
    for k in &cp.sinks {
        let _ = writeln!(
            s,
            "sink {}: {} committed {} bytes (epoch {})",
            k.role, k.target, k.bytes, k.epoch
        );
    }
    s
}

fn gen_cmd(args: &GenArgs) -> i32 {
    if args.keys == 0 {
        eprintln!("motif: gen: --keys must be at least 1");
        return 2;
    }
    let opts = match (GenOptions {
        events: args.events,
        keys: args.keys,
        disorder_ms: args.disorder_ms,
        seed: args.seed,
        ..GenOptions::default()
    })
    .with_rate(args.rate)
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("motif: gen: --rate: {e}");
            return 2;
        }
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => match File::create(p) {
            Ok(f) => Box::new(BufWriter::new(f)),
            Err(e) => {
                eprintln!("motif: {}: {e}", p.display());
                return 1;
            }
        },
        None => Box::new(BufWriter::new(io::stdout())),
    };
    let mut err = None;
    generate(&opts, |l| {
        if err.is_none() {
            if let Err(e) = writeln!(out, "{l}") {
                err = Some(e);
            }
        }
    });
    if let Some(e) = err.or_else(|| out.flush().err()) {
        eprintln!("motif: cannot write: {e}");
        return 1;
    }
    0
}

fn check(args: &[PathBuf]) -> i32 {
    let mut code = 0;
    // A directory stands for its `*.motif` files, which run together.
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for arg in args {
        match pattern_files(arg) {
            Ok(f) => {
                if arg.is_dir() {
                    dirs.push(f.clone());
                }
                files.extend(f);
            }
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    // Aggregates may read the patterns of any of the files.
    let all: Vec<PatternDecl> = files
        .iter()
        .filter_map(|f| syntax::load_file(f).ok())
        .flatten()
        .collect();
    for f in &files {
        let loaded = std::fs::read_to_string(f)
            .map_err(|source| LoadError::Io {
                path: f.clone(),
                source,
            })
            .and_then(|src| {
                syntax::load_program_str(&f.display().to_string(), &src, &all)
                    .map_err(LoadError::Invalid)
            });
        match loaded {
            Ok(syntax::Program {
                patterns: decls,
                aggregates,
                warnings,
            }) => {
                for w in &warnings {
                    eprintln!("{w}");
                }
                let mut schema = crate::event::Schema::new();
                let mut ok = true;
                for d in &decls {
                    if let Err(e) = crate::nfa::compile(d, &mut schema) {
                        eprintln!("{}: {e}", f.display());
                        ok = false;
                    }
                }
                if ok {
                    let aggs = match aggregates.len() {
                        0 => String::new(),
                        1 => ", 1 aggregate".to_string(),
                        n => format!(", {n} aggregates"),
                    };
                    println!(
                        "ok: {} ({} pattern{}{aggs})",
                        f.display(),
                        decls.len(),
                        if decls.len() == 1 { "" } else { "s" }
                    );
                } else {
                    code = 1;
                }
            }
            Err(e) => {
                eprintln!("{}", load_error(&e));
                code = 1;
            }
        }
    }
    // The files of a directory run together: names must be unique over them.
    for dir in &dirs {
        if let Err(errors) = syntax::load_program_files(dir) {
            for e in errors
                .iter()
                .filter(|e| matches!(e, LoadError::Duplicate { .. }))
            {
                eprintln!("{}", load_error(e));
                code = 1;
            }
        }
    }
    code
}

fn explain_cmd(path: &Path, dot: bool) -> i32 {
    let decls = match load_program(path) {
        Ok(p) => p.patterns,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut schema = crate::event::Schema::new();
    // As `motif run` compiles it without `--timeouts`.
    let options = crate::nfa::CompileOptions {
        reports_timeouts: false,
        compact_matcher: true,
    };
    for d in &decls {
        match crate::nfa::compile_with(d, &mut schema, options) {
            Ok(nfa) => {
                if dot {
                    print!("{}", explain::to_dot(&nfa));
                } else {
                    println!("{}", explain::to_text(&nfa));
                }
            }
            Err(e) => {
                eprintln!("motif: {}: {e}", path.display());
                return 1;
            }
        }
    }
    0
}
