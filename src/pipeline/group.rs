//! Scale-out across processes with a Kafka consumer group: `-i
//! kafka://BROKERS/TOPIC?group=G&state_topic=S`. Every process of group `G` runs this loop;
//! Kafka divides the topic's partitions among them, and each partition is a task of its own
//! (as in Kafka Streams): its own engine, watermark and state, so what a partition's events
//! give does not depend on which process reads it or what else that process reads.
//!
//! A task's state (partial matches, buffers, watermark, counters) goes to the compacted
//! state topic `S` ([`Changelog`]) with the offset it covers: every `state_interval_ms`,
//! when the partition is revoked (a clean handover) and when the run stops. Offsets are
//! committed only after the state that covers them is written, and only after every output
//! of the records before them has been delivered. A process given a partition restores its
//! newest state and goes on from its offset; if that state was written by a process that is
//! still reading (it stopped without handing over: killed, or cut off from the group), the
//! outputs of the records between the state and the partition's end at the takeover may
//! have been delivered already — they are delivered again and counted as possible
//! duplicates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::changelog::Changelog;
use super::repartition::{envelope, payload_text, Envelope, Forwarder, SourceMarks, Sources};
use super::{
    OutputSpec, Outputs, PartitionProgress, PipelineError, PipelineOptions, Progress, Summary,
    QUIET_POLL,
};
use crate::checkpoint::format;
use crate::nfa::Nfa;
use crate::output::{Render, Stream};
use crate::pattern::PatternDecl;
use crate::runtime::{Engine, EngineOptions, EngineState, Input, Output, Stats};
use crate::source::kafka::{eof_of, message_text, KafkaSpec, MessageParts, Notices};
use crate::source::kafka_batch::{BatchQueue, RawMessage, Wakeup};
use crate::source::SourceError;

/// Messages taken from a partition's queue at most before the next partition's turn (and
/// at a time from librdkafka).
const RUN_LENGTH: usize = 64;

/// Without `repartition=`: the input partitions' queues, in the order of [`Sources`], and
/// what their callbacks wake.
struct SplitQueues {
    queues: Vec<BatchQueue>,
    wakeup: Arc<Wakeup>,
}

/// What became of a message offered to the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Took {
    /// Taken, or passed over (see [`Tasks::admit`]).
    Done,
    /// Ahead of its task's restored offset: the consumer was sent back there, and what
    /// else was fetched of the partition before is stale.
    SentBack,
}

/// One input partition's state as the state topic holds it. `E`: the engine's state, owned
/// when read back, borrowed when written.
#[derive(Serialize, Deserialize)]
struct PartitionState<E = EngineState> {
    /// `topic/partition`.
    origin: String,
    /// The offset of the next message to process (`None`: none processed yet).
    next: Option<i64>,
    /// Messages processed (over every process that held the partition).
    taken: u64,
    /// Written by a process still reading the partition: a successor may find outputs of
    /// records after `next` delivered already.
    open: bool,
    /// The partition was read to its end (`eof=true`) and its engine finished.
    finished: bool,
    /// The partition's counters.
    stats: Stats,
    /// Over a repartition topic: where the partition is with each source partition.
    marks: Option<SourceMarks>,
    /// The engine's state (`None` once finished).
    engine: Option<E>,
}

/// One input partition being processed here.
struct Task {
    engine: Engine,
    topic: String,
    partition: i32,
    origin: String,
    next: Option<i64>,
    taken: u64,
    /// Until the partition's end is reached, outputs may have been delivered already by
    /// the process before (it stopped without handing over).
    replaying: bool,
    finished: bool,
    /// Records processed since the last state written.
    dirty: bool,
    /// When its last record came (for `--quiet-advance`).
    last_record: Instant,
    /// Counters before this process took the partition.
    stats_before: Stats,
    /// Counters of this engine when it was restored (the engine's own count goes on from
    /// them).
    stats_at_restore: Stats,
    /// Over a repartition topic: where it is with each source partition.
    marks: Option<SourceMarks>,
    /// Second copies of forwarded records skipped.
    copies_skipped: u64,
}

/// Everything the run loop and the rebalance callbacks share.
struct Tasks {
    decls: Vec<PatternDecl>,
    engine_options: EngineOptions,
    spec: KafkaSpec,
    changelog: Changelog,
    /// The partitions held now (a few per process: found by a scan).
    tasks: Vec<Task>,
    outputs: Outputs,
    render: Render,
    nfas: Vec<Arc<Nfa>>,
    out: Vec<Output>,
    text: String,
    /// Counters of partitions handed over by this process.
    handed_over: Stats,
    possible_duplicates: u64,
    epoch: u64,
    /// With `repartition=`: the forwarding side.
    forwarder: Option<Forwarder>,
    /// The input topics' partitions, numbered.
    sources: Sources,
    /// Without `repartition=`: which input partition each key hash came from (bounded),
    /// to say when the input is not partitioned by the key.
    key_homes: HashTable<(u64, usize)>,
    /// That was said (once per run).
    key_warned: bool,
    /// Second copies of forwarded records skipped, over the tasks handed over.
    copies_skipped: u64,
    /// The tasks' consumer was given its partitions (perhaps none) at least once.
    tasks_assigned: bool,
    /// The same for the forwarding consumer.
    forwards_assigned: bool,
    /// The topics the tasks read (the input's, or the repartition topic).
    subscribed: Vec<String>,
    /// Something the run must stop at.
    error: Option<String>,
    notices: Vec<String>,
    started: Instant,
}

