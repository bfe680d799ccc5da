//! Records from Kafka topics: an `rdkafka` consumer in a consumer group.
//!
//! `kafka://BROKERS/TOPIC[,TOPIC]?group=G[&option=value…]` reads JSON objects, one per
//! message, from every partition of the topics that the group gives this process. Each
//! partition of the topics (in topic, then partition order) is a source partition with its
//! own watermark; a partition assigned to another process of the group holds the watermark
//! back only until the idle timeout.
//!
//! Options besides `group` (default `motif`): `eof=true` ends the input once every assigned
//! partition is read to its end (as the broker says when the consumer gets there: a batch
//! run over a topic);
//! `key_field=F` adds the message key to each event as field `F` (a string),
//! `timestamp_field=F` the message timestamp (milliseconds) as field `F`;
//! `connect_timeout_ms=N` bounds the wait for the brokers when the run starts (default
//! 30000); `align_ms=N` sets the drift of event-time alignment (default 0, `off` turns it
//! off; see [`KafkaSource`]); any other option is a librdkafka property passed through as it is (`security.protocol=SASL_SSL`, …).
//!
//! Offsets are never committed automatically: [`KafkaSource::commit`] commits a position
//! once a checkpoint holding every result of the records before it is written, so the
//! group's offsets never run ahead of what the sinks hold. A restored position is enforced
//! on the messages themselves: a message before a partition's restored offset is passed
//! over (the checkpoint holds it), one after it makes the consumer seek back to it.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::kafka_batch::{BatchQueue, Wakeup};
use super::{unreadable, InputPosition, Record, Source, SourceError, SourcePosition};
use crate::value::push_json_str;

/// The URL scheme of Kafka sources (and sinks).
pub const PREFIX: &str = "kafka://";

/// How long to wait for the brokers' metadata when the source opens, by default.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// A Kafka source as its URL describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSpec {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topics, as given.
    pub topics: Vec<String>,
    /// The consumer group.
    pub group: String,
    /// End once every assigned partition is read to where it ended at the start.
    pub eof: bool,
    /// The field the message key goes to.
    pub key_field: Option<String>,
    /// The field the message timestamp goes to.
    pub timestamp_field: Option<String>,
    /// How long opening waits for the brokers (`connect_timeout_ms`, default 30 s).
    pub connect_timeout: Duration,
    /// librdkafka properties passed through.
    pub properties: Vec<(String, String)>,
    /// Scale-out: each partition's state goes to this compacted topic (a changelog), and
    /// the processes of the group hand partitions over with it
    /// ([`crate::pipeline::group`]).
    pub state_topic: Option<String>,
    /// Scale-out: time between two writes of every partition's state (`state_interval_ms`,
    /// default 10 s).
    pub state_interval: Duration,
    /// Scale-out over an input not partitioned by the patterns' key: every record is
    /// forwarded to this topic keyed by the key, and the tasks read it
    /// ([`crate::pipeline::repartition`]).
    pub repartition: Option<String>,
    /// Event-time alignment (`align_ms`, default 0; `off` turns it off): a partition whose
    /// newest event time is more than this many ms past the slowest partition's is read
    /// only when no other has a message ready (see [`KafkaSource`]).
    pub align: Option<i64>,
}

/// A Kafka URL's parts: `kafka://BROKERS/NAME[,NAME]?k=v&…`.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaUrl {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic names.
    pub topics: Vec<String>,
    /// The options, in order.
    pub options: Vec<(String, String)>,
}

