//! A batch sink on a thread of its own, behind a bounded queue.
//!
//! Writing a batch into a database takes a round trip or several (and, while the database
//! is unreachable, as long as it stays so). A [`TableWriter`] takes the batches a run cuts
//! and writes them on its own thread, in order, so matching goes on while a batch is being
//! written. The queue holds at most [`QUEUED_BATCHES`] batches besides the one being
//! written: when it is full, [`TableWriter::submit`] waits — the run, and so its source,
//! pauses until the database takes the batch (back-pressure, nothing dropped).
//!
//! What became of each batch comes back as a [`Written`], in batch order. After a batch
//! fails, the thread writes nothing more (the run stops on that error; a run resumed from a
//! checkpoint replays the batches after it). A run waits for every batch to be written
//! ([`TableWriter::wait`]) before it takes a checkpoint and before it ends, so a checkpoint
//! never covers a batch still in the queue.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::table::{BatchReport, DbError, TableSink};
use crate::aggregate::Batch;

/// Batches waiting for the writer besides the one it writes.
pub const QUEUED_BATCHES: usize = 2;

/// What became of one batch given to a [`TableWriter`].
#[derive(Debug)]
pub struct Written {
    /// The batch's aggregate (index among the run's).
    pub agg: usize,
    /// The batch id.
    pub batch: u64,
    /// Its report, or why it failed; `None`: not attempted, an earlier batch failed.
    pub outcome: Option<Result<BatchReport, DbError>>,
}

/// A [`TableSink`] writing on its own thread (see the module's documentation).
pub struct TableWriter {
    target: String,
    queue: Option<SyncSender<Batch>>,
    reports: Receiver<Written>,
    thread: Option<JoinHandle<()>>,
    /// Batches submitted whose [`Written`] has not come back.
    in_flight: usize,
}

impl TableWriter {
    /// Starts the thread writing into `sink`.
    pub fn spawn(mut sink: Box<dyn TableSink>) -> std::io::Result<TableWriter> {
        let target = sink.target().to_string();
        let (queue, batches) = mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
        let (done, reports) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("motif-table-writer".to_string())
            .spawn(move || {
                let mut failed = false;
                for b in batches {
                    let outcome = if failed {
                        None
                    } else {
                        let r = sink.write_batch(&b);
                        failed = r.is_err();
                        Some(r)
                    };
                    let w = Written {
                        agg: b.agg,
                        batch: b.id,
                        outcome,
                    };
                    if done.send(w).is_err() {
                        break;
                    }
                }
            })?;
        Ok(TableWriter {
            target,
            queue: Some(queue),
            reports,
            thread: Some(thread),
            in_flight: 0,
        })
    }

    /// Where it writes, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Queues `batch` (waiting while the queue is full) and returns what came back so far.
    pub fn submit(&mut self, batch: Batch) -> Vec<Written> {
        let (agg, id) = (batch.agg, batch.id);
        let sent = self.queue.as_ref().is_some_and(|q| q.send(batch).is_ok());
        if sent {
            self.in_flight += 1;
        }
        let mut out = self.ready();
        if !sent {
            out.push(self.lost(agg, id));
        }
        out
    }

    /// What came back so far, without waiting.
    pub fn ready(&mut self) -> Vec<Written> {
        let mut out = Vec::new();
        while let Ok(w) = self.reports.try_recv() {
            self.in_flight -= 1;
            out.push(w);
        }
        out
    }

    /// Waits until every batch submitted is written (or failed), and returns what came back.
    pub fn wait(&mut self) -> Vec<Written> {
        let mut out = self.ready();
        while self.in_flight > 0 {
            match self.reports.recv() {
                Ok(w) => {
                    self.in_flight -= 1;
                    out.push(w);
                }
                Err(_) => {
                    // The thread is gone: the batches it held were not written.
                    self.in_flight = 0;
                    out.push(self.lost(usize::MAX, 0));
                }
            }
        }
        out
    }