/// The consumer's context: background errors to standard error, rebalances to the tasks,
/// the client's statistics to the partitions' offset lags.
struct GroupContext {
    tasks: Arc<Mutex<Tasks>>,
    notices: Notices,
    /// Per `topic/partition`: messages between the consumer's position and the end, as the
    /// client's last statistics said.
    lags: Mutex<std::collections::HashMap<String, i64>>,
    /// The forwarding consumer's (`repartition=`), not the tasks'.
    forwarding: bool,
}

impl GroupContext {
    fn offset_lags(&self) -> std::collections::HashMap<String, i64> {
        self.lags.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn lock(tasks: &Mutex<Tasks>) -> MutexGuard<'_, Tasks> {
    tasks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.notices.client_error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        self.notices.client_log(level, fac, line);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let Ok(mut lags) = self.lags.lock() else {
            return;
        };
        for (name, topic) in &statistics.topics {
            for (id, p) in &topic.partitions {
                // -1: not known (not fetched yet); partition -1 is the client's own.
                if *id >= 0 && p.consumer_lag >= 0 {
                    lags.insert(format!("{name}/{id}"), p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut t = lock(&self.tasks);
            for e in tpl.elements() {
                t.hand_over(consumer, e.topic(), e.partition());
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut t = lock(&self.tasks);
            if self.forwarding {
                t.forwards_assigned = true;
            } else {
                t.tasks_assigned = true;
            }
            for e in tpl.elements() {
                t.take_over(consumer, e.topic(), e.partition());
            }
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            self.notices.show(
                "commit",
                &format!("committing offsets failed (they are committed again after the next state): {e}"),
            );
        }
    }
}

impl Tasks {
    /// The index of the task of `topic/partition`.
    fn find(&self, topic: &str, partition: i32) -> Option<usize> {
        self.tasks
            .iter()
            .position(|t| t.partition == partition && t.topic == topic)
    }

    fn new_engine(&self) -> Result<Engine, String> {
        Engine::new(&self.decls, self.engine_options).map_err(|e| e.to_string())
    }

    /// Partition `topic/partition` is ours now: its newest state is restored (or it starts
    /// fresh), and a state saying a process is reading it is written at once.
    fn take_over<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) {
        if self.find(topic, partition).is_some() {
            return;
        }
        let origin = format!("{topic}/{partition}");
        if let Some(f) = self.forwarder.as_mut().filter(|f| f.forwards_from(topic)) {
            if let Err(e) = f.assign(topic, partition) {
                self.error.get_or_insert(format!("motif: {e}"));
            }
            return;
        }
        match self.restore(topic, partition, &origin) {
            Ok(task) => {
                self.tasks.push(task);
                if let Err(e) = self.write_state(consumer, topic, partition, true, false) {
                    self.notices.push(format!(
                        "motif: {origin}: the state saying this process reads it was not written ({e}); it is written again with the next state"
                    ));
                }
            }
            Err(e) => {
                self.error.get_or_insert(format!("motif: {origin}: {e}"));
            }
        }
    }

    fn restore(&mut self, topic: &str, partition: i32, origin: &str) -> Result<Task, String> {
        let mut task = Task {
            engine: self.new_engine()?,
            topic: topic.to_string(),
            partition,
            origin: origin.to_string(),
            next: None,
            taken: 0,
            replaying: false,
            finished: false,
            dirty: false,
            last_record: Instant::now(),
            stats_before: Stats::default(),
            stats_at_restore: Stats::default(),
            marks: self
                .forwarder
                .as_ref()
                .map(|f| SourceMarks::new(f.sources().count())),
            copies_skipped: 0,
        };
        let Some(bytes) = self
            .changelog
            .latest(origin, partition)
            .map_err(|e| e.to_string())?
        else {
            return Ok(task);
        };
        let state: PartitionState = format::decode(&bytes)
            .map_err(|e| format!("its newest state in the state topic cannot be read: {e}"))?;
        if state.origin != origin {
            return Err(format!(
                "the state topic's state for it names {} instead",
                state.origin
            ));
        }
        task.next = state.next;
        task.taken = state.taken;
        task.finished = state.finished;
        task.stats_before = state.stats;
        if task.marks.is_some() != state.marks.is_some() {
            return Err(
                "its state was written with repartition= set differently (start the group afresh: a new state topic)"
                    .to_string(),
            );
        }
        if let Some(m) = state.marks {
            task.marks = Some(m);
        }
        if let Some(s) = state.engine {
            task.stats_at_restore = s.stats;
            task.engine
                .restore(s, false)
                .map_err(|e| format!("its state does not fit the patterns: {e}"))?;
        }
        if state.open {
            task.replaying = true;
            self.notices.push(format!(
                "motif: {origin}: taken over from a process that did not hand it over: the matches of the records from offset {} to the partition's end may have been delivered already; they are delivered again and counted as possible duplicates",
                state.next.unwrap_or(0)
            ));
        }
        Ok(task)
    }

    /// Writes partition `topic/partition`'s state (`open`: this process goes on reading
    /// it) once every output so far is delivered, then commits its offset.
    fn write_state<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        open: bool,
        sync: bool,
    ) -> Result<(), String> {
        self.epoch += 1;
        self.outputs
            .commit(self.epoch)
            .map_err(|e| format!("outputs not delivered, so no state is written: {e}"))?;
        let Some(task) = self.find(topic, partition).map(|i| &mut self.tasks[i]) else {
            return Ok(());
        };
        let stats = task.stats();
        let engine = (!task.finished).then(|| task.engine.state_ref());
        let state = PartitionState {
            origin: task.origin.clone(),
            next: task.next,
            taken: task.taken,
            open,
            finished: task.finished,
            stats,
            marks: task.marks.clone(),
            engine,
        };
        let bytes = format::encode(&state).map_err(|e| e.to_string())?;
        self.changelog
            .put(&task.origin, partition, &bytes)
            .map_err(|e| e.to_string())?;
        task.dirty = false;
        if let Some(next) = task.next {
            commit(consumer, topic, partition, next, sync, &mut self.notices);
        }
        Ok(())
    }

    /// Partition `topic/partition` is revoked: its state goes to the state topic (a clean
    /// handover), its offset is committed, and it is no longer processed here.
    fn hand_over<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) {
        if let Some(f) = self.forwarder.as_mut().filter(|f| f.forwards_from(topic)) {
            match f.revoke(topic, partition) {
                Ok(Some(next)) => commit(consumer, topic, partition, next, true, &mut self.notices),
                Ok(None) => {}
                Err(e) => self.notices.push(format!(
                    "motif: {topic}/{partition}: handed over before its forwarded records were delivered ({e}): the next process forwards them again (the tasks skip second copies)"
                )),
            }
            return;
        }
        if self.find(topic, partition).is_none() {
            return;
        }
        if let Err(e) = self.write_state(consumer, topic, partition, false, true) {
            self.notices.push(format!(
                "motif: {topic}/{partition}: handed over without its newest state ({e}): the next process replays from the state before"
            ));
        }
        if let Some(i) = self.find(topic, partition) {
            let task = self.tasks.swap_remove(i);
            add(&mut self.handed_over, task.own_stats());
            self.copies_skipped += task.copies_skipped;
        }
    }

    /// With `repartition=`: the offsets of the partitions forwarded (committed through the
    /// forwarding consumer), once what was forwarded is delivered.
    fn commit_forwarded<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, sync: bool) {
        let Some(f) = self.forwarder.as_mut() else {
            return;
        };
        match f.deliver_all() {
            Ok(offsets) => {
                for (topic, partition, next) in offsets {
                    commit(consumer, &topic, partition, next, sync, &mut self.notices);
                }
            }
            Err(e) => {
                self.error.get_or_insert(format!("motif: {e}"));
            }
        }
    }