/// Splits a Kafka URL into its parts, naming what is wrong with it.
pub fn split_url(url: &str) -> Result<KafkaUrl, String> {
    let rest = url
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("{url}: a Kafka URL begins with {PREFIX}"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (brokers, names) = path
        .split_once('/')
        .ok_or_else(|| format!("{url}: expected kafka://BROKERS/TOPIC"))?;
    if brokers.is_empty() {
        return Err(format!("{url}: no brokers (kafka://HOST:PORT/TOPIC)"));
    }
    let names: Vec<String> = names
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(format!("{url}: no topic (kafka://BROKERS/TOPIC)"));
    }
    if let Some(bad) = names.iter().find(|t| !valid_topic(t)) {
        return Err(format!(
            "{url}: `{bad}` is not a valid topic name (letters, digits, `.`, `_`, `-`; at most 249)"
        ));
    }
    let mut options = Vec::new();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("{url}: option `{kv}` has no value (NAME=VALUE)"))?;
        options.push((k.to_string(), v.to_string()));
    }
    Ok(KafkaUrl {
        brokers: brokers.to_string(),
        topics: names,
        options,
    })
}

/// Kafka's rule for topic names.
fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl KafkaSpec {
    /// Parses a source URL.
    pub fn parse(url: &str) -> Result<KafkaSpec, SourceError> {
        let KafkaUrl {
            brokers,
            topics,
            options,
        } = split_url(url).map_err(SourceError::Spec)?;
        let mut spec = KafkaSpec {
            brokers,
            topics,
            group: "motif".to_string(),
            eof: false,
            key_field: None,
            timestamp_field: None,
            connect_timeout: METADATA_TIMEOUT,
            properties: Vec::new(),
            state_topic: None,
            state_interval: Duration::from_secs(10),
            repartition: None,
            align: Some(0),
        };
        for (k, v) in options {
            match k.as_str() {
                "group" => spec.group = v,
                "eof" => {
                    spec.eof = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(SourceError::Spec(format!(
                                "{url}: eof={v}: expected true or false"
                            )))
                        }
                    }
                }
                "key_field" => spec.key_field = Some(v),
                "connect_timeout_ms" => {
                    let ms: u64 = v.parse().map_err(|_| {
                        SourceError::Spec(format!(
                            "{url}: connect_timeout_ms={v}: expected milliseconds"
                        ))
                    })?;
                    spec.connect_timeout = Duration::from_millis(ms);
                }
                "timestamp_field" => spec.timestamp_field = Some(v),
                "align_ms" => {
                    spec.align = match v.as_str() {
                        "off" => None,
                        _ => Some(v.parse().ok().filter(|ms: &i64| *ms >= 0).ok_or_else(|| {
                            SourceError::Spec(format!(
                                "{url}: align_ms={v}: expected milliseconds (≥ 0) or off"
                            ))
                        })?),
                    }
                }
                "state_topic" => {
                    if !valid_topic(&v) {
                        return Err(SourceError::Spec(format!(
                            "{url}: state_topic={v}: not a valid topic name"
                        )));
                    }
                    spec.state_topic = Some(v);
                }
                "repartition" => {
                    if !valid_topic(&v) {
                        return Err(SourceError::Spec(format!(
                            "{url}: repartition={v}: not a valid topic name"
                        )));
                    }
                    spec.repartition = Some(v);
                }
                "state_interval_ms" => {
                    let ms: u64 = v.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                        SourceError::Spec(format!(
                            "{url}: state_interval_ms={v}: expected milliseconds (> 0)"
                        ))
                    })?;
                    spec.state_interval = Duration::from_millis(ms);
                }
                "enable.auto.commit" | "enable.auto.offset.store" if v == "true" => {
                    return Err(SourceError::Spec(format!(
                        "{url}: {k}=true: motif commits offsets itself, after its checkpoints"
                    )))
                }
                _ => spec.properties.push((k, v)),
            }
        }
        Ok(spec)
    }
}