    /// The report of a batch the thread cannot take (it ended).
    fn lost(&mut self, agg: usize, batch: u64) -> Written {
        self.queue = None;
        Written {
            agg,
            batch,
            outcome: Some(Err(DbError::Refused {
                target: self.target.clone(),
                what: format!("batch {batch}"),
                why: "the table writer's thread ended".to_string(),
            })),
        }
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has written what it holds.
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::OutputMode;
    use std::sync::{Arc, Mutex};

    /// Records batch ids; fails on `fail_at`; each write waits for a permit.
    struct Recorder {
        written: Arc<Mutex<Vec<u64>>>,
        fail_at: Option<u64>,
        permits: Option<Receiver<()>>,
    }

    impl TableSink for Recorder {
        fn write_batch(&mut self, batch: &Batch) -> Result<BatchReport, DbError> {
            if let Some(p) = &self.permits {
                let _ = p.recv();
            }
            if self.fail_at == Some(batch.id) {
                return Err(DbError::Refused {
                    target: "t".into(),
                    what: "x".into(),
                    why: "no".into(),
                });
            }
            if let Ok(mut w) = self.written.lock() {
                w.push(batch.id);
            }
            Ok(BatchReport {
                written: batch.rows.len() as u64,
                ..BatchReport::default()
            })
        }
        fn committed(&self) -> Option<u64> {
            None
        }
        fn target(&self) -> &str {
            "recorder"
        }
    }

    fn batch(id: u64) -> Batch {
        Batch {
            agg: 0,
            id,
            mode: OutputMode::Append,
            rows: Vec::new(),
            watermark: 0,
        }
    }

    #[test]
    fn batches_are_written_in_order_and_wait_returns_every_report() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Recorder {
            written: Arc::clone(&written),
            fail_at: None,
            permits: None,
        };
        let mut w = TableWriter::spawn(Box::new(sink)).expect("thread");
        let mut reports = Vec::new();
        for id in 1..=20 {
            reports.extend(w.submit(batch(id)));
        }
        reports.extend(w.wait());
        let ids: Vec<u64> = reports.iter().map(|r| r.batch).collect();
        assert_eq!(ids, (1..=20).collect::<Vec<_>>());
        assert!(reports.iter().all(|r| matches!(r.outcome, Some(Ok(_)))));
        assert_eq!(*written.lock().expect("lock"), (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_holds_the_submitter_back() {
        let (permit, permits) = mpsc::channel();
        let sink = Recorder {
            written: Arc::default(),
            fail_at: None,
            permits: Some(permits),
        };
        let mut w = TableWriter::spawn(Box::new(sink)).expect("thread");
        let (tx, rx) = mpsc::channel();
        let submitter = std::thread::spawn(move || {
            // One being written, QUEUED_BATCHES queued, and one more that must wait.
            let mut reports = 0;
            for id in 1..=(QUEUED_BATCHES as u64 + 2) {
                reports += w.submit(batch(id)).len();
                let _ = tx.send(id);
            }
            reports + w.wait().len()
        });
        let mut seen = Vec::new();
        while let Ok(id) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            seen.push(id);
        }
        // The writer holds batch 1 (no permit yet): the last submit is still waiting.
        assert_eq!(seen.len(), QUEUED_BATCHES + 1, "submitted: {seen:?}");
        for _ in 0..QUEUED_BATCHES + 2 {
            permit.send(()).expect("writer alive");
        }
        assert_eq!(submitter.join().expect("submitter"), QUEUED_BATCHES + 2);
    }

    #[test]
    fn after_a_failed_batch_nothing_more_is_written() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Recorder {
            written: Arc::clone(&written),
            fail_at: Some(3),
            permits: None,
        };
        let mut w = TableWriter::spawn(Box::new(sink)).expect("thread");
        let mut reports = Vec::new();
        for id in 1..=6 {
            reports.extend(w.submit(batch(id)));
        }
        reports.extend(w.wait());
        assert_eq!(*written.lock().expect("lock"), vec![1, 2]);
        assert!(matches!(reports[2].outcome, Some(Err(_))));
        assert!(reports[3..].iter().all(|r| r.outcome.is_none()));
    }
}