    /// Every task's state, for those with records since the last one.
    fn write_states<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, open: bool) {
        let keys: Vec<(String, i32)> = self
            .tasks
            .iter()
            .filter(|t| t.dirty || !open)
            .map(|t| (t.topic.clone(), t.partition))
            .collect();
        for (topic, partition) in keys {
            if let Err(e) = self.write_state(consumer, &topic, partition, open, !open) {
                self.error
                    .get_or_insert(format!("motif: {topic}/{partition}: {e}"));
                return;
            }
        }
    }

    /// One message from an input topic (or, with `repartition=`, from the repartition
    /// topic or a source topic to forward), as the consumer's `poll` gives it.
    fn message<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        msg: &impl Message,
        now_ms: u64,
    ) {
        if let Some(f) = self.forwarder.as_mut() {
            if f.forwards_from(msg.topic()) {
                message_text(msg, &self.spec, &mut self.text);
                if let Err(e) = f.forward(msg.topic(), msg.partition(), msg.offset(), &self.text) {
                    self.error.get_or_insert(format!("motif: {e}"));
                }
                return;
            }
        }
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        let Ok(i) = self.admit(consumer, topic, partition, offset) else {
            return;
        };
        let task = &mut self.tasks[i];
        let mut source = 0;
        if let Some(marks) = task.marks.as_mut() {
            match envelope(msg) {
                Ok(Envelope::Record { source: s, offset }) => {
                    if !marks.admit(s, offset) {
                        task.copies_skipped += 1;
                        return;
                    }
                    source = s;
                }
                Ok(Envelope::Heartbeat { source, times }) => {
                    task.engine
                        .source_progress(source, &times, now_ms, &mut self.out);
                    self.deliver(false);
                    return;
                }
                Ok(Envelope::End { source }) => {
                    let all = marks.end(source);
                    task.engine.end_source(source, &mut self.out);
                    if all && self.spec.eof {
                        task.engine.finish(&mut self.out);
                        task.finished = true;
                    }
                    self.deliver(false);
                    return;
                }
                Err(why) => {
                    self.notices.push(format!(
                        "motif: {}: offset {offset}: skipped: {why}",
                        task.origin
                    ));
                    return;
                }
            }
            payload_text(msg, &mut self.text);
        } else {
            message_text(msg, &self.spec, &mut self.text);
        }
        self.push(
            i,
            source,
            (topic, partition, offset),
            now_ms,
            Instant::now(),
        );
    }

    /// One message of input partition `topic/partition`, read from its queue (without
    /// `repartition=`: every message is a record of the input).
    #[allow(clippy::too_many_arguments)]
    fn record<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        msg: &RawMessage<'_>,
        now_ms: u64,
        now: Instant,
    ) -> Took {
        let offset = msg.offset();
        let i = match self.admit(consumer, topic, partition, offset) {
            Ok(i) => i,
            Err(took) => return took,
        };
        message_text(msg, &self.spec, &mut self.text);
        self.push(i, 0, (topic, partition, offset), now_ms, now);
        Took::Done
    }

    /// The task that takes the message at `offset` of `topic/partition`, which is its next
    /// one from now on; `Err` when no task takes it: the partition is not held (fetched
    /// before it was revoked: its new owner reads it), the message comes before the
    /// task's restored offset (the state holds its results) or after it (the consumer is
    /// sent back there), or the task has finished.
    fn admit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<usize, Took> {
        let i = self.find(topic, partition).ok_or(Took::Done)?;
        let task = &mut self.tasks[i];
        if let Some(next) = task.next {
            if offset < next {
                return Err(Took::Done);
            }
            if offset > next {
                // The group's offset is ahead of the state: back to the state's.
                crate::source::kafka::seek_back(consumer, &task.topic, task.partition, next);
                return Err(Took::SentBack);
            }
        }
        if task.finished {
            return Err(Took::Done);
        }
        task.next = Some(offset + 1);
        task.dirty = true;
        Ok(i)
    }

    /// Task `i` takes the record in `self.text` (from watermark input `source`; `at`:
    /// its topic, partition and offset) and its outputs are delivered.
    fn push(&mut self, i: usize, source: usize, at: (&str, i32, i64), now_ms: u64, now: Instant) {
        let (topic, partition, offset) = at;
        let task = &mut self.tasks[i];
        let input = Input {
            json: &self.text,
            origin: &task.origin,
            line: u64::try_from(offset).unwrap_or(0),
            partition: source,
            now_ms,
        };
        task.engine.push_input(&input, &mut self.out);
        task.taken += 1;
        task.last_record = now;
        let replayed = task.replaying;
        if task.marks.is_none() && !self.key_warned {
            if let Some(hash) = task.engine.last_key_hash() {
                self.check_key_home(hash, topic, partition, offset);
            }
        }
        self.deliver(replayed);
    }

    /// Without `repartition=`: notes which input partition the key with `hash` came from,
    /// and says once if one key comes from two (the input is not partitioned by the key).
    fn check_key_home(&mut self, hash: u64, topic: &str, partition: i32, offset: i64) {
        /// Keys remembered at most (the check is a warning, not a guarantee).
        const MOST: usize = 1 << 20;
        let Some(here) = self.sources.index(topic, partition) else {
            return;
        };
        match self.key_homes.find(hash, |e| e.0 == hash) {
            Some(&(_, home)) if home != here => {
                self.key_warned = true;
                let key = key_text(&self.decls, &self.text);
                let other = self.sources.name(home);
                self.notices.push(format!(
                    "motif: warning: key {key} comes from {topic}/{partition} (offset {offset}) and from {other}: the input is not partitioned by the patterns' key, and each partition is matched alone, so matches whose events are in different partitions are missed. Add repartition=TOPIC to the input URL to have motif repartition it by the key through that topic (shown once)"
                ));
            }
            Some(_) => {}
            None if self.key_homes.len() < MOST => {
                self.key_homes.insert_unique(hash, (hash, here), |e| e.0);
            }
            None => {}
        }
    }

    /// The broker says the consumer reached the end of partition number `partition` (of
    /// one of the topics: the event names none, see [`eof_of`]): a replay is over, and
    /// with `eof` the partition is done — its engine finishes (every window decided).
    fn end_of_partition<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, partition: i32) {
        let candidates = (self.tasks.iter().enumerate())
            .filter(|(_, t)| t.partition == partition)
            .map(|(i, t)| (i, t.topic.as_str(), t.next))
            .collect();
        for i in eof_of(consumer, &self.subscribed, partition, candidates) {
            self.task_at_end(i);
        }
    }

    /// The partition's queue says the consumer reached the end of `topic/partition`.
    fn end_of_topic_partition(&mut self, topic: &str, partition: i32) {
        if let Some(i) = self.find(topic, partition) {
            self.task_at_end(i);
        }
    }

    /// Task `i`'s partition was read to its end: a replay is over, and with `eof` the
    /// partition is done.
    fn task_at_end(&mut self, i: usize) {
        let task = &mut self.tasks[i];
        task.replaying = false;
        // Over a repartition topic a task ends with its sources' end markers.
        if self.spec.eof && !task.finished && task.marks.is_none() {
            task.engine.finish(&mut self.out);
            task.finished = true;
            task.dirty = true;
            self.deliver(false);
        }
    }

    /// With `repartition=` and `eof=true`: the forwarding consumer reached the end of
    /// partition number `partition` of a source topic; its end marker goes out.
    fn end_of_forwarded<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, partition: i32) {
        if !self.spec.eof {
            return;
        }
        let Some(f) = self.forwarder.as_mut() else {
            return;
        };
        let ended: Vec<(String, i32)> = eof_of(
            consumer,
            &self.spec.topics,
            partition,
            f.with_partition(partition),
        )
        .into_iter()
        .filter_map(|i| f.held(i).map(|(t, p)| (t.to_string(), p)))
        .collect();
        for (topic, p) in ended {
            if let Err(e) = f.end(&topic, p) {
                self.error.get_or_insert(format!("motif: {e}"));
            }
        }
    }

    /// Without `repartition=`: up to [`RUN_LENGTH`] messages from each held partition's
    /// queue, each to the partition's task; how many messages (and notices) were taken.
    fn read_partitions<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        split: &mut SplitQueues,
        now_ms: u64,
    ) -> usize {
        let now = Instant::now();
        let mut taken = 0;
        let mut i = 0;
        while i < self.tasks.len() {
            let (topic, partition) = (self.tasks[i].topic.clone(), self.tasks[i].partition);
            i += 1;
            let Some(queue) =
                (self.sources.index(&topic, partition)).and_then(|at| split.queues.get_mut(at))
            else {
                continue;
            };
            for _ in 0..RUN_LENGTH {
                let Some(msg) = queue.next_message(RUN_LENGTH) else {
                    break;
                };
                taken += 1;
                if msg.is_partition_end() {
                    self.end_of_topic_partition(&topic, partition);
                } else if let Some(e) = msg.error() {
                    self.notices.push(format!(
                        "motif: consuming {topic}/{partition} failed (retrying): {e}"
                    ));
                } else if self.record(consumer, &topic, partition, &msg, now_ms, now)
                    == Took::SentBack
                {
                    // What else was taken from the queue was fetched before the seek.
                    queue.discard();
                    break;
                }
            }
        }
        taken
    }

    /// Renders the engine's outputs to the sinks.
    fn deliver(&mut self, replayed: bool) {
        for o in self.out.drain(..) {
            let line = self.render.line(&self.nfas, &o);
            if line.stream == Stream::Watermark {
                continue;
            }
            if replayed && line.stream == Stream::Match {
                self.possible_duplicates += 1;
            }
            self.outputs.put(&line);
        }
    }

    /// Nothing came in this poll: partitions quiet for `--quiet-advance` move on.
    fn quiet(&mut self, after: Option<u64>) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        for i in 0..self.tasks.len() {
            // Over a repartition topic: a source partition silent for the idle timeout
            // stops holding the watermark back.
            let task = &mut self.tasks[i];
            if task.marks.is_some() && !task.finished {
                task.engine.tick(now_ms, &mut self.out);
                self.deliver(false);
            }
        }
        if let Some(after) = after {
            for i in 0..self.tasks.len() {
                let task = &mut self.tasks[i];
                let quiet = u64::try_from(task.last_record.elapsed().as_millis()).unwrap_or(0);
                if !task.finished && task.next.is_some() && quiet >= after {
                    task.engine.advance_quiet(quiet, &mut self.out);
                    self.deliver(false);
                }
            }
        }
        self.outputs.flush();
    }

    fn stats(&self) -> Stats {
        let mut s = self.handed_over;
        for t in &self.tasks {
            add(&mut s, t.own_stats());
        }
        s
    }
}

