//! The `motif` command line: `run`, `check`, `explain`.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::gen::{generate, GenOptions};
use crate::nfa::explain;
use crate::output;
use crate::pattern::PatternDecl;
use crate::runtime::parallel::{Line, ParallelEngine, Stream};
use crate::runtime::{Engine, EngineOptions, Output, Stats};
use crate::source::{self, Format, Records};
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
    Run(RunArgs),
    /// Check pattern files; exits 1 if any has an error (errors on standard error).
    Check {
        /// Pattern files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the NFA a pattern file compiles to.
    Explain {
        /// A pattern file.
        file: PathBuf,
        /// Print Graphviz DOT instead of text.
        #[arg(long)]
        dot: bool,
    },
    /// Generate a synthetic event stream (JSON lines): keys, rate, disorder, seed.
    Gen(GenArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A pattern file, or a directory of `*.motif` files (all loaded at start-up).
    patterns: PathBuf,
    /// Events: a file, a directory (its files in name order) or `-` for standard input.
    /// JSON lines, or CSV with a header for `.csv` files (see --format).
    #[arg(long, short, default_value = "-")]
    input: String,
    /// Read the input files in turn, one record from each, each file a source partition with
    /// its own watermark (as a Kafka partition would be): a pattern's watermark is the
    /// minimum over files still being read. Without it files are read one after the other
    /// as one stream.
    #[arg(long)]
    partitioned: bool,
    /// With --partitioned: a file that yields nothing for this many milliseconds (a pipe,
    /// say) stops holding the watermark back until it does.
    #[arg(long, requires = "partitioned")]
    idle_timeout: Option<u64>,
    /// Input format: `jsonl` or `csv` (default: by file extension; stdin is JSON lines).
    #[arg(long, value_parser = ["jsonl", "csv"])]
    format: Option<String>,
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
    /// (by hash); 1 runs everything on one thread (default: all cores). Results do not
    /// depend on it.
    #[arg(long, short)]
    workers: Option<usize>,
    /// Deterministic output order: by input record, then by text.
    #[arg(long)]
    ordered: bool,
    /// Cap on partial matches per key; beyond it the oldest are dropped and counted.
    #[arg(long)]
    max_partial_matches: Option<usize>,
    /// Cap on partial matches of each pattern over all keys; at the cap, keys without
    /// state start no new ones (counted) until some end.
    #[arg(long)]
    max_partial_matches_total: Option<usize>,
    /// Write matches here instead of standard output.
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
    /// No status line and no summary at the end.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct GenArgs {
    /// Number of events.
    #[arg(long, short = 'n', default_value_t = 1000)]
    events: u64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Events per second of event time (sets the mean gap; 1000 = one per ms).
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
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check { files } => check(&files),
        Command::Explain { file, dot } => explain_cmd(&file, dot),
        Command::Gen(args) => gen_cmd(&args),
    }
}

/// Loads one file, or every `*.motif` file of a directory in name order.
pub fn load_patterns(path: &Path) -> Result<Vec<PatternDecl>, String> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "motif"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("{}: no *.motif files", path.display()));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut decls = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match syntax::load_file(&f) {
            Ok(mut d) => decls.append(&mut d),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(decls)
    } else {
        Err(errors.join("\n"))
    }
}

fn open_out(path: &Option<PathBuf>) -> io::Result<Option<BufWriter<File>>> {
    path.as_ref()
        .map(|p| File::create(p).map(BufWriter::new))
        .transpose()
}

/// Where output lines go.
struct Sinks {
    matches: Box<dyn Write>,
    timeouts: Option<BufWriter<File>>,
    late: Option<BufWriter<File>>,
    rejects: Option<BufWriter<File>>,
    error: Option<io::Error>,
}

