//! Input sources: JSON lines or CSV from files, directories (files in name order) and stdin,
//! as a stream of records with their origin and line number.

pub mod csv;
pub mod gen;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub(crate) mod kafka_batch;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    JsonLines,
    /// Comma-separated values with a header line; each row becomes a JSON object.
    Csv,
}

impl Format {
    /// The format a file name suggests (`.csv` → CSV, anything else JSON lines).
    pub fn guess(path: &Path) -> Format {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            Format::Csv
        } else {
            Format::JsonLines
        }
    }
}

/// The longest record line read by default, in bytes (without its line end): a longer line
/// is rejected with its line number, and its rest is skipped without being held in memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

/// A UTF-8 byte-order mark, stripped from the start of an input.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How much of an unreadable line a reject shows.
const SHOWN_BYTES: usize = 1024;

/// Marks a record the source could not read (invalid UTF-8, a line over the limit): such a
/// record is passed on as a NUL, the reason, a NUL and the line as far as it can be shown.
/// No JSON text begins with a NUL, so the engine rejects it like any malformed record, in the
/// same place among the records (the same step, with `--strict`, `--ordered` and any number of
/// workers), and names the reason ([`unreadable_reason`]).
const UNREADABLE: char = '\0';

/// The text of a record the source could not read, for `reason`: `line` is what was read
/// of it, `more` whether the line went on past that.
fn unreadable(reason: &str, line: &[u8], more: bool) -> String {
    let cut = line.len().min(SHOWN_BYTES);
    let mut shown = String::from_utf8_lossy(&line[..cut]).into_owned();
    if more || cut < line.len() {
        shown.push('…');
    }
    format!("{UNREADABLE}{reason}{UNREADABLE}{shown}")
}

/// The reason and the shown text of a record the source could not read; `None` for any
/// other text.
pub(crate) fn unreadable_reason(text: &str) -> Option<(&str, &str)> {
    text.strip_prefix(UNREADABLE)?.split_once(UNREADABLE)
}

/// Why reading input failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or directory could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A directory holds no input files.
    #[error("{0}: no input files in this directory")]
    EmptyDir(String),
    /// An input argument that names no input (a malformed `gen:` spec).
    #[error("{0}")]
    Spec(String),
    /// A saved position is of other inputs than these ([`Records::seek`]).
    #[error("the saved source position does not fit these inputs: {what}")]
    PositionMismatch {
        /// What differs: the mode, the number of inputs, or an input's origin.
        what: String,
    },
    /// A Kafka source failed to start (brokers, topics, group).
    #[error("{target}: {why}")]
    Kafka {
        /// The source's URL (without its options).
        target: String,
        /// Why.
        why: String,
    },
    /// A saved position is not one a [`Records`] could have been at.
    #[error("invalid source position: {0}")]
    InvalidPosition(String),
    /// A file is shorter than the offset a saved position has read of it.
    #[error("{path}: cannot continue after byte {offset}: the file is now {len} bytes (truncated or replaced)")]
    Truncated {
        /// The file.
        path: String,
        /// Bytes of it the position had consumed.
        offset: u64,
        /// Its length now.
        len: u64,
    },
    /// A file no longer has a line end just before the offset a saved position has read.
    #[error("{path}: cannot continue after byte {offset}: no line ends there now (the file was changed or replaced)")]
    NotAtLineStart {
        /// The file.
        path: String,
        /// Bytes of it the position had consumed.
        offset: u64,
    },
}

/// The files an input argument names: `-` (stdin), a file, or every file of a directory in
/// name order (hidden files skipped).
pub fn expand(input: &str) -> Result<Vec<Option<PathBuf>>, SourceError> {
    if input == "-" {
        return Ok(vec![None]);
    }
    let p = Path::new(input);
    if p.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| SourceError::Io {
                path: input.to_string(),
                source: e,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                (f.is_file() || is_fifo(f))
                    && !f
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(SourceError::EmptyDir(input.to_string()));
        }
        Ok(files.into_iter().map(Some).collect())
    } else {
        Ok(vec![Some(p.to_path_buf())])
    }
}

/// Whether `p` is a named pipe (FIFO): a live input, read as it comes.
pub(crate) fn is_fifo(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(p).is_ok_and(|m| m.file_type().is_fifo())
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        false
    }
}

/// Opens an input file for reading. A named pipe is opened without waiting for a writer
/// (the open would block until one comes), then read with blocking reads as any file.
pub(crate) fn open_file(p: &Path) -> io::Result<File> {
    #[cfg(unix)]
    if is_fifo(p) {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)?;
        // SAFETY: fcntl on a file descriptor this `File` owns, reading then clearing one
        // status flag.
        unsafe {
            let fd = f.as_raw_fd();
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        return Ok(f);
    }
    File::open(p)
}

/// Where a source stands after the last record it returned: enough to reopen its inputs and
/// go on ([`Records::position`], [`Records::seek`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourcePosition {
    /// Interleaved (each input a partition) or sequential.
    pub interleaved: bool,
    /// Per input, in input order.
    pub inputs: Vec<InputPosition>,
    /// Interleaved: the input whose turn is next. Sequential: index of the input being read
    /// (inputs before it are done; the number of inputs once all are done).
    pub next: usize,
}

/// Where one input of a source stands ([`SourcePosition::inputs`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputPosition {
    /// The file's path as given, or `<stdin>`.
    pub origin: String,
    /// Bytes of it consumed (records returned plus skipped blank and header lines), 0 if not
    /// opened yet. For standard input, the bytes consumed over all runs.
    pub offset: u64,
    /// Lines consumed (the line number of the last record returned).
    pub line: u64,
    /// Done with: it will not be read again and has no [`Records::ended`] notice to come.
    ///
    /// Interleaved: read to its end (or given up after a read error) *and* its notice
    /// already handed out by [`Records::ended`]. An input whose end was found but whose
    /// notice is still pending is saved as not ended, at the offset of its end: the restored
    /// source finds its end again on the input's next turn and reports it then, exactly
    /// once. Take positions after draining `ended()` (as a caller does after each record)
    /// and no notice is pending, so the restored stream is exactly the uninterrupted one.
    ///
    /// Sequential: `true` for the inputs before [`SourcePosition::next`], else `false`.
    pub ended: bool,
}