/// The patterns' key of a record as JSON text (for a warning), read from its text.
fn key_text(decls: &[PatternDecl], json: &str) -> String {
    let Some(decl) = decls.first() else {
        return String::new();
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return "(unreadable)".to_string();
    };
    let parts: Vec<serde_json::Value> = decl
        .key
        .iter()
        .map(|path| {
            let mut v = &value;
            for seg in path {
                v = v.get(seg).unwrap_or(&serde_json::Value::Null);
            }
            v.clone()
        })
        .collect();
    match parts.as_slice() {
        [one] => one.to_string(),
        _ => serde_json::Value::Array(parts).to_string(),
    }
}

impl Task {
    /// The partition's counters over every process that held it.
    fn stats(&self) -> Stats {
        let mut s = self.stats_before;
        add(&mut s, self.own_stats());
        s
    }

    /// What this process did with the partition.
    fn own_stats(&self) -> Stats {
        let now = self.engine.stats();
        let at = self.stats_at_restore;
        Stats {
            records: now.records.saturating_sub(at.records),
            rejected: now.rejected.saturating_sub(at.rejected),
            late: now.late.saturating_sub(at.late),
            matches: now.matches.saturating_sub(at.matches),
            timeouts: now.timeouts.saturating_sub(at.timeouts),
            dropped_runs: now.dropped_runs.saturating_sub(at.dropped_runs),
        }
    }
}

