//! Lines to a Kafka topic: one message per line, keyed by the pattern key.
//!
//! `kafka://BROKERS/TOPIC[?property=value…]` as an output (`-o`, `--timeouts-output`,
//! `--late-output`, `--rejects-output`) sends each line as one message, keyed by the line's
//! `key` (its JSON text; no key when the line has none), through an idempotent producer
//! (`enable.idempotence=true`: librdkafka's retries never duplicate or reorder a message).
//! Messages wait in librdkafka's queue while the brokers are unreachable (no delivery
//! timeout: `message.timeout.ms=0`); when the queue is full, writing waits (back-pressure).
//!
//! Delivery is at least once: a commit (each checkpoint) waits until every message sent is
//! acknowledged; a run resumed from a checkpoint sends again what it sent after it, so a
//! crash can repeat the messages after the last checkpoint (and only those). A message the
//! brokers refuse for good (too large, no such topic, not authorised) fails the commit and
//! the run, naming why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::{Sink, SinkError, SinkPosition};
use crate::source::kafka::{split_url, KafkaUrl, Notices};

/// How long one wait for the producer's queue lasts.
const POLL: Duration = Duration::from_millis(100);

/// Counts deliveries and keeps the first failure.
#[derive(Default)]
pub struct DeliveryLog {
    sent: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
    notices: Notices,
}

impl ClientContext for DeliveryLog {
    fn error(&self, error: KafkaError, reason: &str) {
        self.notices.client_error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        self.notices.client_log(level, fac, line);
    }
}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut f) = self.first_failure.lock() {
                    f.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

impl DeliveryLog {
    /// Counts a message handed to the producer (its delivery report counts against it).
    pub fn note_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages sent that are neither acknowledged nor failed yet.
    pub fn unacknowledged(&self) -> u64 {
        let done = self.delivered.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        self.sent.load(Ordering::Relaxed).saturating_sub(done)
    }

    /// Messages failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first delivery failure, with how many messages failed, if any did.
    pub fn first_failure(&self) -> Option<String> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return None;
        }
        let why = (self.first_failure.lock().ok()).and_then(|f| f.clone());
        Some(format!("{failed} message(s): {}", why.unwrap_or_default()))
    }
}

/// Serves `producer`'s delivery reports until every message sent through it is
/// acknowledged or failed, or until `until`; whether none is left waiting. `failed` is
/// asked after each wait and ends it with its error.
///
/// Not librdkafka's `flush`: that also waits for its event queue to be empty, and every
/// wake-up it makes can put an event there (a log line with the `debug` property, an
/// error while the brokers are away), so it could go on for ever.
pub fn wait_acknowledged<E>(
    producer: &BaseProducer<DeliveryLog>,
    until: Option<std::time::Instant>,
    mut failed: impl FnMut() -> Result<(), E>,
) -> Result<bool, E> {
    while producer.context().unacknowledged() > 0 {
        if until.is_some_and(|u| std::time::Instant::now() >= u) {
            return Ok(false);
        }
        producer.poll(POLL);
        failed()?;
    }
    Ok(true)
}

/// A Kafka topic as a sink of lines (see the module's documentation).
pub struct KafkaSink {
    producer: BaseProducer<DeliveryLog>,
    role: String,
    topic: String,
    target: String,
    /// Messages sent (over every run, when resumed).
    sent: u64,
    committed: Option<u64>,
}

impl KafkaSink {
    /// A producer for the run's `role` output at `url` (`kafka://BROKERS/TOPIC?…`);
    /// `resumed`: the checkpoint's position of this sink.
    pub fn open(
        role: &str,
        url: &str,
        resumed: Option<&SinkPosition>,
    ) -> Result<KafkaSink, SinkError> {
        let target = url.split('?').next().unwrap_or(url).to_string();
        let fail = |why: String| SinkError::Kafka {
            target: target.clone(),
            why,
        };
        let KafkaUrl {
            brokers,
            topics,
            options,
        } = split_url(url).map_err(&fail)?;
        let [topic] = <[String; 1]>::try_from(topics)
            .map_err(|_| fail("an output writes to one topic".to_string()))?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5");
        for (k, v) in &options {
            config.set(k, v);
        }
        crate::source::kafka::log_level(&mut config);
        let producer: BaseProducer<DeliveryLog> = config
            .create_with_context(DeliveryLog::default())
            .map_err(|e| fail(e.to_string()))?;
        Ok(KafkaSink {
            producer,
            role: role.to_string(),
            topic,
            sent: resumed.map_or(0, |p| p.bytes),
            committed: resumed.map(|p| p.epoch),
            target,
        })
    }

    /// Where it writes (without options), as checkpoints record it.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn send(&mut self, line: &[u8]) -> Result<(), SinkError> {
        let key = key_of(line);
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(line);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Back-pressure: wait for deliveries to make room.
                    self.producer.poll(POLL);
                    record = r;
                }
                Err((e, _)) => {
                    return Err(SinkError::Kafka {
                        target: self.target.clone(),
                        why: format!("cannot send a message: {e}"),
                    })
                }
            }
        }
        self.sent += 1;
        self.producer.context().note_sent();
        Ok(())
    }

    fn failure(&self) -> Result<(), SinkError> {
        match self.producer.context().first_failure() {
            None => Ok(()),
            Some(why) => Err(SinkError::Kafka {
                target: self.target.clone(),
                why: format!("not delivered: {why}"),
            }),
        }
    }
}

