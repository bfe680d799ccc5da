//! Input sources: JSON lines or CSV from files, directories (files in name order) and stdin,
//! as a stream of records with their origin and line number.

pub mod csv;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
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
                f.is_file()
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

/// Reads records one at a time from a list of files (or stdin): one after the other, or
/// in turn (one record from each) when each file is a source partition of its own.
pub struct Records {
    files: std::vec::IntoIter<Option<PathBuf>>,
    forced: Option<Format>,
    current: Option<Current>,
    buf: String,
    /// Interleaved mode: every file open at once, read in turn.
    open: Vec<Option<Current>>,
    interleaved: bool,
    /// Next file to read from in interleaved mode.
    turn: usize,
    /// Partitions that ended since the caller last asked ([`Records::ended`]).
    ended: Vec<usize>,
}

struct Current {
    reader: BufReader<Box<dyn Read>>,
    /// Standard input: a live stream may pause between records.
    live: bool,
    origin: String,
    line: u64,
    csv: Option<csv::Header>,
    partition: usize,
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

impl Records {
    /// Records of the inputs, in order; `format` forces a format, else it is guessed per file.
    pub fn new(files: Vec<Option<PathBuf>>, format: Option<Format>) -> Records {
        Records {
            files: files.into_iter(),
            forced: format,
            current: None,
            buf: String::new(),
            open: Vec::new(),
            interleaved: false,
            turn: 0,
            ended: Vec::new(),
        }
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
            self.open.len().max(self.files.len())
        } else {
            1
        }
    }

    /// A source partition that has ended (its file is read to the end) since the last call,
    /// if any; call until `None` after each record.
    pub fn ended(&mut self) -> Option<usize> {
        self.ended.pop()
    }

    fn open_all(&mut self) -> Result<(), SourceError> {
        let files: Vec<Option<PathBuf>> = self.files.by_ref().collect();
        for (i, f) in files.into_iter().enumerate() {
            self.open(f)?;
            let mut cur = self.current.take();
            if let Some(c) = cur.as_mut() {
                c.partition = i;
            }
            self.open.push(cur);
        }
        Ok(())
    }

    fn open(&mut self, f: Option<PathBuf>) -> Result<(), SourceError> {
        let live = f.is_none();
        let (reader, origin, format): (Box<dyn Read>, String, Format) = match f {
            None => (
                Box::new(io::stdin()),
                "<stdin>".into(),
                self.forced.unwrap_or(Format::JsonLines),
            ),
            Some(p) => {
                let file = File::open(&p).map_err(|e| SourceError::Io {
                    path: p.display().to_string(),
                    source: e,
                })?;
                let fmt = self.forced.unwrap_or_else(|| Format::guess(&p));
                (Box::new(file), p.display().to_string(), fmt)
            }
        };
        self.current = Some(Current {
            reader: BufReader::with_capacity(1 << 16, reader),
            live,
            origin,
            line: 0,
            csv: (format == Format::Csv).then(csv::Header::default),
            partition: 0,
        });
        Ok(())
    }

    /// Whether the next record would have to wait: the input is standard input (a live
    /// stream may pause), nothing of it is buffered and nothing more is ready to read. A
    /// caller that batches records or output passes on what it holds first, so a paused
    /// stream's matches are not held back until more comes.
    pub fn may_wait(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.live && c.reader.buffer().is_empty() && !stdin_ready())
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
                let f = self.files.next()?;
                if let Err(e) = self.open(f) {
                    return Some(Err(e));
                }
            }
            let cur = self.current.as_mut()?;
            match read_record(cur, &mut self.buf) {
                Ok(true) => {
                    let cur = self.current.as_ref()?;
                    return Some(Ok(Record {
                        json: &self.buf,
                        origin: &cur.origin,
                        line: cur.line,
                        partition: 0,
                    }));
                }
                Ok(false) => self.current = None,
                Err(e) => {
                    let path = cur.origin.clone();
                    self.current = None;
                    return Some(Err(SourceError::Io { path, source: e }));
                }
            }
        }
    }

    fn next_interleaved(&mut self) -> Option<Result<Record<'_>, SourceError>> {
        if self.open.is_empty() && self.files.len() > 0 {
            if let Err(e) = self.open_all() {
                self.open.clear();
                return Some(Err(e));
            }
        }
        let n = self.open.len();
        // Every open file gets its turn; a file at its end leaves the rotation.
        for _ in 0..=n {
            let i = self.turn % n.max(1);
            self.turn = (i + 1) % n.max(1);
            let Some(cur) = self.open.get_mut(i).and_then(Option::as_mut) else {
                if self.open.iter().all(Option::is_none) {
                    return None;
                }
                continue;
            };
            match read_record(cur, &mut self.buf) {
                Ok(true) => {
                    let cur = self.open.get(i)?.as_ref()?;
                    return Some(Ok(Record {
                        json: &self.buf,
                        origin: &cur.origin,
                        line: cur.line,
                        partition: cur.partition,
                    }));
                }
                Ok(false) => {
                    self.ended.push(cur.partition);
                    self.open[i] = None;
                }
                Err(e) => {
                    let path = cur.origin.clone();
                    self.ended.push(cur.partition);
                    self.open[i] = None;
                    return Some(Err(SourceError::Io { path, source: e }));
                }
            }
        }
        None
    }
}

/// Reads the next record of `cur` into `buf` (as JSON); `false` at the end of the file.
fn read_record(cur: &mut Current, buf: &mut String) -> io::Result<bool> {
    loop {
        buf.clear();
        if cur.reader.read_line(buf)? == 0 {
            return Ok(false);
        }
        cur.line += 1;
        let text = buf.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        if let Some(h) = cur.csv.as_mut() {
            match h.row_to_json(text) {
                None => continue, // the header line
                Some(json) => *buf = json,
            }
        } else if text.len() != buf.len() {
            let n = text.len();
            buf.truncate(n);
        }
        return Ok(true);
    }
}

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