/// Forwards what the forwarding consumer has ready (a bounded batch, without waiting).
fn forward_some(fc: &BaseConsumer<GroupContext>, tasks: &Mutex<Tasks>) {
    for _ in 0..1024 {
        let polled = fc.poll(Duration::ZERO);
        let mut t = lock(tasks);
        match polled {
            None => return,
            Some(Ok(m)) => t.message(fc, &m, 0),
            Some(Err(KafkaError::PartitionEOF(p))) => t.end_of_forwarded(fc, p),
            Some(Err(e)) => fc.context().notices.show(
                "consume",
                &format!("consuming the input failed (retrying): {e}"),
            ),
        }
        if t.error.is_some() {
            return;
        }
    }
}

/// Commits `next` as `topic/partition`'s offset. During a rebalance the commit is refused;
/// the next state commits again (and a successor goes by the state's offset, not the
/// group's), so that is not reported.
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    next: i64,
    sync: bool,
    notices: &mut Vec<String>,
) {
    let mut tpl = TopicPartitionList::new();
    if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(next)) {
        notices.push(format!("motif: {topic}/{partition}: offset {next}: {e}"));
        return;
    }
    let mode = if sync {
        CommitMode::Sync
    } else {
        CommitMode::Async
    };
    match consumer.commit(&tpl, mode) {
        Ok(()) => {}
        Err(e)
            if e.rdkafka_error_code()
                == Some(rdkafka::types::RDKafkaErrorCode::RebalanceInProgress) => {}
        Err(e) => notices.push(format!(
            "motif: {topic}/{partition}: committing offset {next} failed (committed again with the next state): {e}"
        )),
    }
}

