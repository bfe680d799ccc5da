//! Repartitioning by the patterns' key through an internal topic, as Kafka Streams does:
//! `-i kafka://BROKERS/TOPIC?group=G&state_topic=S&repartition=R`. When the input topic is
//! not partitioned by the key the patterns match per, one key's events are spread over
//! several partitions, and a scale-out run (one task per partition) would match each part
//! alone. With `repartition=R` every member of the group also *forwards*: the input
//! partitions it holds are read and each record is written to topic `R`, keyed by the
//! patterns' key, so that every key's events meet in one partition of `R`; the tasks then
//! run over `R`'s partitions.
//!
//! Each forwarded record carries where it came from (its source partition and offset, in
//! message headers). A task keeps, per source partition, the newest offset it processed (in
//! its state), so a record forwarded twice — a forwarder that stopped without committing
//! reads its partition again from the last commit — is processed once. Records of one
//! source partition keep their order in `R` (an idempotent producer; a partition is
//! forwarded by one member at a time), which is what that needs.
//!
//! Event time: a task's watermark is the minimum over the source partitions (each source
//! partition is one watermark input of the task's engine, as files are), so results do not
//! depend on how fast each forwarder runs. Forwarders send a heartbeat to every partition
//! of `R` with the newest times they have forwarded (a source partition whose keys never
//! reach some partition of `R` would hold its watermark back otherwise), and an end marker
//! when their partition ends with `eof=true`; a task over `R` is finished once every source
//! partition's end marker has reached it.
//!
//! Offsets of the input topic are committed only once every record before them is
//! acknowledged by `R`'s brokers. Known limit: a member cut off from the group that goes on
//! forwarding (a "zombie") while its successor forwards the same partition can interleave
//! the two copies in `R`; Kafka Streams fences it with transactions, which motif does not
//! rely on (see the Kafka documentation in the README).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::changelog::ensure_topic;
use crate::pattern::PatternDecl;
use crate::runtime::{Engine, EngineOptions};
use crate::sink::kafka::DeliveryLog;

/// The header naming a forwarded record's source partition (its index, see
/// [`Sources::index`]).
const SOURCE: &str = "motif-source";
/// The header holding a forwarded record's offset in its source partition.
const OFFSET: &str = "motif-offset";
/// The header of a heartbeat: the newest time per pattern forwarded from the source.
const TIMES: &str = "motif-times";
/// The header of an end marker: the source partition has ended.
const END: &str = "motif-end";

/// How often a forwarder tells every partition of the repartition topic how far its
/// source partitions have come.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(200);

/// How long one wait for the producer's queue lasts.
const POLL: Duration = Duration::from_millis(100);

/// The source partitions a repartition topic merges, numbered: topic `i`'s partition `p`
/// is source `base[i] + p`. Each is one watermark input of a task's engine.
#[derive(Debug, Clone)]
pub struct Sources {
    topics: Vec<String>,
    base: Vec<usize>,
    count: usize,
}

impl Sources {
    /// The sources of `topics` with these partition counts.
    pub fn new(topics: Vec<(String, usize)>) -> Sources {
        let mut base = Vec::with_capacity(topics.len());
        let mut count = 0;
        for (_, n) in &topics {
            base.push(count);
            count += n;
        }
        Sources {
            topics: topics.into_iter().map(|(t, _)| t).collect(),
            base,
            count,
        }
    }

    /// Number of source partitions.
    pub fn count(&self) -> usize {
        self.count
    }

    /// `topic/partition` of source `index`.
    pub fn name(&self, index: usize) -> String {
        let i = self.base.iter().rposition(|b| *b <= index).unwrap_or(0);
        let topic = self.topics.get(i).map_or("?", String::as_str);
        format!("{topic}/{}", index - self.base.get(i).copied().unwrap_or(0))
    }

    /// The index of `topic`'s partition `partition`, if it is one of the sources (a
    /// partition added after the start is not).
    pub fn index(&self, topic: &str, partition: i32) -> Option<usize> {
        let i = self.topics.iter().position(|t| t == topic)?;
        let p = usize::try_from(partition).ok()?;
        let end = self.base.get(i + 1).copied().unwrap_or(self.count);
        let at = self.base[i] + p;
        (at < end).then_some(at)
    }
}

/// What a message of the repartition topic is.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// A record forwarded from source `source`, where it had offset `offset`.
    Record {
        /// The source partition's index.
        source: usize,
        /// Its offset there.
        offset: i64,
    },
    /// Source `source` has forwarded every record up to these times (per pattern).
    Heartbeat {
        /// The source partition's index.
        source: usize,
        /// The newest time per pattern (`None`: none yet, or the pattern has no time).
        times: Vec<Option<i64>>,
    },
    /// Source `source` has ended: nothing more comes from it.
    End {
        /// The source partition's index.
        source: usize,
    },
}