/// Has librdkafka hand a client's context every log line when the `debug` property asks
/// for debug contexts. Otherwise rdkafka takes the level from the `log` crate, which this
/// program does not use: errors only, and the debug lines are dropped.
pub fn log_level(config: &mut ClientConfig) {
    if config.get("debug").is_some_and(|d| !d.is_empty()) {
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
}

/// Errors librdkafka reports in the background (a broker down, a failed commit), shown on
/// standard error at most once per kind every ten seconds.
#[derive(Default)]
pub struct Notices {
    last: Mutex<HashMap<String, Instant>>,
}

impl Notices {
    /// Shows `what` unless the same kind was shown in the last ten seconds.
    pub fn show(&self, kind: &str, what: &str) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if last
            .get(kind)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(10))
        {
            return;
        }
        last.insert(kind.to_string(), now);
        eprintln!("motif: kafka: {what}");
    }

    /// Shows an error librdkafka reports in the background (a client context's `error`).
    pub fn client_error(&self, error: &KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            // The end of a partition is news, not an error (`eof`).
            return;
        }
        let kind = error
            .rdkafka_error_code()
            .map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
        self.show(&kind, &format!("{error}: {reason}"));
    }

    /// A line of librdkafka's log (a client context's `log`): its debug lines (there are
    /// some only when the `debug` property is set) go to standard error as they come;
    /// warnings and worse as notices (errors also come through `error`).
    pub fn client_log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        use rdkafka::config::RDKafkaLogLevel;
        match level {
            RDKafkaLogLevel::Debug => eprintln!("motif: kafka: {fac}: {line}"),
            // A property of one kind of client given to another: a URL's properties go
            // to every client motif makes for it (consumers, producers).
            _ if fac == "CONFWARN" => {}
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => self.show(fac, &format!("{fac}: {line}")),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {}
        }
    }
}

/// The consumer's context: background errors to standard error.
#[derive(Default)]
pub struct SourceContext {
    notices: Notices,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.notices.client_error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        self.notices.client_log(level, fac, line);
    }
}

impl ConsumerContext for SourceContext {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            self.notices.show(
                "commit",
                &format!("committing offsets failed (they are committed again after the next checkpoint): {e}"),
            );
        }
    }
}

/// One topic partition of the source.
struct Part {
    topic: String,
    partition: i32,
    /// `topic/partition`, the records' origin.
    origin: String,
    /// The offset of the next message to take; `None` until the first (or a restored one).
    next: Option<i64>,
    /// Messages taken (over every run, when restored).
    taken: u64,
    /// `eof`: the broker said the consumer reached the partition's end.
    at_eof: bool,
    /// Read to its end (`eof`; its end notice given or queued).
    ended: bool,
}

/// A Kafka source (see the module's documentation).
///
/// Each topic partition has a queue of its own (librdkafka's partition queues), so that the
/// source chooses which partition to read next: with event-time alignment on (`align_ms`),
/// the pipeline tells it which partitions run ahead of the slowest ([`Source::align`]) and
/// it reads the others first, a few dozen messages from one before it turns to the next,
/// and an ahead partition only when none of the others has a message ready — never waiting
/// for one. Without that, every event of a partition that runs ahead must wait in the
/// engine for the watermark, which the slowest partition holds back.
pub struct KafkaSource {
    /// Each partition's queue, read in batches. Declared before the consumer: they go
    /// first.
    batches: Vec<BatchQueue>,
    /// The same queues as `rdkafka` holds them: their non-empty callbacks wake a waiting
    /// source.
    queues: Vec<PartitionQueue<SourceContext>>,
    consumer: Arc<BaseConsumer<SourceContext>>,
    spec: KafkaSpec,
    parts: Vec<Part>,
    index: HashMap<(String, i32), usize>,
    /// The message polled and not yet returned: its partition and offset (its text in
    /// `text`).
    held: Option<(usize, i64)>,
    text: String,
    /// The text of the record returned last.
    taken_text: String,
    ended: VecDeque<usize>,
    /// Every partition has ended (`eof`).
    done: bool,
    /// Per partition: runs ahead of the slowest (the last [`Source::align`]).
    ahead: Vec<bool>,
    /// The partition read last, and how many messages in a row came from it.
    current: Option<usize>,
    run: u32,
    /// Where the next search for a partition with a message begins (round robin).
    cursor: usize,
    /// Messages taken since the consumer's own queue (rebalances, errors) was served.
    since_served: u32,
    /// A queue gave something not taken (see [`KafkaSource::poll_partition`]) since the
    /// last wait: look again instead of waiting.
    passed_over: bool,
    wakeup: Arc<Wakeup>,
}