/// The JSON text of a line's top-level `key`, if it has one.
fn key_of(line: &[u8]) -> Option<&[u8]> {
    #[derive(serde::Deserialize)]
    struct Keyed<'a> {
        #[serde(borrow)]
        key: Option<&'a serde_json::value::RawValue>,
    }
    let text = std::str::from_utf8(line).ok()?;
    let k: Keyed<'_> = serde_json::from_str(text.trim_end()).ok()?;
    k.key.map(|r| r.get().as_bytes())
}

impl Sink for KafkaSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.send(line)?;
        }
        self.producer.poll(Duration::ZERO);
        self.failure()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.producer.poll(Duration::ZERO);
        self.failure()
    }

    fn commit(&mut self, epoch: u64) -> Result<SinkPosition, SinkError> {
        // Every message sent acknowledged (waiting as long as the brokers are away).
        wait_acknowledged(&self.producer, None, || self.failure())?;
        self.failure()?;
        self.committed = Some(epoch);
        Ok(SinkPosition {
            role: self.role.clone(),
            target: self.target.clone(),
            epoch,
            bytes: self.sent,
        })
    }

    fn last_committed(&self) -> Option<u64> {
        self.committed
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // What a run sent after its last commit still goes out (the end of a run commits;
        // this is for an error path).
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let _ = wait_acknowledged(&self.producer, Some(until), || Ok::<(), ()>(()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_of_a_match_line_is_its_json_text() {
        assert_eq!(
            key_of(br#"{"pattern":"p","key":"42","start":1}"#),
            Some(&br#""42""#[..])
        );
        assert_eq!(
            key_of(br#"{"pattern":"p","key":[1,"a"]}"#),
            Some(&br#"[1,"a"]"#[..])
        );
        assert_eq!(key_of(br#"{"pattern":"p"}"#), None);
        assert_eq!(key_of(b"not json"), None);
    }

    /// With librdkafka's `debug` property (its log lines come through the client's event
    /// queue) a commit still returns once the messages are acknowledged.
    #[test]
    fn a_commit_with_debug_logging_returns() {
        use rdkafka::mocking::MockCluster;

        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("out", 1, 1).expect("topic");
        let url = format!(
            "kafka://{}/out?debug=broker,msg",
            cluster.bootstrap_servers()
        );
        let mut sink = KafkaSink::open("matches", &url, None).expect("sink");
        sink.write(b"{\"key\":\"k\",\"n\":1}\n{\"n\":2}\n")
            .expect("write");
        let committed = commit_within(sink, 1, 30).expect("the commit returns");
        assert_eq!(committed.expect("commit"), 2);
    }

    /// Commits `sink` at `epoch` on a thread of its own: the messages sent so far, or
    /// `None` if the commit did not return within `secs`.
    fn commit_within(mut sink: KafkaSink, epoch: u64, secs: u64) -> Option<Result<u64, SinkError>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(sink.commit(epoch).map(|p| p.bytes));
            sink
        });
        let committed = rx.recv_timeout(Duration::from_secs(secs)).ok()?;
        drop(waiter.join());
        Some(committed)
    }

    /// The broker goes away with messages in flight and comes back: the commit waits for
    /// it and then every message is acknowledged, none lost.
    #[test]
    fn a_broker_that_goes_down_and_comes_back_acknowledges_every_message() {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::mocking::MockCluster;
        use rdkafka::Message;

        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("out", 1, 1).expect("topic");
        let boot = cluster.bootstrap_servers();
        let url = format!("kafka://{boot}/out");
        let mut sink = KafkaSink::open("matches", &url, None).expect("sink");
        let lines = |from: usize, to: usize| -> Vec<u8> {
            (from..to)
                .flat_map(|i| format!("{{\"key\":\"k{}\",\"n\":{i}}}\n", i % 7).into_bytes())
                .collect()
        };
        sink.write(&lines(0, 500)).expect("write");
        sink.commit(1).expect("commit before");
        // Messages in flight when the broker goes, and more while it is away.
        for i in 0..10 {
            sink.write(&lines(500 + i * 50, 550 + i * 50))
                .expect("write");
            if i == 2 {
                cluster.broker_down(1).expect("down");
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        cluster.broker_up(1).expect("up");
        let committed =
            commit_within(sink, 2, 60).expect("the commit returns once the broker is back");
        assert_eq!(committed.expect("commit after"), 1000);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &boot)
            .set("group.id", "check")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["out"]).expect("subscribe");
        let mut seen = std::collections::BTreeSet::new();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while seen.len() < 1000 && std::time::Instant::now() < until {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let v: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("json");
                seen.insert(v["n"].as_u64().expect("n"));
            }
        }
        assert_eq!(seen.len(), 1000, "every message on the topic once");
    }
}