/// Reads a repartition topic message's headers; `Err` names what is missing (a message
/// not written by a motif forwarder).
pub fn envelope(msg: &impl Message) -> Result<Envelope, String> {
    let Some(headers) = msg.headers() else {
        return Err(
            "a message without motif's headers (not written by a motif forwarder)".to_string(),
        );
    };
    let text = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let source = text(SOURCE)
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or_else(|| format!("no readable {SOURCE} header (not written by a motif forwarder)"))?;
    if text(END).is_some() {
        return Ok(Envelope::End { source });
    }
    if let Some(times) = text(TIMES) {
        let times = times.split(',').map(|t| t.parse::<i64>().ok()).collect();
        return Ok(Envelope::Heartbeat { source, times });
    }
    let offset = text(OFFSET)
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("no readable {OFFSET} header"))?;
    Ok(Envelope::Record { source, offset })
}

/// The text of a repartition topic message (the forwarder wrote the record's text as the
/// source read it, message key and timestamp fields included).
pub fn payload_text(msg: &impl Message, text: &mut String) {
    text.clear();
    if let Some(s) = msg.payload().and_then(|b| std::str::from_utf8(b).ok()) {
        text.push_str(s);
    }
}

/// Why the patterns cannot be repartitioned by one key, if they cannot.
pub fn one_key(decls: &[PatternDecl]) -> Result<(), String> {
    let Some(first) = decls.first() else {
        return Err("no patterns".to_string());
    };
    if let Some(other) = decls.iter().find(|d| d.key != first.key) {
        return Err(format!(
            "patterns {} and {} have different keys; a topic can be partitioned by one (run them in groups of their own)",
            first.name, other.name
        ));
    }
    Ok(())
}

/// One source partition being forwarded by this process.
struct Forward {
    topic: String,
    partition: i32,
    source: usize,
    /// The offset of the next record to forward (`None`: none forwarded yet).
    next: Option<i64>,
    /// The newest time per pattern forwarded (for heartbeats).
    times: Vec<Option<i64>>,
    /// Times changed since the last heartbeat.
    moved: bool,
    /// The end marker was sent.
    ended: bool,
}

/// The forwarding side: the repartition topic's producer and the source partitions held.
pub struct Forwarder {
    topic: String,
    partitions: i32,
    producer: BaseProducer<DeliveryLog>,
    /// Decodes records for their key and times only.
    probe: Engine,
    /// The patterns have a key (else every record goes to one partition).
    keyed: bool,
    sources: Sources,
    held: Vec<Forward>,
    times: Vec<Option<i64>>,
    last_heartbeat: Instant,
    /// Records forwarded by this process.
    pub forwarded: u64,
}

impl Forwarder {
    /// Opens repartition topic `topic` on `brokers`, creating it with `partitions`
    /// partitions if it does not exist, for records of `sources` keyed as `decls` say.
    pub fn open(
        decls: &[PatternDecl],
        brokers: &str,
        topic: &str,
        partitions: i32,
        sources: Sources,
        properties: &[(String, String)],
        timeout: Duration,
    ) -> Result<Forwarder, String> {
        one_key(decls)?;
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (k, v) in properties {
            if !k.starts_with("group.") && !k.starts_with("session.") {
                config.set(k, v);
            }
        }
        let partitions = ensure_topic(&config, topic, partitions, false, timeout)
            .map_err(|e| format!("repartition topic {topic}: {e}"))?;
        let mut producer_config = config.clone();
        producer_config
            .set("enable.idempotence", "true")
            // Waits while the brokers are away rather than dropping (offsets stay behind).
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5");
        let producer = producer_config
            .create_with_context(DeliveryLog::default())
            .map_err(|e| format!("repartition topic {topic}: cannot create a producer: {e}"))?;
        let probe = Engine::new(decls, EngineOptions::default()).map_err(|e| e.to_string())?;
        Ok(Forwarder {
            topic: topic.to_string(),
            partitions,
            producer,
            probe,
            keyed: decls.first().is_some_and(|d| !d.key.is_empty()),
            sources,
            held: Vec::new(),
            times: Vec::new(),
            last_heartbeat: Instant::now(),
            forwarded: 0,
        })
    }

    /// The repartition topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The sources it merges.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Whether `topic` is one it forwards from.
    pub fn forwards_from(&self, topic: &str) -> bool {
        self.sources.topics.iter().any(|t| t == topic)
    }

    fn find(&self, topic: &str, partition: i32) -> Option<usize> {
        self.held
            .iter()
            .position(|f| f.partition == partition && f.topic == topic)
    }