impl Sinks {
    fn put(&mut self, stream: Stream, text: &str, human: Option<&str>, timed_out: bool) {
        let r = match stream {
            Stream::Match => match (&mut self.timeouts, timed_out) {
                (Some(w), true) => w.write_all(text.as_bytes()),
                _ => self.matches.write_all(text.as_bytes()),
            },
            Stream::Late => match &mut self.late {
                Some(w) => w.write_all(text.as_bytes()),
                None => {
                    eprint!("{text}");
                    Ok(())
                }
            },
            Stream::Reject => match (&mut self.rejects, human) {
                (Some(w), _) => w.write_all(text.as_bytes()),
                (None, Some(h)) => {
                    eprintln!("{h}");
                    Ok(())
                }
                (None, None) => {
                    eprint!("{text}");
                    Ok(())
                }
            },
        };
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    /// Writes out what is buffered now (a live input has paused); an error is kept for
    /// the end of the run.
    fn flush_now(&mut self) {
        if let Err(e) = self.flush() {
            self.error.get_or_insert(e);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(w) = &mut self.timeouts {
            w.flush()?;
        }
        if let Some(w) = &mut self.late {
            w.flush()?;
        }
        if let Some(w) = &mut self.rejects {
            w.flush()?;
        }
        self.matches.flush()
    }
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

    fn show(&mut self, s: &Stats, partial: Option<usize>, lag: Option<i64>) {
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
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
        }
    }
}

fn run(args: RunArgs) -> i32 {
    let mut decls = match load_patterns(&args.patterns) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
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
    let files = match source::expand(&args.input) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("motif: {e}");
            return 1;
        }
    };
    let format = match args.format.as_deref() {
        Some("csv") => Some(Format::Csv),
        Some(_) => Some(Format::JsonLines),
        None => None,
    };
    let mut records = if args.partitioned {
        Records::interleaved(files, format)
    } else {
        Records::new(files, format)
    };
    let options = EngineOptions {
        timeouts: args.timeouts || args.timeouts_output.is_some(),
        max_runs_per_key: args.max_partial_matches,
        shards: 1,
        max_partial_matches_total: args.max_partial_matches_total,
        source_partitions: records.partitions(),
        idle_timeout_ms: args.idle_timeout,
    };
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let matches: Box<dyn Write> = match open_out(&args.output) {
        Ok(Some(f)) => Box::new(f),
        Ok(None) => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
        Err(e) => {
            eprintln!("motif: cannot write output: {e}");
            return 1;
        }
    };
    let mut sinks = match (
        open_out(&args.timeouts_output),
        open_out(&args.late_output),
        open_out(&args.rejects_output),
    ) {
        (Ok(timeouts), Ok(late), Ok(rejects)) => Sinks {
            matches,
            timeouts,
            late,
            rejects,
            error: None,
        },
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("motif: cannot write output: {e}");
            return 1;
        }
    };
    let mut status = Status::new(args.quiet);
    let result = if workers <= 1 && !args.ordered {
        run_single(
            &decls,
            options,
            &mut records,
            &mut sinks,
            &mut status,
            args.strict,
        )
    } else {
        run_parallel(
            &decls,
            options,
            workers,
            args.ordered,
            &mut records,
            &mut sinks,
            &mut status,
            args.strict,
        )
    };
    status.clear();
    let (stats, mut failed) = match result {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("{msg}");
            return 1;
        }
    };
    if let Err(e) = sinks.flush() {
        failed.get_or_insert(format!("motif: cannot write output: {e}"));
    }
    if let Some(e) = sinks.error.take() {
        failed.get_or_insert(format!("motif: cannot write output: {e}"));
    }
    if !args.quiet {
        eprintln!(
            "motif: {} records, {} matches, {} timed out, {} late, {} rejected{}",
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
            }
        );
    }
    match failed {
        Some(msg) => {
            eprintln!("{msg}");
            2
        }
        None => 0,
    }
}

type RunResult = Result<(Stats, Option<String>), String>;

fn run_single(
    decls: &[PatternDecl],
    options: EngineOptions,
    records: &mut Records,
    sinks: &mut Sinks,
    status: &mut Status,
    strict: bool,
) -> RunResult {
    let mut engine = Engine::new(decls, options).map_err(|e| format!("motif: {e}"))?;
    let mut outs = Vec::new();
    let mut text = String::new();
    let mut failed = None;
    let clock = Clock::new(options.idle_timeout_ms);
    while let Some(r) = records.next_record() {
        let rec = match r {
            Ok(r) => r,
            Err(e) => {
                failed = Some(format!("motif: {e}"));
                break;
            }
        };
        engine.push_json_from(rec.json, rec.partition, clock.now_ms(), &mut outs);
        let rejected = write_outputs(
            &engine, &mut outs, &mut text, rec.origin, rec.line, rec.json, sinks,
        );
        if strict && rejected {
            failed = Some(format!(
                "motif: {}:{}: rejected record (--strict): stopping",
                rec.origin, rec.line
            ));
            break;
        }
        while let Some(p) = records.ended() {
            engine.end_source(p, &mut outs);
        }
        if clock.ticking() {
            engine.tick(clock.now_ms(), &mut outs);
        }
        write_outputs(&engine, &mut outs, &mut text, "", 0, "", sinks);
        if records.may_wait() {
            sinks.flush_now();
        }
        if status.due() {
            status.show(
                &engine.stats(),
                Some(engine.open_partial_matches()),
                engine.watermark_lag(),
            );
        }
    }
    if failed.is_none() {
        engine.finish(&mut outs);
        write_outputs(&engine, &mut outs, &mut text, "", 0, "", sinks);
    }
    Ok((engine.stats(), failed))
}