/// At most this many messages in a row come from one partition before the others get a
/// turn.
const RUN_LENGTH: u32 = 64;

/// The consumer's own queue (rebalances, errors, commit results) is served at least once
/// every this many messages.
const SERVE_EVERY: u32 = 256;

/// At most this many messages of one partition are passed over in one look at its queue.
const PASS_OVER_AT_ONCE: usize = 4096;

/// The longest a wait for a message sleeps before it looks at every queue again.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// librdkafka's `fetch.queue.backoff.ms` for motif's consumers (a property in the URL
/// overrides it). Once a partition's local queue is over its thresholds librdkafka waits
/// this long before fetching that partition again; its default, 1,000 ms, stalled a
/// partition for 0.9 s whenever matching fell behind fetching (the Kafka bench: 170k
/// events/s with the default, 740k–940k with 10 ms).
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

impl KafkaSource {
    /// Connects, reads the topics' partitions and subscribes to them in the group.
    pub fn open(url: &str) -> Result<KafkaSource, SourceError> {
        let spec = KafkaSpec::parse(url)?;
        let shown = url.split('?').next().unwrap_or(url).to_string();
        let fail = |why: String| SourceError::Kafka {
            target: shown.clone(),
            why,
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &spec.brokers)
            .set("group.id", &spec.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
            // The end of a partition, for `eof`: told by the broker when the consumer
            // gets there (not asked for at the start, which some brokers answer wrongly).
            .set(
                "enable.partition.eof",
                if spec.eof { "true" } else { "false" },
            );
        for (k, v) in &spec.properties {
            config.set(k, v);
        }
        log_level(&mut config);
        let mut consumer: BaseConsumer<SourceContext> = config
            .create_with_context(SourceContext::default())
            .map_err(|e| fail(e.to_string()))?;
        let wakeup = Arc::new(Wakeup::default());
        let wake = Arc::clone(&wakeup);
        consumer.set_nonempty_callback(move || wake.notify());
        let consumer = Arc::new(consumer);
        let mut parts = Vec::new();
        for topic in &spec.topics {
            let md = consumer
                .fetch_metadata(Some(topic), spec.connect_timeout)
                .map_err(|e| fail(format!("cannot read the metadata of topic {topic}: {e}")))?;
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .ok_or_else(|| fail(format!("no topic {topic}")))?;
            if let Some(e) = t.error() {
                return Err(fail(format!(
                    "topic {topic}: {:?}",
                    rdkafka::error::RDKafkaErrorCode::from(e)
                )));
            }
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            if ids.is_empty() {
                return Err(fail(format!("topic {topic} has no partitions")));
            }
            ids.sort_unstable();
            for p in ids {
                parts.push(Part {
                    topic: topic.clone(),
                    partition: p,
                    origin: format!("{topic}/{p}"),
                    next: None,
                    taken: 0,
                    at_eof: false,
                    ended: false,
                });
            }
        }
        // Each partition's messages (and its end) to a queue of its own, before anything
        // is fetched: none of them is left in the consumer's queue.
        let mut queues = Vec::with_capacity(parts.len());
        let mut batches = Vec::with_capacity(parts.len());
        for p in &parts {
            let no_queue = || fail(format!("no queue for partition {}", p.origin));
            let mut queue = consumer
                .split_partition_queue(&p.topic, p.partition)
                .ok_or_else(no_queue)?;
            let wake = Arc::clone(&wakeup);
            queue.set_nonempty_callback(move || wake.notify());
            queues.push(queue);
            batches.push(BatchQueue::open(&consumer, &p.topic, p.partition).ok_or_else(no_queue)?);
        }
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| fail(format!("cannot subscribe: {e}")))?;
        let index = parts
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.topic.clone(), p.partition), i))
            .collect();
        let n = parts.len();
        let mut source = KafkaSource {
            batches,
            queues,
            consumer,
            spec,
            parts,
            index,
            held: None,
            text: String::new(),
            taken_text: String::new(),
            ended: VecDeque::new(),
            done: false,
            ahead: vec![false; n],
            current: None,
            run: 0,
            cursor: 0,
            since_served: 0,
            passed_over: false,
            wakeup,
        };
        source.end_reached();
        Ok(source)
    }

    /// Queues the end notices of partitions read to their end (`eof`).
    fn end_reached(&mut self) {
        for (i, p) in self.parts.iter_mut().enumerate() {
            if self.spec.eof && p.at_eof && !p.ended {
                p.ended = true;
                self.ended.push_back(i);
            }
        }
        if self.spec.eof && self.parts.iter().all(|p| p.ended) {
            self.done = true;
        }
    }

    /// Waits up to `timeout` for the next message: holds its record if one came.
    fn poll(&mut self, timeout: Duration) -> Result<(), SourceError> {
        let start = (!timeout.is_zero()).then(Instant::now);
        loop {
            if self.held.is_some() || self.done {
                return Ok(());
            }
            if start.is_some() {
                self.wakeup.clear();
            }
            self.since_served += 1;
            if start.is_some() || self.since_served >= SERVE_EVERY {
                self.since_served = 0;
                self.serve_consumer();
                if self.held.is_some() || self.done {
                    return Ok(());
                }
            }
            if self.take_from_partitions() {
                return Ok(());
            }
            let Some(start) = start else {
                return Ok(());
            };
            if std::mem::take(&mut self.passed_over) {
                // Something came and was passed over: look again before waiting.
                continue;
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(());
            }
            self.wakeup.wait(left.min(WAIT_SLICE));
        }
    }

    /// Serves the consumer's own queue: rebalances, errors, commit results — and messages
    /// of a partition that has no queue of its own (one the topic did not have when the
    /// run began).
    fn serve_consumer(&mut self) {
        let Some(polled) = self.consumer.poll(Duration::ZERO) else {
            return;
        };
        // Whatever it is, the queue may hold more: look again before waiting.
        self.passed_over = true;
        let msg = match polled {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                let candidates = (self.parts.iter().enumerate())
                    .filter(|(_, part)| part.partition == p)
                    .map(|(i, part)| (i, part.topic.as_str(), part.next))
                    .collect();
                for i in eof_of(&self.consumer, &self.spec.topics, p, candidates) {
                    self.parts[i].at_eof = true;
                }
                self.end_reached();
                return;
            }
            Err(e) => {
                // Broker and network errors are retried by librdkafka; say so and go on.
                self.consumer
                    .context()
                    .notices
                    .show("consume", &format!("consuming failed (retrying): {e}"));
                return;
            }
        };
        let (topic, partition) = (msg.topic(), msg.partition());
        match self.index.get(&(topic.to_string(), partition)) {
            Some(&i) => {
                match accept(&msg, &self.parts[i], &self.spec, &mut self.text) {
                    Accepted::Taken(offset) => self.held = Some((i, offset)),
                    Accepted::PassedOver => {}
                    Accepted::SendBack(next) => self.send_back(i, next),
                }
            }
            None => self.consumer.context().notices.show(
                "new-partition",
                &format!(
                    "{topic}/{partition} was not a partition of the topic when the run began: its messages are not read (restart motif to read them)"
                ),
            ),
        }
    }

    /// Takes the next message from the partitions' queues, if one is ready: from the
    /// partition read last while it has some and its run is short, else from the next
    /// partition round the ring that is not ahead, else from one that is.
    fn take_from_partitions(&mut self) -> bool {
        if let Some(c) = self.current {
            if self.run < RUN_LENGTH && !self.ahead[c] && self.poll_partition(c) {
                self.run += 1;
                return true;
            }
        }
        self.current = None;
        let n = self.queues.len();
        for read_ahead in [false, true] {
            for k in 0..n {
                let i = (self.cursor + k) % n;
                if self.ahead[i] != read_ahead {
                    continue;
                }
                if self.poll_partition(i) {
                    self.current = Some(i);
                    self.run = 1;
                    self.cursor = (i + 1) % n;
                    return true;
                }
                if self.done {
                    return false;
                }
            }
        }
        false
    }

    /// Polls partition `i`'s queue until a message is held or the queue is empty; whether
    /// a message is held. Messages not to be taken (before a restored position, past the
    /// end), the partition's end and errors are passed over without waiting: a queue is
    /// not empty after them, and its callback wakes a waiting source only when it stops
    /// being empty ([`KafkaSource::passed_over`]).
    fn poll_partition(&mut self, i: usize) -> bool {
        for _ in 0..PASS_OVER_AT_ONCE {
            let Some(msg) = self.batches[i].next_message(RUN_LENGTH as usize) else {
                return false;
            };
            if msg.is_partition_end() {
                // The notice's offset is where the consumer stands (librdkafka's position
                // is past it once a batch holds the notice).
                let at = msg.offset();
                self.partition_end(i, at);
            } else if let Some(e) = msg.error() {
                self.consumer.context().notices.show(
                    "consume",
                    &format!("consuming {} failed (retrying): {e}", self.parts[i].origin),
                );
            } else {
                match accept(&msg, &self.parts[i], &self.spec, &mut self.text) {
                    Accepted::Taken(offset) => {
                        self.held = Some((i, offset));
                        return true;
                    }
                    Accepted::PassedOver => {}
                    Accepted::SendBack(next) => self.send_back(i, next),
                }
            }
            self.passed_over = true;
            if self.done {
                return false;
            }
        }
        false
    }

    /// The broker says the consumer reached partition `i`'s end: it has ended (`eof`),
    /// unless the consumer stands past the partition's restored position (the group's
    /// offset was ahead of the checkpoint's), which sends it back there. `at`: where the
    /// consumer stands (the notice's offset).
    fn partition_end(&mut self, i: usize, at: i64) {
        if let Some(next) = self.parts[i].next.filter(|&next| at > next) {
            self.send_back(i, next);
            return;
        }
        self.parts[i].at_eof = true;
        self.end_reached();
    }

    /// Sends the consumer of partition `i` back to offset `next`, its restored position:
    /// what was taken from its queue after it comes again.
    fn send_back(&mut self, i: usize, next: i64) {
        let part = &self.parts[i];
        seek_back(&self.consumer, &part.topic, part.partition, next);
        self.batches[i].discard();
    }

    /// Commits `pos` (a position of this source) as the group's offsets, for the partitions
    /// this process holds now.
    pub fn commit(&mut self, pos: &SourcePosition) {
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for input in &pos.inputs {
            let Some(&i) = self.origin_index(&input.origin) else {
                continue;
            };
            let p = &self.parts[i];
            let held = assigned
                .elements()
                .iter()
                .any(|e| e.topic() == p.topic && e.partition() == p.partition);
            if held && input.line > 0 {
                let next = i64::try_from(input.offset).unwrap_or(i64::MAX);
                let _ = tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(next));
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                self.consumer
                    .context()
                    .notices
                    .show("commit", &format!("committing offsets failed: {e}"));
            }
        }
    }

    fn origin_index(&self, origin: &str) -> Option<&usize> {
        let (topic, p) = origin.rsplit_once('/')?;
        self.index.get(&(topic.to_string(), p.parse().ok()?))
    }
}

