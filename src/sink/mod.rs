//! Sinks: where rendered outputs go, written per epoch and committed per epoch.
//!
//! An epoch is the span between two checkpoints (its number is the checkpoint's id). A sink
//! takes the bytes of an epoch with [`Sink::write`]; [`Sink::commit`] makes them durable and
//! returns the [`SinkPosition`] the checkpoint records. On a restart from that checkpoint
//! [`FileSink::resume`] cuts the file back to the recorded length, so what a killed run
//! wrote after its last checkpoint is written again once, not twice: file sinks are exactly
//! once. Standard output and standard error cannot be taken back: what was written after
//! the last checkpoint is written again after a restart (at least once).

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod table;
pub mod url;
pub mod writer;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a sink had committed when a checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkPosition {
    /// The sink's role in the run (`matches`, `timeouts`, `late`, `rejects`).
    pub role: String,
    /// Where it writes: a file's path, `<stdout>` or `<stderr>`.
    pub target: String,
    /// The last epoch committed.
    pub epoch: u64,
    /// Bytes committed (for a file: its length after the commit).
    pub bytes: u64,
}

/// Why a sink failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A database sink failed.
    #[error(transparent)]
    Database(#[from] table::DbError),
    /// A Kafka output failed (its producer, or a message the brokers refused).
    #[error("{target}: {why}")]
    Kafka {
        /// The output's URL (without its options).
        target: String,
        /// Why.
        why: String,
    },
    /// Writing, flushing or syncing failed.
    #[error("{target}: {source}")]
    Io {
        /// The sink's target.
        target: String,
        /// Why.
        source: io::Error,
    },
    /// The file is shorter than the checkpoint says was committed to it: it was changed or
    /// replaced outside motif, and cutting it back would not give the committed content.
    #[error("{target}: the checkpoint says {committed} bytes were committed, the file has {found}: it was changed outside motif")]
    Shorter {
        /// The file.
        target: String,
        /// Bytes committed.
        committed: u64,
        /// Bytes in the file.
        found: u64,
    },
}

/// A destination for rendered lines, with epochs.
pub trait Sink: Send {
    /// Appends `bytes` (whole lines) to the current epoch.
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError>;

    /// Passes buffered bytes on now (a live input paused), without making them durable.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Makes everything written so far durable as epoch `epoch` and says what to record.
    fn commit(&mut self, epoch: u64) -> Result<SinkPosition, SinkError>;

    /// The last epoch committed (`None`: none yet).
    fn last_committed(&self) -> Option<u64>;
}

/// A file of lines, exactly once across restarts (see the module documentation).
pub struct FileSink {
    role: String,
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the file once the buffer is written.
    len: u64,
    committed: Option<u64>,
}

fn io_error(target: &Path) -> impl FnOnce(io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        target: target.display().to_string(),
        source,
    }
}

/// `fsync`'s data part, where there is something to sync: a special file (`/dev/null`, a
/// pipe, a terminal) has no storage and answers `EINVAL`, which is not an error here.
fn sync_data(f: &File) -> io::Result<()> {
    match f.sync_data() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

impl FileSink {
    /// A new, empty file at `path` (an existing file is replaced).
    pub fn create(role: &str, path: &Path) -> Result<FileSink, SinkError> {
        let f = File::create(path).map_err(io_error(path))?;
        Ok(FileSink {
            role: role.to_string(),
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, f),
            len: 0,
            committed: None,
        })
    }

    /// The file at `path` as committed at `pos`: anything after the committed length (written
    /// after the checkpoint by a run that did not finish) is cut off, and writing goes on
    /// from there.
    pub fn resume(role: &str, path: &Path, pos: &SinkPosition) -> Result<FileSink, SinkError> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error(path))?;
        let found = f.metadata().map_err(io_error(path))?.len();
        if found < pos.bytes {
            return Err(SinkError::Shorter {
                target: path.display().to_string(),
                committed: pos.bytes,
                found,
            });
        }
        f.set_len(pos.bytes).map_err(io_error(path))?;
        f.sync_all().map_err(io_error(path))?;
        f.seek(SeekFrom::Start(pos.bytes)).map_err(io_error(path))?;
        Ok(FileSink {
            role: role.to_string(),
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, f),
            len: pos.bytes,
            committed: Some(pos.epoch),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for FileSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.out.write_all(bytes).map_err(io_error(&self.path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(io_error(&self.path))
    }

    fn commit(&mut self, epoch: u64) -> Result<SinkPosition, SinkError> {
        self.out.flush().map_err(io_error(&self.path))?;
        sync_data(self.out.get_ref()).map_err(io_error(&self.path))?;
        self.committed = Some(epoch);
        Ok(SinkPosition {
            role: self.role.clone(),
            target: self.path.display().to_string(),
            epoch,
            bytes: self.len,
        })
    }

    fn last_committed(&self) -> Option<u64> {
        self.committed
    }
}

/// Which standard stream a [`StdSink`] writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdStream {
    /// Standard output (buffered).
    Stdout,
    /// Standard error (written as it comes).
    Stderr,
}