    /// Source partition `topic/partition` is this process's to forward now (from the
    /// group's committed offset).
    pub fn assign(&mut self, topic: &str, partition: i32) -> Result<(), String> {
        if self.find(topic, partition).is_some() {
            return Ok(());
        }
        let source = self.sources.index(topic, partition).ok_or_else(|| {
            format!("{topic}/{partition}: a partition added after the start is not forwarded (restart the group)")
        })?;
        self.held.push(Forward {
            topic: topic.to_string(),
            partition,
            source,
            next: None,
            times: Vec::new(),
            moved: false,
            ended: false,
        });
        Ok(())
    }

    /// Source partition `topic/partition` is revoked: what was forwarded from it is
    /// delivered and its offset is returned, to commit before another member reads it.
    pub fn revoke(&mut self, topic: &str, partition: i32) -> Result<Option<i64>, String> {
        let Some(i) = self.find(topic, partition) else {
            return Ok(None);
        };
        self.deliver_all()?;
        Ok(self.held.swap_remove(i).next)
    }

    /// Whether every source partition held has ended (with `eof=true`).
    pub fn all_ended(&self) -> bool {
        self.held.iter().all(|f| f.ended)
    }

    /// Forwards one record of `topic/partition` at `offset` (its text as the source reads
    /// it). `false`: not a partition held here (fetched before it was revoked).
    pub fn forward(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        text: &str,
    ) -> Result<bool, String> {
        let Some(i) = self.find(topic, partition) else {
            return Ok(false);
        };
        let key = self.probe.key_and_times(text, &mut self.times);
        // `None`: a record the task will reject (and count).
        let key: Option<&[u8]> = match &key {
            Some(Some(k)) => Some(k),
            Some(None) if !self.keyed => Some(b""),
            _ => None,
        };
        let f = &mut self.held[i];
        if f.ended {
            return Ok(true);
        }
        if key.is_some() {
            if f.times.len() < self.times.len() {
                f.times.resize(self.times.len(), None);
            }
            for (have, t) in f.times.iter_mut().zip(&self.times) {
                if let Some(t) = *t {
                    if have.is_none_or(|h| t > h) {
                        *have = Some(t);
                        f.moved = true;
                    }
                }
            }
        }
        let source = f.source.to_string();
        let at = offset.to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: SOURCE,
                value: Some(source.as_bytes()),
            })
            .insert(Header {
                key: OFFSET,
                value: Some(at.as_bytes()),
            });
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic)
            .payload(text.as_bytes())
            .headers(headers);
        record = match key {
            Some(k) => record.key(k),
            // A record without a readable key goes on to partition 0; its task rejects it
            // with the reason (and counts it), as a run over the source itself would.
            None => record.partition(0),
        };
        send(&self.producer, record)?;
        self.held[i].next = Some(offset + 1);
        self.forwarded += 1;
        Ok(true)
    }

    /// Sends a message with these headers and no payload to every partition.
    fn send_to_every_partition(
        &self,
        source: usize,
        name: &str,
        value: &str,
    ) -> Result<(), String> {
        let s = source.to_string();
        for p in 0..self.partitions {
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: SOURCE,
                    value: Some(s.as_bytes()),
                })
                .insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            let record = BaseRecord::<[u8], [u8]>::to(&self.topic)
                .partition(p)
                .payload(&[][..])
                .headers(headers);
            send(&self.producer, record)?;
        }
        Ok(())
    }

    /// Every [`HEARTBEAT_EVERY`]: each source partition whose times moved tells every
    /// partition of the repartition topic how far it has come.
    pub fn heartbeat(&mut self) -> Result<(), String> {
        self.producer.poll(Duration::ZERO);
        if self.last_heartbeat.elapsed() < HEARTBEAT_EVERY {
            return Ok(());
        }
        self.last_heartbeat = Instant::now();
        for i in 0..self.held.len() {
            let f = &mut self.held[i];
            if !f.moved || f.ended {
                continue;
            }
            f.moved = false;
            let times: Vec<String> = f
                .times
                .iter()
                .map(|t| t.map(|t| t.to_string()).unwrap_or_default())
                .collect();
            let source = f.source;
            self.send_to_every_partition(source, TIMES, &times.join(","))?;
        }
        self.failure()
    }

    /// Source partition `topic/partition` is read to its end (`eof=true`): its end marker
    /// goes to every partition of the repartition topic, after everything forwarded.
    pub fn end(&mut self, topic: &str, partition: i32) -> Result<(), String> {
        let Some(i) = self.find(topic, partition) else {
            return Ok(());
        };
        if self.held[i].ended {
            return Ok(());
        }
        self.held[i].ended = true;
        let source = self.held[i].source;
        self.send_to_every_partition(source, END, "1")
    }

    /// Partition number `partition` of some source topic reached its end: the held
    /// source partitions with that number, for [`crate::source::kafka::eof_of`].
    pub fn with_partition(&self, partition: i32) -> Vec<(usize, &str, Option<i64>)> {
        self.held
            .iter()
            .enumerate()
            .filter(|(_, f)| f.partition == partition)
            .map(|(i, f)| (i, f.topic.as_str(), f.next))
            .collect()
    }

    /// The held source partition at index `i` of [`Forwarder::with_partition`]'s list.
    pub fn held(&self, i: usize) -> Option<(&str, i32)> {
        self.held.get(i).map(|f| (f.topic.as_str(), f.partition))
    }

    /// Waits until every record forwarded is acknowledged (as long as the brokers are
    /// away), then gives each held source partition's next offset, to commit.
    pub fn deliver_all(&mut self) -> Result<Vec<(String, i32, i64)>, String> {
        crate::sink::kafka::wait_acknowledged(&self.producer, None, || self.failure())?;
        self.failure()?;
        Ok(self
            .held
            .iter()
            .filter_map(|f| f.next.map(|n| (f.topic.clone(), f.partition, n)))
            .collect())
    }

    fn failure(&self) -> Result<(), String> {
        match self.producer.context().first_failure() {
            None => Ok(()),
            Some(why) => Err(format!(
                "repartition topic {}: messages not delivered: {why}",
                self.topic
            )),
        }
    }
}

