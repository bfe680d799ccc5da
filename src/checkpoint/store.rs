//! A directory of checkpoints: each written atomically (a temporary file, fsync, rename,
//! fsync of the directory), the last few kept, the newest readable one loaded.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::format::FormatError;

/// Checkpoints kept in the directory (older ones are removed after each write).
pub const KEEP: usize = 3;

const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".motifckp";

/// Why a checkpoint directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// Every checkpoint in the directory is unreadable.
    #[error("{dir}: no readable checkpoint: {reasons}")]
    NoneReadable {
        /// The directory.
        dir: String,
        /// Why each failed.
        reasons: String,
    },
}

/// A checkpoint file that could not be used, and why (the previous one is used instead).
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

/// What [`Store::load_newest`] found: the newest readable checkpoint (id and value), if
/// any, and the newer files it skipped.
pub type Loaded<T> = (Option<(u64, T)>, Vec<Skipped>);

/// A directory holding checkpoints.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Store {
    /// The store in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of checkpoint `id`.
    pub fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{id:020}{SUFFIX}"))
    }

    /// Ids of the checkpoints present, oldest first.
    pub fn ids(&self) -> Result<Vec<u64>, StoreError> {
        let mut ids: Vec<u64> = fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                name.strip_prefix(PREFIX)?
                    .strip_suffix(SUFFIX)?
                    .parse()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Writes checkpoint `id` atomically: a reader sees the whole file or none of it, even
    /// after a crash or power loss. Then removes all but the newest [`KEEP`].
    pub fn write(&self, id: u64, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let path = self.path_of(id);
        let tmp = self.dir.join(format!(".{PREFIX}{id:020}.tmp"));
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(bytes).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        // The rename is durable once the directory is.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let ids = self.ids()?;
        if ids.len() > KEEP {
            for old in &ids[..ids.len() - KEEP] {
                let p = self.path_of(*old);
                let _ = fs::remove_file(&p);
            }
        }
        Ok(path)
    }

    /// Loads the newest checkpoint `read` accepts, newest first: a file that is truncated,
    /// corrupt or unreadable is reported in the list of skipped files and the one before it
    /// is tried. `Ok(None)` when the directory holds no checkpoint at all.
    pub fn load_newest<T>(
        &self,
        mut read: impl FnMut(&[u8]) -> Result<T, FormatError>,
    ) -> Result<Loaded<T>, StoreError> {
        let ids = self.ids()?;
        let mut skipped = Vec::new();
        for id in ids.iter().rev() {
            let path = self.path_of(*id);
            let result = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| read(&b).map_err(|e| e.to_string()));
            match result {
                Ok(v) => return Ok((Some((*id, v)), skipped)),
                Err(error) => skipped.push(Skipped { path, error }),
            }
        }
        if skipped.is_empty() {
            return Ok((None, skipped));
        }
        Err(StoreError::NoneReadable {
            dir: self.dir.display().to_string(),
            reasons: skipped
                .iter()
                .map(|s| format!("{}: {}", s.path.display(), s.error))
                .collect::<Vec<_>>()
                .join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::format;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("motif-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn keeps_the_last_few_and_loads_the_newest() {
        let d = temp_dir("keep");
        let s = Store::open(&d).unwrap();
        assert!(s.load_newest(format::decode::<u64>).unwrap().0.is_none());
        for id in 1..=5u64 {
            s.write(id, &format::encode(&(id * 10)).unwrap()).unwrap();
        }
        assert_eq!(s.ids().unwrap(), vec![3, 4, 5]);
        let (newest, skipped) = s.load_newest(format::decode::<u64>).unwrap();
        assert_eq!(newest, Some((5, 50)));
        assert!(skipped.is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_corrupt_newest_falls_back_to_the_previous() {
        let d = temp_dir("corrupt");
        let s = Store::open(&d).unwrap();
        s.write(1, &format::encode(&10u64).unwrap()).unwrap();
        s.write(2, &format::encode(&20u64).unwrap()).unwrap();
        let mut bytes = fs::read(s.path_of(2)).unwrap();
        bytes.truncate(bytes.len() - 1);
        fs::write(s.path_of(2), &bytes).unwrap();
        let (newest, skipped) = s.load_newest(format::decode::<u64>).unwrap();
        assert_eq!(newest, Some((1, 10)));
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].path, s.path_of(2));
        assert!(
            skipped[0].error.contains("truncated"),
            "{}",
            skipped[0].error
        );
        // All unreadable: an error naming each file.
        fs::write(s.path_of(1), b"garbage").unwrap();
        let err = s
            .load_newest(format::decode::<u64>)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a motif checkpoint"), "{err}");
        assert!(err.contains(&s.path_of(2).display().to_string()), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }
}
