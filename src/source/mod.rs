//! Input sources: JSON lines or CSV from files, directories (files in name order) and stdin,
//! as a stream of records with their origin and line number.

pub mod csv;

use std::fs::File;
use std::io::{self, BufRead, BufReader};
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

/// Reads records one at a time from a list of files (or stdin).
pub struct Records {
    files: std::vec::IntoIter<Option<PathBuf>>,
    forced: Option<Format>,
    current: Option<Current>,
    buf: String,
}

struct Current {
    reader: Box<dyn BufRead>,
    origin: String,
    line: u64,
    csv: Option<csv::Header>,
}

/// One record: its text as a JSON object, where it came from.
pub struct Record<'a> {
    /// The record as one JSON object.
    pub json: &'a str,
    /// The file (or `<stdin>`).
    pub origin: &'a str,
    /// 1-based line number in that file.
    pub line: u64,
}

impl Records {
    /// Records of the inputs, in order; `format` forces a format, else it is guessed per file.
    pub fn new(files: Vec<Option<PathBuf>>, format: Option<Format>) -> Records {
        Records {
            files: files.into_iter(),
            forced: format,
            current: None,
            buf: String::new(),
        }
    }

    fn open(&mut self, f: Option<PathBuf>) -> Result<(), SourceError> {
        let (reader, origin, format): (Box<dyn BufRead>, String, Format) = match f {
            None => (
                Box::new(BufReader::with_capacity(1 << 16, io::stdin())),
                "<stdin>".into(),
                self.forced.unwrap_or(Format::JsonLines),
            ),
            Some(p) => {
                let file = File::open(&p).map_err(|e| SourceError::Io {
                    path: p.display().to_string(),
                    source: e,
                })?;
                let fmt = self.forced.unwrap_or_else(|| Format::guess(&p));
                (
                    Box::new(BufReader::with_capacity(1 << 16, file)),
                    p.display().to_string(),
                    fmt,
                )
            }
        };
        self.current = Some(Current {
            reader,
            origin,
            line: 0,
            csv: (format == Format::Csv).then(csv::Header::default),
        });
        Ok(())
    }

    /// The next record, `None` at the end of all inputs. Blank lines are skipped; a CSV
    /// row that does not fit its header still comes out (as text that is not JSON) so the
    /// engine rejects and counts it with its line number.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, SourceError>> {
        loop {
            if self.current.is_none() {
                let f = self.files.next()?;
                if let Err(e) = self.open(f) {
                    return Some(Err(e));
                }
            }
            let cur = self.current.as_mut()?;
            self.buf.clear();
            match cur.reader.read_line(&mut self.buf) {
                Ok(0) => {
                    self.current = None;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    let path = cur.origin.clone();
                    self.current = None;
                    return Some(Err(SourceError::Io { path, source: e }));
                }
            }
            cur.line += 1;
            let text = self.buf.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            if let Some(h) = cur.csv.as_mut() {
                match h.row_to_json(text) {
                    None => continue, // the header line
                    Some(json) => {
                        self.buf = json;
                    }
                }
            } else if text.len() != self.buf.len() {
                let n = text.len();
                self.buf.truncate(n);
            }
            let cur = self.current.as_ref()?;
            return Some(Ok(Record {
                json: &self.buf,
                origin: &cur.origin,
                line: cur.line,
            }));
        }
    }
}