/// Sends `record`, waiting while the producer's queue is full (back-pressure).
fn send(
    producer: &BaseProducer<DeliveryLog>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), String> {
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.context().note_sent();
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                producer.poll(POLL);
                record = r;
            }
            Err((e, r)) => {
                return Err(format!(
                    "repartition topic {}: cannot send a message: {e}",
                    r.topic
                ))
            }
        }
    }
}

/// Where a task over a repartition topic is with each source partition: the newest offset
/// processed (a record at or before it is a second copy) and whether it has ended.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SourceMarks {
    /// Per source partition: the newest offset processed.
    pub offsets: Vec<Option<i64>>,
    /// Per source partition: its end marker came.
    pub ended: Vec<bool>,
}

impl SourceMarks {
    /// Marks for `count` source partitions.
    pub fn new(count: usize) -> SourceMarks {
        SourceMarks {
            offsets: vec![None; count],
            ended: vec![false; count],
        }
    }

    /// Whether the record of `source` at `offset` is new (and, if so, it counts as seen).
    pub fn admit(&mut self, source: usize, offset: i64) -> bool {
        let Some(seen) = self.offsets.get_mut(source) else {
            return false;
        };
        if seen.is_some_and(|s| offset <= s) {
            return false;
        }
        *seen = Some(offset);
        true
    }

    /// Source `source` ended; `true` when every source has.
    pub fn end(&mut self, source: usize) -> bool {
        if let Some(e) = self.ended.get_mut(source) {
            *e = true;
        }
        self.all_ended()
    }

    /// Every source has ended.
    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_numbered_topic_by_topic() {
        let s = Sources::new(vec![("a".into(), 2), ("b".into(), 3)]);
        assert_eq!(s.count(), 5);
        assert_eq!(s.index("a", 1), Some(1));
        assert_eq!(s.index("b", 0), Some(2));
        assert_eq!(s.index("b", 2), Some(4));
        assert_eq!(s.index("b", 3), None, "a partition added later");
        assert_eq!(s.index("a", 2), None);
        assert_eq!(s.index("c", 0), None);
        assert_eq!(s.index("a", -1), None);
        assert_eq!(s.name(1), "a/1");
        assert_eq!(s.name(4), "b/2");
    }

    #[test]
    fn a_record_forwarded_twice_is_admitted_once() {
        let mut m = SourceMarks::new(2);
        assert!(m.admit(0, 5));
        assert!(m.admit(1, 3), "another source has its own offsets");
        assert!(!m.admit(0, 5), "the same record again");
        assert!(!m.admit(0, 4), "an earlier record again");
        assert!(m.admit(0, 6));
        assert!(!m.admit(7, 0), "an unknown source");
        assert!(!m.end(0));
        assert!(m.end(1));
    }

    #[test]
    fn patterns_with_different_keys_cannot_share_a_repartition() {
        let decls = crate::syntax::load_str(
            "x",
            r#"pattern p key k = begin("a").where(t == "A");
               pattern q key j = begin("a").where(t == "A");"#,
        )
        .expect("patterns");
        let e = one_key(&decls).expect_err("different keys");
        assert!(e.contains("p and q"), "{e}");
        assert!(one_key(&decls[..1]).is_ok());
    }
}
