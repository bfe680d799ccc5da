//! The `motif` command line: `run`, `check`, `explain`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::nfa::explain;
use crate::output;
use crate::pattern::PatternDecl;
use crate::runtime::{Engine, EngineOptions, Output};
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
    /// Find every match of the patterns in a stream of JSON events.
    Run {
        /// A pattern file, or a directory of `*.motif` files.
        patterns: PathBuf,
        /// Events as JSON lines; `-` reads standard input.
        #[arg(long, short, default_value = "-")]
        input: String,
        /// Also print timed-out partial matches (patterns with `within`).
        #[arg(long)]
        timeouts: bool,
        /// Stop at the first malformed record instead of reporting and skipping it.
        #[arg(long)]
        strict: bool,
        /// Write matches here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Write late events here (JSON lines) instead of standard error.
        #[arg(long)]
        late_output: Option<PathBuf>,
        /// Write rejected records here (JSON lines) instead of standard error.
        #[arg(long)]
        rejects_output: Option<PathBuf>,
        /// No summary line at the end.
        #[arg(long, short)]
        quiet: bool,
    },
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
        Command::Run {
            patterns,
            input,
            timeouts,
            strict,
            output,
            late_output,
            rejects_output,
            quiet,
        } => run(RunArgs {
            patterns,
            input,
            timeouts,
            strict,
            output,
            late_output,
            rejects_output,
            quiet,
        }),
        Command::Check { files } => check(&files),
        Command::Explain { file, dot } => explain_cmd(&file, dot),
    }
}

struct RunArgs {
    patterns: PathBuf,
    input: String,
    timeouts: bool,
    strict: bool,
    output: Option<PathBuf>,
    late_output: Option<PathBuf>,
    rejects_output: Option<PathBuf>,
    quiet: bool,
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

fn run(args: RunArgs) -> i32 {
    let decls = match load_patterns(&args.patterns) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut engine = match Engine::new(
        &decls,
        EngineOptions {
            timeouts: args.timeouts,
            ..EngineOptions::default()
        },
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("motif: {e}");
            return 1;
        }
    };
    let reader: Box<dyn BufRead> = if args.input == "-" {
        Box::new(BufReader::with_capacity(1 << 16, io::stdin()))
    } else {
        match File::open(&args.input) {
            Ok(f) => Box::new(BufReader::with_capacity(1 << 16, f)),
            Err(e) => {
                eprintln!("motif: cannot read input {}: {e}", args.input);
                return 1;
            }
        }
    };
    let origin = if args.input == "-" {
        "<stdin>".to_string()
    } else {
        args.input.clone()
    };
    let stdout = io::stdout();
    let mut matches_out: Box<dyn Write> = match open_out(&args.output) {
        Ok(Some(f)) => Box::new(f),
        Ok(None) => Box::new(BufWriter::with_capacity(1 << 16, stdout.lock())),
        Err(e) => {
            eprintln!("motif: cannot write output: {e}");
            return 1;
        }
    };
    let (mut late_out, mut rejects_out) =
        match (open_out(&args.late_output), open_out(&args.rejects_output)) {
            (Ok(l), Ok(r)) => (l, r),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("motif: cannot write output: {e}");
                return 1;
            }
        };

    let mut outs = Vec::new();
    let mut text = String::new();
    let mut line_no = 0u64;
    let mut buf = String::new();
    let mut reader = reader;
    let mut failed = None;
    loop {
        buf.clear();
        match reader.read_line(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                failed = Some(format!(
                    "motif: {origin}: read error after line {line_no}: {e}"
                ));
                break;
            }
        }
        line_no += 1;
        let line = buf.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        engine.push_json(line, &mut outs);
        if let Err(e) = write_outputs(
            &engine,
            &mut outs,
            &mut text,
            &origin,
            line_no,
            line,
            &mut matches_out,
            &mut late_out,
            &mut rejects_out,
        ) {
            failed = Some(format!("motif: cannot write output: {e}"));
            break;
        }
        if args.strict && engine.stats().rejected > 0 {
            failed = Some(format!(
                "motif: {origin}:{line_no}: rejected record (--strict): stopping"
            ));
            break;
        }
    }
    if failed.is_none() {
        engine.finish(&mut outs);
        if let Err(e) = write_outputs(
            &engine,
            &mut outs,
            &mut text,
            &origin,
            line_no,
            "",
            &mut matches_out,
            &mut late_out,
            &mut rejects_out,
        ) {
            failed = Some(format!("motif: cannot write output: {e}"));
        }
    }
    for w in [late_out.as_mut(), rejects_out.as_mut()]
        .into_iter()
        .flatten()
    {
        let _ = w.flush();
    }
    if let Err(e) = matches_out.flush() {
        failed.get_or_insert(format!("motif: cannot write output: {e}"));
    }
    let s = engine.stats();
    if !args.quiet {
        eprintln!(
            "motif: {} records, {} matches, {} timed out, {} late, {} rejected{}",
            s.records,
            s.matches,
            s.timeouts,
            s.late,
            s.rejected,
            if s.dropped_runs > 0 {
                format!(
                    ", {} partial matches dropped at the per-key cap",
                    s.dropped_runs
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

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    engine: &Engine,
    outs: &mut Vec<Output>,
    text: &mut String,
    origin: &str,
    line_no: u64,
    line: &str,
    matches_out: &mut dyn Write,
    late_out: &mut Option<BufWriter<File>>,
    rejects_out: &mut Option<BufWriter<File>>,
) -> io::Result<()> {
    for o in outs.drain(..) {
        text.clear();
        match o {
            Output::Match { pattern, key, m } => {
                output::write_match(text, engine.nfa(pattern), key.as_deref(), &m);
                matches_out.write_all(text.as_bytes())?;
            }
            Output::Late {
                pattern,
                raw,
                time,
                watermark,
            } => {
                output::write_late(text, &engine.nfa(pattern).name, &raw, time, watermark);
                match late_out {
                    Some(w) => w.write_all(text.as_bytes())?,
                    None => eprint!("{text}"),
                }
            }
            Output::Reject { pattern, reason } => {
                let reason = match pattern {
                    Some(p) => format!("pattern {}: {reason}", engine.nfa(p).name),
                    None => reason.to_string(),
                };
                match rejects_out {
                    Some(w) => {
                        output::write_reject(text, origin, line_no, &reason, line);
                        w.write_all(text.as_bytes())?;
                    }
                    None => eprintln!("motif: {origin}:{line_no}: rejected: {reason}"),
                }
            }
        }
    }
    Ok(())
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