/// Message `msg` of partition `part`: taken (its record's text into `text`), or not — before
/// a restored position (the checkpoint holds its results), after it (the consumer is to be
/// sent back there), or past the end this run reads to (`eof`).
fn accept(msg: &impl MessageParts, part: &Part, spec: &KafkaSpec, text: &mut String) -> Accepted {
    let offset = msg.offset();
    if let Some(next) = part.next {
        if offset < next {
            return Accepted::PassedOver;
        }
        if offset > next {
            // The group's offset is behind or ahead of the checkpoint's: go to the
            // checkpoint's (messages from there on come again).
            return Accepted::SendBack(next);
        }
    }
    if part.ended {
        return Accepted::PassedOver;
    }
    // Counted in the position when it is taken (`next_record`), not now.
    message_text(msg, spec, text);
    Accepted::Taken(offset)
}

/// What [`accept`] makes of a message.
enum Accepted {
    /// To be taken: its offset (its text written).
    Taken(i64),
    /// Not to be taken.
    PassedOver,
    /// Not to be taken, and the consumer is to go back (or forward) to this offset.
    SendBack(i64),
}

/// Sends the consumer of `topic`/`partition` back (or forward) to offset `next`, a
/// restored position: the messages from there on come again. A failed seek shows in the
/// next message's offset, which asks again.
pub(crate) fn seek_back<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    next: i64,
) {
    let _ = consumer.seek(
        topic,
        partition,
        Offset::Offset(next),
        Duration::from_secs(5),
    );
}