/// Reads records one at a time from a list of files (or stdin): one after the other, or
/// in turn (one record from each) when each file is a source partition of its own.
///
/// [`Records::position`] says where it stands, to be saved in a checkpoint;
/// [`Records::seek`] continues a fresh `Records` over the same inputs from there.
pub struct Records {
    /// Every input, in order (`None` is stdin).
    inputs: Vec<Option<PathBuf>>,
    /// Each input's origin: its path as given, or `<stdin>`.
    origins: Vec<String>,
    forced: Option<Format>,
    /// Sequential mode: the index of the next input to open (`current`, when open, is the
    /// one before it).
    next_file: usize,
    current: Option<Current>,
    buf: String,
    /// Interleaved mode: every file open at once, read in turn.
    open: Vec<Option<Current>>,
    /// Interleaved mode: the inputs have been opened (or opening them failed).
    opened: bool,
    interleaved: bool,
    /// Next file to read from in interleaved mode.
    turn: usize,
    /// Partitions that ended since the caller last asked ([`Records::ended`]).
    ended: Vec<usize>,
    /// Per input, where it stood when it was closed (read to its end or given up).
    closed: Vec<Closed>,
    /// The longest line read as a record ([`Records::max_line_bytes`]).
    max_line: usize,
}

/// Where a closed input stood.
#[derive(Debug, Clone, Copy, Default)]
struct Closed {
    offset: u64,
    line: u64,
    /// Read to its end, or given up after an error.
    done: bool,
}

impl Current {
    /// Whether a read would not block: something is buffered, the input is not live, or
    /// its descriptor has data (or its end) ready.
    fn ready(&self) -> bool {
        if !self.live || !self.reader.buffer().is_empty() {
            return true;
        }
        match self.fd {
            Some(fd) => fd_ready(&mut [fd], 0),
            None => stdin_ready(),
        }
    }
}

struct Current {
    reader: BufReader<Box<dyn Read>>,
    /// Standard input or a named pipe: a live stream may pause between records.
    live: bool,
    /// A named pipe's descriptor, polled so that one that is silent does not hold up the
    /// other inputs read in turn (`None` for files and standard input).
    fd: Option<i32>,
    origin: String,
    line: u64,
    /// Bytes consumed: the sum of what `read_line` returned.
    offset: u64,
    csv: Option<csv::Header>,
    partition: usize,
    /// Nothing read yet from the input's first byte: a byte-order mark there is dropped.
    at_start: bool,
    /// The line the last record began on (a CSV record may span lines).
    record_line: u64,
}

/// A source of records that knows where it stands: what the pipeline reads from. Files,
/// directories and standard input ([`Records`]) and the generator ([`gen::GenSource`]) are
/// sources; so will a Kafka consumer be.
pub trait Source {
    /// The next record, `None` at the end of the input.
    fn next_record(&mut self) -> Option<Result<Record<'_>, SourceError>>;

    /// A source partition that has ended since the last call, if any (call until `None`).
    fn ended(&mut self) -> Option<usize>;

    /// Whether the next record would have to wait (a live input paused): the caller passes
    /// on what it holds first.
    fn may_wait(&self) -> bool;

    /// Number of source partitions, each with its own watermark.
    fn partitions(&self) -> usize;

    /// Event-time alignment: the drift (ms) past the slowest partition beyond which a
    /// partition counts as ahead, if this source can choose which partition it reads next
    /// (then the caller tells it which are ahead through [`Source::align`]).
    fn alignment(&self) -> Option<i64> {
        None
    }

    /// `ahead[i]`: partition `i` runs ahead of the slowest by more than the drift. A source
    /// reads the others first; it never waits for them (an ahead partition is read when no
    /// other has a record ready), so this changes the order of records across partitions,
    /// never which records come.
    fn align(&mut self, ahead: &[bool]) {
        let _ = ahead;
    }

    /// The position after the last record returned.
    fn position(&self) -> SourcePosition;

    /// Continues from a position taken from a source over the same input.
    fn seek(&mut self, pos: &SourcePosition) -> Result<(), SourceError>;

    /// Waits up to `timeout` for the next record: `false` if none came (a quiet live input;
    /// the caller advances its clock and asks again). A source that cannot wait with a
    /// timeout says `true` and waits in [`Source::next_record`].
    fn wait_ready(&mut self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        true
    }

    /// A checkpoint holding every result of the records up to `pos` is written: a source
    /// that keeps its position elsewhere (Kafka's group offsets) records it there.
    fn commit(&mut self, pos: &SourcePosition) {
        let _ = pos;
    }
}

impl Source for Records {
    fn next_record(&mut self) -> Option<Result<Record<'_>, SourceError>> {
        Records::next_record(self)
    }

    fn ended(&mut self) -> Option<usize> {
        Records::ended(self)
    }

    fn may_wait(&self) -> bool {
        Records::may_wait(self)
    }

    fn partitions(&self) -> usize {
        Records::partitions(self)
    }

    fn position(&self) -> SourcePosition {
        Records::position(self)
    }

    fn seek(&mut self, pos: &SourcePosition) -> Result<(), SourceError> {
        Records::seek(self, pos)
    }

    fn wait_ready(&mut self, timeout: std::time::Duration) -> bool {
        Records::wait_ready(self, timeout)
    }
}

/// One record: its text as a JSON object, where it came from.
pub struct Record<'a> {
    /// The record as one JSON object.
    pub json: &'a str,
    /// The file (or `<stdin>`).
    pub origin: &'a str,
    /// 1-based line number in that file.
    pub line: u64,
    /// The source partition: the file's index among the inputs when they are read in turn
    /// ([`Records::interleaved`]), else 0.
    pub partition: usize,
}

/// An input's origin: its path as given, or `<stdin>`.
fn origin(f: &Option<PathBuf>) -> String {
    match f {
        None => "<stdin>".into(),
        Some(p) => p.display().to_string(),
    }
}