/// Standard output or standard error: at least once across restarts (what was written
/// after the last checkpoint is written again).
pub struct StdSink {
    role: String,
    stream: StdStream,
    out: Box<dyn Write + Send>,
    bytes: u64,
    committed: Option<u64>,
}

impl StdSink {
    /// A sink writing to `stream`.
    pub fn new(role: &str, stream: StdStream) -> StdSink {
        let out: Box<dyn Write + Send> = match stream {
            StdStream::Stdout => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
            StdStream::Stderr => Box::new(io::stderr()),
        };
        StdSink {
            role: role.to_string(),
            stream,
            out,
            bytes: 0,
            committed: None,
        }
    }

    fn target(&self) -> &'static str {
        match self.stream {
            StdStream::Stdout => "<stdout>",
            StdStream::Stderr => "<stderr>",
        }
    }
}

impl Sink for StdSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.bytes += bytes.len() as u64;
        let target = self.target();
        self.out.write_all(bytes).map_err(|source| SinkError::Io {
            target: target.to_string(),
            source,
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let target = self.target();
        self.out.flush().map_err(|source| SinkError::Io {
            target: target.to_string(),
            source,
        })
    }

    fn commit(&mut self, epoch: u64) -> Result<SinkPosition, SinkError> {
        self.flush()?;
        self.committed = Some(epoch);
        Ok(SinkPosition {
            role: self.role.clone(),
            target: self.target().to_string(),
            epoch,
            bytes: self.bytes,
        })
    }

    fn last_committed(&self) -> Option<u64> {
        self.committed
    }
}

/// Where an output goes when its data goes elsewhere (matches written to a table): the
/// lines are dropped, commits record nothing.
pub struct NullSink {
    role: String,
    target: String,
    committed: Option<u64>,
}

impl NullSink {
    /// A sink for output `role` whose data goes to `target` by another way.
    pub fn new(role: &str, target: &str) -> NullSink {
        NullSink {
            role: role.to_string(),
            target: target.to_string(),
            committed: None,
        }
    }
}

impl Sink for NullSink {
    fn write(&mut self, _bytes: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn commit(&mut self, epoch: u64) -> Result<SinkPosition, SinkError> {
        self.committed = Some(epoch);
        Ok(SinkPosition {
            role: self.role.clone(),
            target: self.target.clone(),
            epoch,
            bytes: 0,
        })
    }

    fn last_committed(&self) -> Option<u64> {
        self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-o /dev/null` (a scale-out member commits its outputs before each state): a
    /// special file has nothing to sync, which is no error.
    #[test]
    fn a_special_file_commits() {
        let mut s = FileSink::create("matches", Path::new("/dev/null")).unwrap();
        s.write(b"one\n").unwrap();
        let pos = s.commit(1).unwrap();
        assert_eq!((pos.epoch, pos.bytes), (1, 4));
    }

    #[test]
    fn a_resumed_file_loses_what_came_after_its_commit() {
        let path = std::env::temp_dir().join(format!("motif-sink-{}.jsonl", std::process::id()));
        let mut s = FileSink::create("matches", &path).unwrap();
        s.write(b"one\n").unwrap();
        let pos = s.commit(1).unwrap();
        assert_eq!(pos.bytes, 4);
        assert_eq!(s.last_committed(), Some(1));
        s.write(b"two, never committed\n").unwrap();
        s.flush().unwrap();
        drop(s);
        let mut r = FileSink::resume("matches", &path, &pos).unwrap();
        assert_eq!(r.last_committed(), Some(1));
        r.write(b"two\n").unwrap();
        r.commit(2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        // A file cut shorter than its commit outside motif is an error, not silent loss.
        std::fs::write(&path, b"o").unwrap();
        let err = FileSink::resume("matches", &path, &pos).err().unwrap();
        assert!(err.to_string().contains("changed outside motif"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