/// Which of `candidates` (index, topic, next offset to take) — the topic partitions
/// numbered `partition` — a `PartitionEOF` of partition number `partition` is about: with
/// one topic, its partition; with several (the event names no topic), those whose consumer
/// position is where the caller stands (nothing of them is still queued).
pub(crate) fn eof_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[String],
    partition: i32,
    candidates: Vec<(usize, &str, Option<i64>)>,
) -> Vec<usize> {
    if topics.len() <= 1 {
        return candidates.into_iter().map(|(i, _, _)| i).collect();
    }
    let Ok(position) = consumer.position() else {
        return Vec::new();
    };
    candidates
        .into_iter()
        .filter(|(_, topic, next)| {
            position.elements().iter().any(|e| {
                e.topic() == *topic
                    && e.partition() == partition
                    && match (e.offset(), next) {
                        (Offset::Offset(at), Some(next)) => at == *next,
                        (_, None) => true,
                        _ => false,
                    }
            })
        })
        .map(|(i, _, _)| i)
        .collect()
}

/// The record of message `msg` as `spec` reads it: its payload (a JSON object), with the
/// message key and timestamp spliced in as fields when `spec` asks; a payload that is not
/// text is marked unreadable (rejected with the reason).
pub(crate) fn message_text(msg: &impl MessageParts, spec: &KafkaSpec, text: &mut String) {
    text.clear();
    match msg.payload() {
        None | Some([]) => *text = unreadable("empty message", b"", false),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => text.push_str(s.trim()),
            Err(_) => *text = unreadable("invalid UTF-8", bytes, false),
        },
    }
    let key_field = spec.key_field.as_deref();
    let ts_field = spec.timestamp_field.as_deref();
    if (key_field.is_some() || ts_field.is_some()) && text.ends_with('}') {
        text.pop();
        let empty = text.trim_end().ends_with('{');
        let mut first = empty;
        if let Some(f) = key_field {
            if !first {
                text.push(',');
            }
            first = false;
            push_json_str(text, f);
            text.push(':');
            match msg.key().map(String::from_utf8_lossy) {
                Some(k) => push_json_str(text, &k),
                None => text.push_str("null"),
            }
        }
        if let Some(f) = ts_field {
            if !first {
                text.push(',');
            }
            push_json_str(text, f);
            text.push(':');
            match msg.timestamp_ms() {
                Some(ms) => {
                    let _ = write!(text, "{ms}");
                }
                None => text.push_str("null"),
            }
        }
        text.push('}');
    }
}