impl Records {
    /// Records of the inputs, in order; `format` forces a format, else it is guessed per file.
    pub fn new(files: Vec<Option<PathBuf>>, format: Option<Format>) -> Records {
        Records {
            origins: files.iter().map(origin).collect(),
            closed: vec![Closed::default(); files.len()],
            inputs: files,
            forced: format,
            next_file: 0,
            current: None,
            buf: String::new(),
            open: Vec::new(),
            opened: false,
            interleaved: false,
            turn: 0,
            ended: Vec::new(),
            max_line: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// Sets the longest line read as a record (bytes, without the line end; default
    /// [`DEFAULT_MAX_LINE_BYTES`]): a longer one is a rejected record, its rest skipped.
    pub fn max_line_bytes(mut self, n: usize) -> Records {
        self.max_line = n.max(1);
        self
    }

    /// Records of the inputs read in turn, one record from each file, each file a source
    /// partition of its own (numbered in input order). A file that cannot be opened is an
    /// error from the first [`Records::next_record`].
    pub fn interleaved(files: Vec<Option<PathBuf>>, format: Option<Format>) -> Records {
        let mut r = Records::new(files, format);
        r.interleaved = true;
        r
    }

    /// Number of source partitions: the number of files when read in turn, else 1.
    pub fn partitions(&self) -> usize {
        if self.interleaved {
            self.inputs.len()
        } else {
            1
        }
    }

    /// A source partition that has ended (its file is read to the end) since the last call,
    /// if any; call until `None` after each record.
    pub fn ended(&mut self) -> Option<usize> {
        self.ended.pop()
    }

    /// The position after the last record returned by [`Records::next_record`] (and after
    /// any blank lines consumed), to be given to [`Records::seek`] of a `Records` over the
    /// same inputs in the same mode. See [`InputPosition::ended`] for notices still pending.
    ///
    /// If opening the inputs failed in interleaved mode, nothing of them was consumed and
    /// the position has them unopened: seeking it tries them again.
    pub fn position(&self) -> SourcePosition {
        let inputs = (0..self.inputs.len())
            .map(|i| {
                let (offset, line, ended) = match self.open_input_ref(i) {
                    Some(c) => (c.offset, c.line, false),
                    None => {
                        let c = self.closed[i];
                        let done = if self.interleaved {
                            c.done && !self.ended.contains(&i)
                        } else {
                            c.done
                        };
                        (c.offset, c.line, done)
                    }
                };
                InputPosition {
                    origin: self.origins[i].clone(),
                    offset,
                    line,
                    ended,
                }
            })
            .collect();
        let next = if self.interleaved {
            self.turn
        } else if self.current.is_some() {
            self.next_file - 1
        } else {
            self.next_file
        };
        SourcePosition {
            interleaved: self.interleaved,
            inputs,
            next,
        }
    }

    /// The open reader of input `i`, if it is open.
    fn open_input_ref(&self, i: usize) -> Option<&Current> {
        if self.interleaved {
            self.open.get(i)?.as_ref()
        } else if self.next_file == i + 1 {
            self.current.as_ref()
        } else {
            None
        }
    }

    /// Continues from `pos`, taken ([`Records::position`]) from a `Records` over the same
    /// inputs in the same mode: each file not yet done is reopened and sought to its offset
    /// (for CSV, the header line is first re-read from the file's start so rows map to the
    /// right columns), line numbers continue, and ended inputs stay ended (their notice is
    /// never given again). Whatever this `Records` had read or had pending is dropped.
    ///
    /// Standard input (and any file that is not a regular file, such as a named pipe)
    /// cannot be re-read: seeking it keeps its line count and byte offset and goes on with
    /// what it brings now; a CSV one learns its header again from its first line.
    ///
    /// Errors, with this `Records` left as it was: the inputs (mode, count or an origin)
    /// differ from the position's ([`SourceError::PositionMismatch`]), the position is not
    /// one a `Records` could be at ([`SourceError::InvalidPosition`]), a file is now shorter
    /// than its offset ([`SourceError::Truncated`]) or no longer has a line end just before
    /// it ([`SourceError::NotAtLineStart`]), I/O errors.
    pub fn seek(&mut self, pos: &SourcePosition) -> Result<(), SourceError> {
        self.check(pos)?;
        let n = self.inputs.len();
        let mut closed = vec![Closed::default(); n];
        let done = |p: &InputPosition| Closed {
            offset: p.offset,
            line: p.line,
            done: true,
        };
        if self.interleaved {
            let mut open = Vec::with_capacity(n);
            for (i, p) in pos.inputs.iter().enumerate() {
                if p.ended {
                    closed[i] = done(p);
                    open.push(None);
                } else {
                    open.push(Some(self.open_input(i, p.offset, p.line)?));
                }
            }
            self.open = open;
            self.opened = true;
            self.turn = pos.next;
            self.current = None;
            self.next_file = n;
        } else {
            for (c, p) in closed.iter_mut().zip(&pos.inputs).take(pos.next) {
                *c = done(p);
            }
            self.current = match pos.inputs.get(pos.next) {
                Some(p) => Some(self.open_input(pos.next, p.offset, p.line)?),
                None => None,
            };
            self.next_file = (pos.next + 1).min(n);
            self.open = Vec::new();
            self.opened = false;
            self.turn = 0;
        }
        self.closed = closed;
        self.ended.clear();
        self.buf.clear();
        Ok(())
    }

    /// Whether `pos` fits these inputs and could have come from a `Records` over them.
    fn check(&self, pos: &SourcePosition) -> Result<(), SourceError> {
        let mode = |i: bool| if i { "interleaved" } else { "sequential" };
        if pos.interleaved != self.interleaved {
            return Err(SourceError::PositionMismatch {
                what: format!(
                    "the position is of {} inputs, these are {}",
                    mode(pos.interleaved),
                    mode(self.interleaved)
                ),
            });
        }
        let n = self.inputs.len();
        if pos.inputs.len() != n {
            return Err(SourceError::PositionMismatch {
                what: format!(
                    "the position has {} inputs, these are {n}",
                    pos.inputs.len()
                ),
            });
        }
        for (i, (p, o)) in pos.inputs.iter().zip(&self.origins).enumerate() {
            if p.origin != *o {
                return Err(SourceError::PositionMismatch {
                    what: format!(
                        "input {}: the position's is {}, this one {o}",
                        i + 1,
                        p.origin
                    ),
                });
            }
        }
        let invalid = |what: String| Err(SourceError::InvalidPosition(what));
        for p in &pos.inputs {
            // Every line consumed is at least its line end; no input is 2^63 bytes long.
            if p.line > p.offset || p.offset > i64::MAX as u64 {
                return invalid(format!(
                    "{}: {} lines in {} bytes",
                    p.origin, p.line, p.offset
                ));
            }
        }
        if self.interleaved {
            if pos.next >= n.max(1) {
                return invalid(format!("the next turn is input index {} of {n}", pos.next));
            }
        } else {
            if pos.next > n {
                return invalid(format!("the input being read is index {} of {n}", pos.next));
            }
            for (i, p) in pos.inputs.iter().enumerate() {
                if p.ended != (i < pos.next) {
                    return invalid(format!(
                        "{}: {} though the input being read is index {}",
                        p.origin,
                        if p.ended { "ended" } else { "not ended" },
                        pos.next
                    ));
                }
                if i > pos.next && (p.offset != 0 || p.line != 0) {
                    return invalid(format!(
                        "{}: read from though the input being read is index {}",
                        p.origin, pos.next
                    ));
                }
            }
        }
        Ok(())
    }

    fn open_all(&mut self) -> Result<(), SourceError> {
        for i in 0..self.inputs.len() {
            let cur = self.open_input(i, 0, 0)?;
            self.open.push(Some(cur));
        }
        Ok(())
    }

    /// Opens input `i`, `offset` bytes and `line` lines of it already consumed.
    fn open_input(&self, i: usize, offset: u64, line: u64) -> Result<Current, SourceError> {
        let origin = self.origins[i].clone();
        let mut fd = None;
        let (reader, live, csv): (Box<dyn Read>, bool, Option<csv::Header>) = match &self.inputs[i]
        {
            None => {
                let format = self.forced.unwrap_or(Format::JsonLines);
                let csv = (format == Format::Csv).then(csv::Header::default);
                (Box::new(io::stdin()), true, csv)
            }
            Some(p) => {
                let format = self.forced.unwrap_or_else(|| Format::guess(p));
                let (file, csv) = open_at(p, &origin, offset, format == Format::Csv)?;
                let fifo = is_fifo(p);
                #[cfg(unix)]
                if fifo {
                    use std::os::unix::io::AsRawFd;
                    fd = Some(file.as_raw_fd());
                }
                (Box::new(file), fifo, csv)
            }
        };
        Ok(Current {
            reader: BufReader::with_capacity(1 << 16, reader),
            live,
            fd,
            origin,
            line,
            offset,
            csv,
            partition: if self.interleaved { i } else { 0 },
            at_start: offset == 0,
            record_line: line,
        })
    }

    /// Whether the next record would have to wait: the input is standard input (a live
    /// stream may pause), nothing of it is buffered and nothing more is ready to read. A
    /// caller that batches records or output passes on what it holds first, so a paused
    /// stream's matches are not held back until more comes.
    ///
    /// Inputs read in turn would wait when every one still open is live (a pipe) and none
    /// has anything buffered or ready.
    pub fn may_wait(&self) -> bool {
        if self.interleaved {
            let mut open = self.open.iter().flatten().peekable();
            return open.peek().is_some() && open.all(|c| c.live && !c.ready());
        }
        self.current.as_ref().is_some_and(|c| c.live && !c.ready())
    }

    /// Waits up to `timeout` for a live input (standard input, a named pipe) to have
    /// something to read: `false` if none has (the caller's clock goes on, and it asks
    /// again). A file, or anything buffered, is ready at once. Readiness is a byte, not a
    /// whole line: a writer that stops in the middle of a line holds the read up.
    pub fn wait_ready(&mut self, timeout: std::time::Duration) -> bool {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut fds = Vec::new();
        let live: Box<dyn Iterator<Item = &Current>> = if self.interleaved {
            Box::new(self.open.iter().flatten())
        } else {
            Box::new(self.current.iter())
        };
        for c in live {
            if c.ready() {
                return true;
            }
            fds.push(c.fd.unwrap_or(STDIN_FD));
        }
        fds.is_empty() || fd_ready(&mut fds, ms)
    }

    /// Closes the sequential mode's current input, noting where it stood.
    fn close_current(&mut self) {
        if let Some(c) = self.current.take() {
            if let Some(slot) = self.closed.get_mut(self.next_file.wrapping_sub(1)) {
                *slot = Closed {
                    offset: c.offset,
                    line: c.line,
                    done: true,
                };
            }
        }
    }

    /// The next record, `None` at the end of all inputs. Blank lines are skipped; a CSV
    /// row that does not fit its header still comes out (as text that is not JSON) so the
    /// engine rejects and counts it with its line number.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, SourceError>> {
        if self.interleaved {
            return self.next_interleaved();
        }
        loop {
            if self.current.is_none() {
                let i = self.next_file;
                if i >= self.inputs.len() {
                    return None;
                }
                self.next_file += 1;
                match self.open_input(i, 0, 0) {
                    Ok(c) => self.current = Some(c),
                    Err(e) => {
                        self.closed[i].done = true;
                        return Some(Err(e));
                    }
                }
            }
            let cur = self.current.as_mut()?;
            match read_record(cur, &mut self.buf, self.max_line) {
                Ok(true) => {
                    let cur = self.current.as_ref()?;
                    return Some(Ok(Record {
                        json: &self.buf,
                        origin: &cur.origin,
                        line: cur.record_line,
                        partition: 0,
                    }));
                }
                Ok(false) => self.close_current(),
                Err(e) => {
                    let path = cur.origin.clone();
                    self.close_current();
                    return Some(Err(SourceError::Io { path, source: e }));
                }
            }
        }
    }

    fn next_interleaved(&mut self) -> Option<Result<Record<'_>, SourceError>> {
        if !self.opened {
            self.opened = true;
            if let Err(e) = self.open_all() {
                self.open.clear();
                return Some(Err(e));
            }
        }
        let n = self.open.len();
        // Every open file gets its turn; a file at its end leaves the rotation. A named pipe
        // with nothing ready is passed over, so that a silent one does not stall the others
        // (and, with an idle timeout, stops holding the watermark back); when only such
        // pipes are left, the reader waits for the first of them to have something.
        let mut passed = 0;
        let mut rounds = 0usize;
        loop {
            if rounds > n {
                if passed == 0 {
                    return None;
                }
                let mut fds: Vec<i32> = self.open.iter().flatten().filter_map(|c| c.fd).collect();
                fd_ready(&mut fds, -1);
                rounds = 0;
                passed = 0;
            }
            rounds += 1;
            let i = self.turn % n.max(1);
            self.turn = (i + 1) % n.max(1);
            let Some(cur) = self.open.get_mut(i).and_then(Option::as_mut) else {
                if self.open.iter().all(Option::is_none) {
                    return None;
                }
                continue;
            };
            if cur.fd.is_some() && !cur.ready() {
                passed += 1;
                continue;
            }
            let read = read_record(cur, &mut self.buf, self.max_line);
            if let Ok(true) = read {
                let cur = self.open.get(i)?.as_ref()?;
                return Some(Ok(Record {
                    json: &self.buf,
                    origin: &cur.origin,
                    line: cur.record_line,
                    partition: cur.partition,
                }));
            }
            let cur = self.open.get_mut(i)?.take()?;
            self.ended.push(cur.partition);
            self.closed[i] = Closed {
                offset: cur.offset,
                line: cur.line,
                done: true,
            };
            if let Err(e) = read {
                return Some(Err(SourceError::Io {
                    path: cur.origin,
                    source: e,
                }));
            }
        }
    }
}