#[allow(clippy::too_many_arguments)]
fn run_parallel(
    decls: &[PatternDecl],
    options: EngineOptions,
    workers: usize,
    ordered: bool,
    records: &mut Records,
    sinks: &mut Sinks,
    status: &mut Status,
    strict: bool,
) -> RunResult {
    let mut engine =
        ParallelEngine::new(decls, options, workers, ordered).map_err(|e| format!("motif: {e}"))?;
    engine.set_strict(strict);
    let mut failed = None;
    let clock = Clock::new(options.idle_timeout_ms);
    while let Some(r) = records.next_record() {
        let rec = match r {
            Ok(r) => r,
            Err(e) => {
                failed = Some(format!("motif: {e}"));
                break;
            }
        };
        engine.push_json_from(
            rec.json,
            rec.partition,
            clock.now_ms(),
            rec.origin,
            rec.line,
            &mut to(sinks),
        );
        while let Some(p) = records.ended() {
            engine.end_source(p, &mut to(sinks));
        }
        if clock.ticking() {
            engine.tick(clock.now_ms(), &mut to(sinks));
        }
        if engine.stopped_at().is_some() {
            break;
        }
        if records.may_wait() {
            engine.flush(&mut to(sinks));
            sinks.flush_now();
        }
        if status.due() {
            status.show(&engine.stats(), None, engine.watermark_lag());
        }
    }
    let stats = engine
        .finish(&mut to(sinks))
        .map_err(|e| format!("motif: {e}"))?;
    if let Some(why) = engine.stopped_at() {
        failed.get_or_insert(format!("{why}; stopping (--strict)"));
    }
    Ok((stats, failed))
}

/// Where a parallel engine's lines go.
fn to(sinks: &mut Sinks) -> impl FnMut(Line) + '_ {
    |l: Line| sinks.put(l.stream, &l.text, l.human.as_deref(), l.timed_out)
}

/// Processing time for idle source partitions: milliseconds since the run started, read
/// only when an idle timeout is set.
struct Clock {
    start: std::time::Instant,
    idle_timeout: bool,
}

impl Clock {
    fn new(idle_timeout_ms: Option<u64>) -> Clock {
        Clock {
            start: std::time::Instant::now(),
            idle_timeout: idle_timeout_ms.is_some(),
        }
    }

    /// Whether idle partitions are looked for at all.
    fn ticking(&self) -> bool {
        self.idle_timeout
    }

    fn now_ms(&self) -> u64 {
        if self.idle_timeout {
            u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        }
    }
}

/// Writes the outputs of one record; returns whether it was rejected.
fn write_outputs(
    engine: &Engine,
    outs: &mut Vec<Output>,
    text: &mut String,
    origin: &str,
    line_no: u64,
    line: &str,
    sinks: &mut Sinks,
) -> bool {
    let mut rejected = false;
    for o in outs.drain(..) {
        text.clear();
        let r = output::write_output(text, |p| engine.nfa(p), &o, origin, line_no, line);
        rejected |= r.stream == Stream::Reject;
        sinks.put(r.stream, text, r.human.as_deref(), r.timed_out);
    }
    rejected
}

fn gen_cmd(args: &GenArgs) -> i32 {
    let opts = GenOptions {
        events: args.events,
        keys: args.keys.max(1),
        mean_gap_ms: (1000 / args.rate.max(1)).max(1),
        disorder_ms: args.disorder_ms,
        seed: args.seed,
        ..GenOptions::default()
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

fn check(files: &[PathBuf]) -> i32 {
    let mut code = 0;
    for f in files {
        match syntax::load_file(f) {
            Ok(decls) => {
                let mut schema = crate::event::Schema::new();
                let mut ok = true;
                for d in &decls {
                    if let Err(e) = crate::nfa::compile(d, &mut schema) {
                        eprintln!("{}: {e}", f.display());
                        ok = false;
                    }
                }
                if ok {
                    println!(
                        "ok: {} ({} pattern{})",
                        f.display(),
                        decls.len(),
                        if decls.len() == 1 { "" } else { "s" }
                    );
                } else {
                    code = 1;
                }
            }
            Err(LoadError::Io { path, source }) => {
                eprintln!("{}: {source}", path.display());
                code = 1;
            }
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    code
}

fn explain_cmd(file: &Path, dot: bool) -> i32 {
    let decls = match syntax::load_file(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut schema = crate::event::Schema::new();
    for d in &decls {
        match crate::nfa::compile(d, &mut schema) {
            Ok(nfa) => {
                if dot {
                    print!("{}", explain::to_dot(&nfa));
                } else {
                    println!("{}", explain::to_text(&nfa));
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return 1;
            }
        }
    }
    0
}