fn add(to: &mut Stats, s: Stats) {
    to.records += s.records;
    to.rejected += s.rejected;
    to.late += s.late;
    to.matches += s.matches;
    to.timeouts += s.timeouts;
    to.dropped_runs += s.dropped_runs;
}

/// What a scale-out run cannot do (with the reason), checked before it starts.
fn unsupported(options: &PipelineOptions, spec: &OutputSpec) -> Option<&'static str> {
    if !options.aggregates.is_empty() || !spec.aggregates.is_empty() {
        return Some("aggregates need every match of a window in one process; run them in a process of their own over the matches topic");
    }
    if spec.match_table().is_some() {
        return Some("a match table is written exactly once by one process; send matches to a topic and load it from there");
    }
    if options.checkpoint.is_some() {
        return Some("--checkpoint: the state goes to the state topic instead");
    }
    if options.ordered || options.strict {
        return Some("--ordered and --strict order one process's output; a group has several");
    }
    None
}

/// Runs this process as one member of the consumer group of `url` (which names a
/// `state_topic`) until `stop` is set, or, with `eof=true`, until every partition it holds
/// is read to where it ended when it was assigned.
pub fn run(
    decls: &[PatternDecl],
    options: &PipelineOptions,
    url: &str,
    spec: &OutputSpec,
    stop: &AtomicBool,
    notice: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<Summary, PipelineError> {
    let kafka = KafkaSpec::parse(url)?;
    let shown = url.split('?').next().unwrap_or(url).to_string();
    let fail = |why: String| {
        PipelineError::Source(SourceError::Kafka {
            target: shown.clone(),
            why,
        })
    };
    if let Some(why) = unsupported(options, spec) {
        return Err(fail(format!("with a state topic (scale-out): {why}")));
    }
    let Some(state_topic) = kafka.state_topic.clone() else {
        return Err(fail("no state_topic".to_string()));
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "fetch.queue.backoff.ms",
            crate::source::kafka::FETCH_QUEUE_BACKOFF_MS,
        )
        // Partition ends end replays (and, with `eof`, the partitions).
        .set("enable.partition.eof", "true")
        // Offset lags per partition, for the status line and the metrics.
        .set("statistics.interval.ms", "1000");
    for (k, v) in &kafka.properties {
        config.set(k, v);
    }
    crate::source::kafka::log_level(&mut config);
    // Partitions per topic, to size the state topic (and to say early that a topic is
    // missing).
    let probe: BaseConsumer = config.create().map_err(|e| fail(e.to_string()))?;
    let mut most = 1;
    let mut counts = Vec::new();
    for topic in &kafka.topics {
        let md = probe
            .fetch_metadata(Some(topic), kafka.connect_timeout)
            .map_err(|e| fail(format!("cannot read the metadata of topic {topic}: {e}")))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if n == 0 {
            return Err(fail(format!("no topic {topic}")));
        }
        most = most.max(i32::try_from(n).unwrap_or(i32::MAX));
        counts.push((topic.clone(), n));
    }
    let partition_counts = counts.clone();
    let sources = Sources::new(counts);
    if kafka.repartition.is_some()
        && kafka
            .topics
            .iter()
            .any(|t| Some(t) == kafka.repartition.as_ref())
    {
        return Err(fail("repartition= names an input topic".to_string()));
    }
    let forwarder = match &kafka.repartition {
        Some(topic) => Some(
            Forwarder::open(
                decls,
                &kafka.brokers,
                topic,
                most,
                sources.clone(),
                &kafka.properties,
                kafka.connect_timeout,
            )
            .map_err(fail)?,
        ),
        None => None,
    };
    let subscribed = match &kafka.repartition {
        Some(r) => vec![r.clone()],
        None => kafka.topics.clone(),
    };
    drop(probe);
    let changelog = Changelog::open(
        &kafka.brokers,
        &state_topic,
        most,
        &kafka.properties,
        kafka.connect_timeout,
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut engine_options = options.engine;
    if forwarder.is_some() {
        // Each source partition is one watermark input of a task over the repartition
        // topic; one silent for --idle-timeout stops holding it back.
        engine_options.source_partitions = sources.count();
    } else {
        engine_options.source_partitions = 1;
        engine_options.idle_timeout_ms = None;
    }
    let probe_engine = Engine::new(decls, engine_options)?;
    let nfas: Vec<Arc<Nfa>> = probe_engine.nfas().cloned().collect();
    drop(probe_engine);
    let outputs = Outputs::open(spec, None, options.format)?;
    let interval = kafka.state_interval;
    let tasks = Arc::new(Mutex::new(Tasks {
        decls: decls.to_vec(),
        engine_options,
        spec: kafka.clone(),
        changelog,
        tasks: Vec::new(),
        outputs,
        render: Render {
            format: options.format,
        },
        nfas,
        out: Vec::new(),
        text: String::new(),
        handed_over: Stats::default(),
        possible_duplicates: 0,
        epoch: 0,
        forwarder,
        sources,
        key_homes: HashTable::new(),
        key_warned: false,
        copies_skipped: 0,
        subscribed: subscribed.clone(),
        tasks_assigned: false,
        forwards_assigned: false,
        error: None,
        notices: Vec::new(),
        started: Instant::now(),
    }));
    let consumer: BaseConsumer<GroupContext> = config
        .create_with_context(GroupContext {
            tasks: Arc::clone(&tasks),
            notices: Notices::default(),
            lags: Mutex::new(std::collections::HashMap::new()),
            forwarding: false,
        })
        .map_err(|e| fail(e.to_string()))?;
    // Without `repartition=`: each input partition's messages stay in a queue of its own
    // (split before subscribing, kept over every assignment), read in batches; the
    // consumer's own queue keeps the rebalances and errors. Declared after the consumer:
    // they go first.
    let mut split = match &kafka.repartition {
        Some(_) => None,
        None => {
            let wakeup = Arc::new(Wakeup::default());
            let mut queues = Vec::new();
            for (topic, n) in &partition_counts {
                for p in 0..i32::try_from(*n).unwrap_or(i32::MAX) {
                    let q = BatchQueue::split(&consumer, topic, p, Arc::clone(&wakeup))
                        .ok_or_else(|| fail(format!("no queue for partition {topic}/{p}")))?;
                    queues.push(q);
                }
            }
            Some(SplitQueues { queues, wakeup })
        }
    };
    let topics: Vec<&str> = subscribed.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| fail(format!("cannot subscribe: {e}")))?;
    // With `repartition=`: the source topics are read by a consumer of their own, in
    // group `G-forward` (its partitions are divided among the members apart from the
    // tasks'; its ends are its own).
    let forwarding: Option<BaseConsumer<GroupContext>> = match &kafka.repartition {
        None => None,
        Some(_) => {
            let mut fconfig = config.clone();
            fconfig
                .set("group.id", format!("{}-forward", kafka.group))
                .set("statistics.interval.ms", "0");
            let fc: BaseConsumer<GroupContext> = fconfig
                .create_with_context(GroupContext {
                    tasks: Arc::clone(&tasks),
                    notices: Notices::default(),
                    lags: Mutex::new(std::collections::HashMap::new()),
                    forwarding: true,
                })
                .map_err(|e| fail(e.to_string()))?;
            let sources: Vec<&str> = kafka.topics.iter().map(String::as_str).collect();
            fc.subscribe(&sources)
                .map_err(|e| fail(format!("cannot subscribe: {e}")))?;
            Some(fc)
        }
    };
    // While forwarding, the tasks' consumer waits briefly, so both are served.
    let task_poll = if forwarding.is_some() {
        Duration::from_millis(5)
    } else {
        QUIET_POLL
    };
    let mut last_state = Instant::now();
    let mut failed = None;
    let mut interrupted = false;
    let mut ever_assigned = false;
    let mut gate = super::ProgressGate::default();
    loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        if let Some(fc) = &forwarding {
            forward_some(fc, &tasks);
        }
        // The consumer's own queue (rebalances, errors; the messages too with
        // `repartition=`, or of a partition the topic did not have at the start) is
        // served first; then, without `repartition=`, the partitions' queues.
        if let Some(q) = &split {
            q.wakeup.clear();
        }
        let polled = consumer.poll(if split.is_some() {
            Duration::ZERO
        } else {
            task_poll
        });
        let mut t = lock(&tasks);
        let now_ms = u64::try_from(t.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut quiet = false;
        match polled {
            Some(Ok(m)) => t.message(&consumer, &m, now_ms),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                t.end_of_partition(&consumer, p);
                quiet = true;
            }
            None => quiet = true,
            Some(Err(e)) => consumer
                .context()
                .notices
                .show("consume", &format!("consuming failed (retrying): {e}")),
        }
        if let Some(q) = &mut split {
            if t.read_partitions(&consumer, q, now_ms) > 0 {
                quiet = false;
            } else if quiet {
                // Nothing anywhere: wait for a partition's queue (or, at most `task_poll`
                // later, look at the consumer's own again).
                t.quiet(options.quiet_advance_ms);
                drop(t);
                q.wakeup.wait(task_poll);
                t = lock(&tasks);
                quiet = false;
            }
        }
        if quiet {
            t.quiet(options.quiet_advance_ms);
        }
        for n in std::mem::take(&mut t.notices) {
            notice(&n);
        }
        if let Some(f) = t.forwarder.as_mut() {
            if let Err(e) = f.heartbeat() {
                t.error.get_or_insert(format!("motif: {e}"));
            }
        }
        if let Some(e) = t.error.take() {
            failed = Some(e);
            break;
        }
        if let Some(e) = t.outputs.error.take() {
            failed = Some(format!("motif: cannot write output: {e}"));
            break;
        }
        if last_state.elapsed() >= interval {
            t.write_states(&consumer, true);
            if let Some(fc) = &forwarding {
                t.commit_forwarded(fc, false);
            }
            last_state = Instant::now();
        }
        // With `repartition=`, both consumers must have had their share (a member given
        // no partition of one of them is done with it), and its tasks end with every
        // source's end marker.
        ever_assigned |= match t.forwarder {
            None => !t.tasks.is_empty(),
            Some(_) => t.tasks_assigned && t.forwards_assigned,
        };
        let forwarded = t.forwarder.as_ref().is_none_or(Forwarder::all_ended);
        if kafka.eof && ever_assigned && forwarded && t.tasks.iter().all(|task| task.finished) {
            break;
        }
        if !gate.due() {
            continue;
        }
        let stats = t.stats();
        let lags = consumer.context().offset_lags();
        let parts: Vec<PartitionProgress> = t
            .tasks
            .iter()
            .map(|task| {
                let own = task.own_stats();
                PartitionProgress {
                    origin: task.origin.clone(),
                    records: own.records,
                    matches: own.matches,
                    partial_matches: task.engine.open_partial_matches(),
                    watermark: task.engine.watermark(),
                    offset_lag: lags.get(&task.origin).copied(),
                }
            })
            .collect();
        let lag = t
            .tasks
            .iter()
            .filter_map(|task| task.engine.watermark_lag())
            .max();
        drop(t);
        progress(&Progress {
            stats: &stats,
            partial_matches: Some(parts.iter().map(|p| p.partial_matches).sum()),
            watermark_lag: lag,
            aggregates: None,
            partitions: &parts,
        });
    }
    // Every partition handed over with its newest state; leaving the group then revokes
    // nothing more.
    {
        let mut t = lock(&tasks);
        t.write_states(&consumer, false);
        if let Some(fc) = &forwarding {
            t.commit_forwarded(fc, true);
        }
        for task in std::mem::take(&mut t.tasks) {
            add(&mut t.handed_over, task.own_stats());
            t.copies_skipped += task.copies_skipped;
        }
        if let Some(f) = t.forwarder.as_ref() {
            let (forwarded, skipped) = (f.forwarded, t.copies_skipped);
            notice(&format!(
                "motif: repartition: {forwarded} record(s) forwarded here; {skipped} second copies skipped"
            ));
        }
        for n in std::mem::take(&mut t.notices) {
            notice(&n);
        }
        if let Some(e) = t.error.take() {
            failed.get_or_insert(e);
        }
    }
    if let Some(fc) = forwarding {
        fc.unsubscribe();
    }
    consumer.unsubscribe();
    drop(split);
    drop(consumer);
    let mut t = lock(&tasks);
    t.outputs.flush();
    let epoch = t.epoch + 1;
    let end = t.outputs.commit(epoch).err();
    if let Some(e) = t.outputs.error.take().or(end) {
        failed.get_or_insert(format!("motif: cannot write output: {e}"));
    }
    let stats = t.stats();
    Ok(Summary {
        stats,
        failed,
        resumed_from: None,
        interrupted,
        already_finished: false,
        aggregates: None,
        possible_duplicates: t.possible_duplicates,
    })
}