/// Opens file `p` (`origin` names it in errors) for reading after its first `offset` bytes,
/// with the CSV header those bytes hold if `csv`. A regular file is sought there, after
/// checking that it is still that long and that a line ends just before; anything else (a
/// named pipe) cannot be re-read and is read from where it is now.
fn open_at(
    p: &Path,
    origin: &str,
    offset: u64,
    csv: bool,
) -> Result<(File, Option<csv::Header>), SourceError> {
    let io_err = |e| SourceError::Io {
        path: origin.to_string(),
        source: e,
    };
    let header = csv.then(csv::Header::default);
    let mut file = open_file(p).map_err(io_err)?;
    if offset == 0 {
        return Ok((file, header));
    }
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Ok((file, header));
    }
    let len = meta.len();
    if len < offset {
        return Err(SourceError::Truncated {
            path: origin.to_string(),
            offset,
            len,
        });
    }
    if offset < len {
        let mut b = [0u8];
        file.seek(SeekFrom::Start(offset - 1)).map_err(io_err)?;
        file.read_exact(&mut b).map_err(io_err)?;
        if b[0] != b'\n' {
            return Err(SourceError::NotAtLineStart {
                path: origin.to_string(),
                offset,
            });
        }
    }
    let header = match header {
        Some(mut h) => {
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            learn_header(&file, offset, &mut h).map_err(io_err)?;
            Some(h)
        }
        None => None,
    };
    file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    Ok((file, header))
}