/// What a record is made of, from a message as `rdkafka` gives it or as a
/// [`BatchQueue`] does.
pub(crate) trait MessageParts {
    fn offset(&self) -> i64;
    fn payload(&self) -> Option<&[u8]>;
    fn key(&self) -> Option<&[u8]>;
    /// The message's timestamp in milliseconds, if it has one.
    fn timestamp_ms(&self) -> Option<i64>;
}

impl<M: Message> MessageParts for M {
    fn offset(&self) -> i64 {
        Message::offset(self)
    }
    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }
    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }
    fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp().to_millis()
    }
}

impl Source for KafkaSource {
    fn next_record(&mut self) -> Option<Result<Record<'_>, SourceError>> {
        while self.held.is_none() {
            if self.done {
                return None;
            }
            if let Err(e) = self.poll(Duration::from_millis(100)) {
                return Some(Err(e));
            }
        }
        let (i, offset) = self.held.take()?;
        let part = &mut self.parts[i];
        part.next = Some(offset + 1);
        part.taken += 1;
        part.at_eof = false;
        std::mem::swap(&mut self.text, &mut self.taken_text);
        // The next message, if one is there already: then the caller knows it need not
        // wait (`may_wait`), and passes nothing on early.
        if let Err(e) = self.poll(Duration::ZERO) {
            self.consumer
                .context()
                .notices
                .show("consume", &e.to_string());
        }
        Some(Ok(Record {
            json: &self.taken_text,
            origin: &self.parts[i].origin,
            line: u64::try_from(offset).unwrap_or(0),
            partition: i,
        }))
    }

    fn ended(&mut self) -> Option<usize> {
        self.ended.pop_front()
    }

    fn may_wait(&self) -> bool {
        self.held.is_none()
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        if let Err(e) = self.poll(timeout) {
            self.consumer
                .context()
                .notices
                .show("consume", &e.to_string());
        }
        self.held.is_some() || self.done
    }

    fn partitions(&self) -> usize {
        self.parts.len()
    }

    fn alignment(&self) -> Option<i64> {
        self.spec.align.filter(|_| self.parts.len() > 1)
    }

    fn align(&mut self, ahead: &[bool]) {
        for (mine, new) in self.ahead.iter_mut().zip(ahead) {
            *mine = *new;
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition {
            interleaved: true,
            inputs: self
                .parts
                .iter()
                .map(|p| InputPosition {
                    origin: p.origin.clone(),
                    offset: p.next.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    line: p.taken,
                    ended: p.ended,
                })
                .collect(),
            next: 0,
        }
    }

    fn seek(&mut self, pos: &SourcePosition) -> Result<(), SourceError> {
        if pos.inputs.len() != self.parts.len() {
            return Err(SourceError::PositionMismatch {
                what: format!(
                    "the checkpoint read {} topic partitions, the topics have {} now",
                    pos.inputs.len(),
                    self.parts.len()
                ),
            });
        }
        for (input, part) in pos.inputs.iter().zip(self.parts.iter_mut()) {
            if input.origin != part.origin {
                return Err(SourceError::PositionMismatch {
                    what: format!(
                        "the checkpoint read {}, this run reads {}",
                        input.origin, part.origin
                    ),
                });
            }
            part.taken = input.line;
            part.next = (input.line > 0).then(|| i64::try_from(input.offset).unwrap_or(i64::MAX));
            part.ended = input.ended;
        }
        for batch in &mut self.batches {
            batch.discard();
        }
        self.end_reached();
        Ok(())
    }

    fn commit(&mut self, pos: &SourcePosition) {
        KafkaSource::commit(self, pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_brokers_topics_group_and_properties() {
        let s = KafkaSpec::parse(
            "kafka://a:9092,b:9092/t1,t2?group=g&eof=true&key_field=k&security.protocol=SSL",
        )
        .expect("valid");
        assert_eq!(s.brokers, "a:9092,b:9092");
        assert_eq!(s.topics, vec!["t1", "t2"]);
        assert_eq!(s.group, "g");
        assert!(s.eof);
        assert_eq!(s.key_field.as_deref(), Some("k"));
        assert_eq!(
            s.properties,
            vec![("security.protocol".to_string(), "SSL".to_string())]
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("kafka://host:1", "expected kafka://BROKERS/TOPIC"),
            ("kafka:///t", "no brokers"),
            ("kafka://h/", "no topic"),
            ("kafka://h/a b", "not a valid topic name"),
            ("kafka://h/t?eof=yes", "expected true or false"),
            ("kafka://h/t?group", "has no value"),
            (
                "kafka://h/t?enable.auto.commit=true",
                "commits offsets itself",
            ),
        ] {
            let e = KafkaSpec::parse(url).expect_err(url).to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