/// Learns the CSV header from the first line of `file` (read from where it is) that is not
/// blank, looking no further than `limit` bytes; `h` stays unset if there is none.
fn learn_header(file: &File, limit: u64, h: &mut csv::Header) -> io::Result<()> {
    let mut r = BufReader::new(file.take(limit));
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let bytes = match line.strip_prefix(BOM) {
            Some(rest) if first => rest,
            _ => &line[..],
        };
        first = false;
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.trim().is_empty() {
            // The first line that is not blank is the header: learnt, it gives no row.
            let _ = h.row_to_json(text);
            return Ok(());
        }
    }
}

/// Skips the rest of a line (through its `\n`); the bytes consumed.
#[cold]
fn skip_line(r: &mut impl BufRead) -> io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(skipped);
        }
        let (n, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        r.consume(n);
        skipped += n as u64;
        if done {
            return Ok(skipped);
        }
    }
}

/// Reads one line (through its `\n`) of `cur`, at most `room` bytes of it, appending to
/// `bytes`; counts it in the input's offset and lines. `None` at the end of the input, else
/// whether the line was cut (longer than `room`: its rest is consumed and dropped).
fn read_line(cur: &mut Current, bytes: &mut Vec<u8>, room: usize) -> io::Result<Option<bool>> {
    // Room for the line and a "\r\n".
    let room = room as u64 + 2;
    let n = (&mut cur.reader).take(room).read_until(b'\n', bytes)? as u64;
    if n == 0 {
        return Ok(None);
    }
    let mut consumed = n;
    let cut = bytes.last() != Some(&b'\n') && n == room;
    if cut {
        consumed += skip_line(&mut cur.reader)?;
    }
    cur.offset += consumed;
    cur.line += 1;
    Ok(Some(cut))
}

/// Reads the next record of `cur` into `buf` (as JSON); `false` at the end of the file.
///
/// A line is read as bytes, at most `max_line` of them (plus its line end): a longer line,
/// or one that is not UTF-8, comes out as an unreadable record ([`unreadable`]) that the
/// engine rejects with its line number, and reading goes on. A byte-order mark at the start
/// of the input is dropped. In CSV a quoted field may go on over several lines (RFC 4180):
/// the record is its lines together, at most `max_line` bytes, numbered by its first line.
fn read_record(cur: &mut Current, buf: &mut String, max_line: usize) -> io::Result<bool> {
    loop {
        // The line's bytes go into `buf`'s own allocation, and back without a copy.
        let mut bytes = std::mem::take(buf).into_bytes();
        bytes.clear();
        let read = read_line(cur, &mut bytes, max_line);
        let mut cut = match read {
            Ok(Some(cut)) => cut,
            Ok(None) | Err(_) => {
                bytes.clear();
                *buf = String::from_utf8(bytes).unwrap_or_default();
                return read.map(|_| false);
            }
        };
        cur.record_line = cur.line;
        let start = if std::mem::take(&mut cur.at_start) && bytes.starts_with(BOM) {
            BOM.len()
        } else {
            0
        };
        if cur.csv.is_some() {
            // A quoted field still open at the line end goes on on the next line.
            while !cut && csv::open_quote(&bytes[start..]) {
                let room = max_line.saturating_sub(bytes.len() - start);
                match read_line(cur, &mut bytes, room)? {
                    Some(c) => cut = c,
                    None => break,
                }
            }
        }
        // The record without its final line end (`\n` or `\r\n`) is what the limit
        // measures.
        let mut end = bytes.len();
        for b in [b'\n', b'\r'] {
            if end > start && bytes[end - 1] == b {
                end -= 1;
            }
        }
        let too_long = end - start > max_line;
        while end > start && matches!(bytes[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        if cut || too_long {
            *buf = unreadable(
                &format!("line longer than {max_line} bytes (the limit: --max-line-bytes)"),
                &bytes[start..end],
                cut,
            );
            return Ok(true);
        }
        bytes.truncate(end);
        if start > 0 {
            bytes.drain(..start);
        }
        match String::from_utf8(bytes) {
            Ok(text) => *buf = text,
            Err(e) => {
                let at = e.utf8_error().valid_up_to() + start + 1;
                *buf = unreadable(
                    &format!("invalid UTF-8 (byte {at} of the line)"),
                    e.as_bytes(),
                    false,
                );
                return Ok(true);
            }
        }
        if buf.trim().is_empty() {
            continue;
        }
        if let Some(h) = cur.csv.as_mut() {
            match h.row_to_json(buf) {
                None => continue, // the header line
                Some(json) => *buf = json,
            }
        }
        return Ok(true);
    }
}

/// Standard input's descriptor.
#[cfg(unix)]
const STDIN_FD: i32 = libc::STDIN_FILENO;
#[cfg(not(unix))]
const STDIN_FD: i32 = 0;

/// Whether standard input has data (or its end) ready to read without blocking.
#[cfg(unix)]
fn stdin_ready() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout; poll only writes `revents`.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n != 0
}

/// Without `poll`, standard input is taken to be always ready (nothing is flushed early).
#[cfg(not(unix))]
fn stdin_ready() -> bool {
    true
}

/// Whether any of `fds` has data or its end ready, waiting up to `timeout_ms` (-1: until
/// one has).
#[cfg(unix)]
fn fd_ready(fds: &mut [i32], timeout_ms: i32) -> bool {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `polled` is a valid array of pollfds of its length; poll only writes their
        // `revents`.
        let n = unsafe {
            libc::poll(
                polled.as_mut_ptr(),
                polled.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return n > 0;
        }
    }
}

/// Without `poll`, every input is taken to be ready (reads block as they would).
#[cfg(not(unix))]
fn fd_ready(_fds: &mut [i32], _timeout_ms: i32) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory of its own under the system's temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "motif-source-{}-{name}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        /// Writes `text` to file `name` in the directory; its path as an input.
        fn file(&self, name: &str, text: &str) -> Option<PathBuf> {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            Some(p)
        }
    }

    impl TempDir {
        /// Writes `bytes` to file `name` in the directory; its path as an input.
        fn bytes(&self, name: &str, bytes: &[u8]) -> Option<PathBuf> {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).unwrap();
            Some(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// What a reader of a source sees: records and ended partitions.
    #[derive(Debug, Clone, PartialEq)]
    enum Seen {
        Record {
            json: String,
            origin: String,
            line: u64,
            partition: usize,
        },
        Ended(usize),
    }

    fn records(files: &[Option<PathBuf>], interleaved: bool) -> Records {
        if interleaved {
            Records::interleaved(files.to_vec(), None)
        } else {
            Records::new(files.to_vec(), None)
        }
    }

    /// Reads up to `limit` records (all if `None`, then what is ended at the end), each
    /// followed by its ended partitions unless `drain_last` is false for the last one.
    fn read(r: &mut Records, limit: Option<usize>, drain_last: bool) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut n = 0;
        while limit.is_none_or(|l| n < l) {
            let Some(rec) = r.next_record() else {
                while let Some(p) = r.ended() {
                    seen.push(Seen::Ended(p));
                }
                break;
            };
            let rec = rec.unwrap();
            seen.push(Seen::Record {
                json: rec.json.to_string(),
                origin: rec.origin.to_string(),
                line: rec.line,
                partition: rec.partition,
            });
            n += 1;
            if drain_last || limit != Some(n) {
                while let Some(p) = r.ended() {
                    seen.push(Seen::Ended(p));
                }
            }
        }
        seen
    }

    /// A position through its serialized form, as a checkpoint would hold it.
    fn saved(pos: &SourcePosition) -> SourcePosition {
        serde_json::from_str(&serde_json::to_string(pos).unwrap()).unwrap()
    }

    /// For every k: k records read, the position taken, a fresh source sought to it and
    /// read to the end gives the same as one uninterrupted read.
    fn check_resume(files: &[Option<PathBuf>], interleaved: bool) -> Vec<Seen> {
        let whole = read(&mut records(files, interleaved), None, true);
        let total = whole
            .iter()
            .filter(|s| matches!(s, Seen::Record { .. }))
            .count();
        for k in 0..=total + 1 {
            let mut first = records(files, interleaved);
            let mut seen = read(&mut first, Some(k), true);
            let pos = saved(&first.position());
            let mut rest = records(files, interleaved);
            rest.seek(&pos).unwrap();
            assert_eq!(rest.position(), pos, "k = {k}");
            seen.extend(read(&mut rest, None, true));
            assert_eq!(seen, whole, "resumed after {k} records");
            assert!(rest.next_record().is_none() && rest.ended().is_none());
        }
        whole
    }

    fn rec(json: &str, origin: &Option<PathBuf>, line: u64, partition: usize) -> Seen {
        Seen::Record {
            json: json.into(),
            origin: super::origin(origin),
            line,
            partition,
        }
    }

    #[test]
    fn resume_sequential_json_lines() {
        let d = TempDir::new("seq");
        let a = d.file("a.jsonl", "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
        let b = d.file("b.jsonl", "{\"b\":1}\n{\"b\":2}\n");
        let whole = check_resume(&[a.clone(), b.clone()], false);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[3], rec("{\"b\":1}", &b, 1, 0));
    }

    #[test]
    fn resume_csv_with_header() {
        let d = TempDir::new("csv");
        let a = d.file("a.csv", "\nkey,ts\nk1,1\n\nk2,2\r\nk3,3");
        let b = d.file("b.csv", "ts,key\r\n4,k4\r\n");
        let whole = check_resume(&[a.clone(), b.clone()], false);
        assert_eq!(
            whole,
            vec![
                rec("{\"key\":\"k1\",\"ts\":1}", &a, 3, 0),
                rec("{\"key\":\"k2\",\"ts\":2}", &a, 5, 0),
                rec("{\"key\":\"k3\",\"ts\":3}", &a, 6, 0),
                rec("{\"ts\":4,\"key\":\"k4\"}", &b, 2, 0),
            ]
        );
        check_resume(&[a, b], true);
    }

    #[test]
    fn resume_interleaved_files_of_different_lengths() {
        let d = TempDir::new("inter");
        let a = d.file("a.jsonl", "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n");
        let b = d.file("b.jsonl", "{\"b\":1}\n");
        let c = d.file("c.jsonl", "{\"c\":1}\n{\"c\":2}\n");
        let whole = check_resume(&[a.clone(), b.clone(), c.clone()], true);
        assert_eq!(
            whole,
            vec![
                rec("{\"a\":1}", &a, 1, 0),
                rec("{\"b\":1}", &b, 1, 1),
                rec("{\"c\":1}", &c, 1, 2),
                rec("{\"a\":2}", &a, 2, 0),
                // b's end is found on its next turn, in the call that returns c's record.
                rec("{\"c\":2}", &c, 2, 2),
                Seen::Ended(1),
                rec("{\"a\":3}", &a, 3, 0),
                rec("{\"a\":4}", &a, 4, 0),
                Seen::Ended(2),
                Seen::Ended(0),
            ]
        );
        let e = d.file("e.jsonl", "");
        check_resume(&[e.clone(), a.clone(), e, b, c], true);
    }

    #[test]
    fn resume_blank_lines_and_crlf() {
        let d = TempDir::new("blank");
        let a = d.file("a.jsonl", "\r\n\n{\"a\":1}\r\n  \r\n\r\n{\"a\":2}\r\n\n \n");
        let b = d.file("b.jsonl", "\n\n{\"b\":1}\n\r\n{\"b\":2}");
        let c = d.file("c.jsonl", "\n\n\n");
        let files = [a.clone(), b.clone(), c];
        let whole = check_resume(&files, false);
        assert_eq!(
            whole,
            vec![
                rec("{\"a\":1}", &a, 3, 0),
                rec("{\"a\":2}", &a, 6, 0),
                rec("{\"b\":1}", &b, 3, 0),
                rec("{\"b\":2}", &b, 5, 0),
            ]
        );
        check_resume(&files, true);
    }

    #[test]
    fn pending_end_is_reported_once() {
        let d = TempDir::new("pending");
        let a = d.file("a.jsonl", "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n\n");
        let b = d.file("b.jsonl", "{\"b\":1}\n");
        let c = d.file("c.jsonl", "\n{\"c\":1}\n{\"c\":2}\n");
        let files = [a, b, c];
        let whole = read(&mut records(&files, true), None, true);
        let only = |s: &[Seen], records: bool| -> Vec<Seen> {
            s.iter()
                .filter(|s| matches!(s, Seen::Record { .. }) == records)
                .cloned()
                .collect()
        };
        for k in 1..=6 {
            // The position is taken with the last record's ended partitions not drained.
            let mut first = records(&files, true);
            let mut seen = read(&mut first, Some(k), false);
            let mut rest = records(&files, true);
            rest.seek(&saved(&first.position())).unwrap();
            seen.extend(read(&mut rest, None, true));
            assert_eq!(only(&seen, true), only(&whole, true), "k = {k}");
            let mut ended = only(&seen, false);
            ended.sort_by_key(|s| format!("{s:?}"));
            assert_eq!(
                ended,
                vec![Seen::Ended(0), Seen::Ended(1), Seen::Ended(2)],
                "k = {k}"
            );
        }
    }

    #[test]
    fn seek_to_the_very_end() {
        let d = TempDir::new("end");
        let a = d.file("a.jsonl", "{\"a\":1}\n");
        let b = d.file("b.jsonl", "{\"b\":1}\n{\"b\":2}\n\n");
        let files = [a, b];
        for interleaved in [false, true] {
            let mut first = records(&files, interleaved);
            let seen = read(&mut first, None, true);
            assert_eq!(seen.len(), if interleaved { 5 } else { 3 });
            assert!(first.next_record().is_none());
            let pos = saved(&first.position());
            assert!(pos.inputs.iter().all(|i| i.ended), "{pos:?}");
            let mut rest = records(&files, interleaved);
            rest.seek(&pos).unwrap();
            assert!(rest.next_record().is_none());
            assert_eq!(
                rest.ended(),
                None,
                "ended partitions are not reported again"
            );
            assert!(rest.next_record().is_none());
            assert_eq!(rest.ended(), None);
        }
        // Ended but not yet reported at the end: reported once.
        let mut first = records(&files, true);
        while let Some(r) = first.next_record() {
            r.unwrap();
        }
        let mut rest = records(&files, true);
        rest.seek(&first.position()).unwrap();
        assert!(rest.next_record().is_none());
        let mut ended = vec![rest.ended(), rest.ended(), rest.ended()];
        ended.sort();
        assert_eq!(ended, vec![None, Some(0), Some(1)]);
        assert!(rest.next_record().is_none());
        assert_eq!(rest.ended(), None);
    }

    #[test]
    fn mismatched_positions() {
        let d = TempDir::new("mismatch");
        let a = d.file("a.jsonl", "{\"a\":1}\n{\"a\":2}\n");
        let b = d.file("b.jsonl", "{\"b\":1}\n");
        let c = d.file("c.jsonl", "{\"c\":1}\n");
        let mut first = records(&[a.clone(), b.clone()], false);
        read(&mut first, Some(1), true);
        let pos = first.position();
        let mismatch = |r: Result<(), SourceError>, needle: &str| match r {
            Err(e @ SourceError::PositionMismatch { .. }) => {
                assert!(e.to_string().contains(needle), "{e}");
            }
            other => panic!("{other:?}"),
        };
        let mut r = records(&[a.clone(), b.clone()], true);
        mismatch(r.seek(&pos), "sequential");
        let mut r = records(std::slice::from_ref(&a), false);
        mismatch(r.seek(&pos), "2 inputs");
        let mut r = records(&[a.clone(), c.clone()], false);
        mismatch(r.seek(&pos), "c.jsonl");
        // A failed seek leaves the source as it was.
        assert_eq!(read(&mut r, None, true).len(), 3);
        let mut bad = pos.clone();
        bad.next = 5;
        let mut r = records(&[a.clone(), b.clone()], false);
        assert!(matches!(r.seek(&bad), Err(SourceError::InvalidPosition(_))));
        let mut bad = pos.clone();
        bad.inputs[1].offset = 3;
        assert!(matches!(r.seek(&bad), Err(SourceError::InvalidPosition(_))));
        let mut bad = pos.clone();
        bad.next = usize::MAX;
        assert!(matches!(r.seek(&bad), Err(SourceError::InvalidPosition(_))));
        let mut bad = pos.clone();
        bad.inputs[0].line = u64::MAX;
        assert!(matches!(r.seek(&bad), Err(SourceError::InvalidPosition(_))));
        r.seek(&pos).unwrap();
        assert_eq!(read(&mut r, None, true).len(), 2);
    }

    #[test]
    fn truncated_or_changed_file() {
        let d = TempDir::new("trunc");
        let a = d.file("a.jsonl", "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
        let b = d.file("b.csv", "k,v\nx,1\ny,2\n");
        for interleaved in [false, true] {
            let files = [a.clone(), b.clone()];
            let mut first = records(&files, interleaved);
            read(&mut first, Some(if interleaved { 4 } else { 2 }), true);
            let pos = first.position();
            d.file("a.jsonl", "{\"a\":1}\n");
            let mut r = records(&files, interleaved);
            match r.seek(&pos) {
                Err(e @ SourceError::Truncated { .. }) => {
                    assert!(e.to_string().contains("a.jsonl"), "{e}");
                }
                other => panic!("{other:?}"),
            }
            d.file("a.jsonl", "{\"a\":10}\n{\"a\":20}\n{\"a\":3}\n");
            match r.seek(&pos) {
                Err(e @ SourceError::NotAtLineStart { .. }) => {
                    assert!(e.to_string().contains("a.jsonl"), "{e}");
                }
                other => panic!("{other:?}"),
            }
            // Grown (appended to) is fine: it goes on with what was added.
            d.file("a.jsonl", "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n");
            r.seek(&pos).unwrap();
            let rest = read(&mut r, None, true);
            assert!(rest.contains(&rec("{\"a\":4}", &a, 4, 0)), "{rest:?}");
            d.file("a.jsonl", "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
        }
    }

    /// Invalid UTF-8 and over-long lines are records the engine rejects (with their reason
    /// and line), a byte-order mark at an input's start is dropped (JSON lines and CSV), and
    /// reading goes on after each, resumable at every record.
    #[test]
    fn unreadable_lines_and_byte_order_marks() {
        let d = TempDir::new("unreadable");
        let long = "x".repeat(5000);
        let a = d.bytes(
            "a.jsonl",
            format!("\u{feff}{{\"a\":1}}\r\n{{\"a\":\"\"}}\n{{\"a\":{long}}}\n\n{{\"a\":4}}")
                .as_bytes(),
        );
        // The same with a raw invalid byte on line 2 (format! cannot write one).
        let mut bytes = std::fs::read(a.as_ref().unwrap()).unwrap();
        let at = bytes.windows(3).position(|w| w == b"\"\"}").unwrap();
        bytes.insert(at + 1, 0xff);
        std::fs::write(a.as_ref().unwrap(), &bytes).unwrap();
        let b = d.bytes("b.csv", b"\xEF\xBB\xBFk,ts\n1,1\n\xC3\x28,2\n");
        let files = [a.clone(), b.clone()];
        let read_all = |interleaved: bool| {
            let mut r = records(&files, interleaved).max_line_bytes(1000);
            let mut out = Vec::new();
            while let Some(rec) = r.next_record() {
                let rec = rec.unwrap();
                out.push((rec.origin.to_string(), rec.line, rec.json.to_string()));
            }
            out
        };
        let seen = read_all(false);
        let lines: Vec<u64> = seen.iter().map(|s| s.1).collect();
        assert_eq!(lines, [1, 2, 3, 5, 2, 3], "{seen:?}");
        assert_eq!(seen[0].2, "{\"a\":1}", "BOM and CRLF dropped");
        let (why, shown) = unreadable_reason(&seen[1].2).expect("line 2 unreadable");
        assert_eq!(why, "invalid UTF-8 (byte 7 of the line)");
        assert_eq!(shown, "{\"a\":\"\u{fffd}\"}");
        let (why, shown) = unreadable_reason(&seen[2].2).expect("line 3 unreadable");
        assert!(why.starts_with("line longer than 1000 bytes"), "{why}");
        assert!(shown.len() < 1100 && shown.ends_with('…'), "{shown}");
        assert_eq!(seen[3].2, "{\"a\":4}");
        assert_eq!(
            seen[4].2, "{\"k\":1,\"ts\":1}",
            "the BOM is not in the first column's name"
        );
        assert!(unreadable_reason(&seen[5].2).is_some(), "{seen:?}");
        assert_eq!(read_all(true).len(), seen.len());
        // Resumable after every record: positions count the skipped bytes.
        check_resume(&files, false);
        check_resume(&files, true);
    }

    /// A quoted CSV field over several lines is one record, numbered by its first line;
    /// positions after it resume exactly; CSV errors are CSV errors.
    #[test]
    fn csv_records_over_several_lines() {
        let d = TempDir::new("csvlines");
        let a = d.file(
            "a.csv",
            "k,note,x\r\n1,\"two\r\nlines\",2.\r\n2,plain,.5\n3,\"a,\n\n\"\"b\"\"\",-02\n4,x\n5,\"open\n",
        );
        let files = [a.clone()];
        let whole = check_resume(&files, false);
        let rows: Vec<(u64, String)> = whole
            .iter()
            .filter_map(|s| match s {
                Seen::Record { line, json, .. } => Some((*line, json.clone())),
                Seen::Ended(_) => None,
            })
            .collect();
        assert_eq!(rows.len(), 5, "{rows:?}");
        assert_eq!(
            rows[0],
            (2, "{\"k\":1,\"note\":\"two\\r\\nlines\",\"x\":2.0}".into())
        );
        assert_eq!(
            rows[1],
            (4, "{\"k\":2,\"note\":\"plain\",\"x\":0.5}".into())
        );
        assert_eq!(
            rows[2],
            (
                5,
                "{\"k\":3,\"note\":\"a,\\n\\n\\\"b\\\"\",\"x\":\"-02\"}".into()
            )
        );
        let (why, _) = unreadable_reason(&rows[3].1).expect("row 8 unreadable");
        assert_eq!(
            (rows[3].0, why),
            (8, "CSV: the row has 2 fields, the header 3")
        );
        let (why, _) = unreadable_reason(&rows[4].1).expect("row 9 unreadable");
        assert_eq!(
            (rows[4].0, why),
            (
                9,
                "CSV: a quoted field is not closed by the end of the input"
            )
        );
        check_resume(&files, true);
    }
}
