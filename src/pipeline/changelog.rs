//! The state topic of a scale-out run: a compacted Kafka topic holding, per input topic
//! partition, the newest state of its matching (a changelog, as Kafka Streams keeps one per
//! task). Input partition `p`'s state is the message keyed `TOPIC/p` in state partition
//! `p % partitions`; compaction keeps the newest message per key, and a reader takes the
//! newest it finds, so an uncompacted topic is correct too (only slower to read).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::sink::kafka::{wait_acknowledged, DeliveryLog};

/// The largest state message written (librdkafka's `message.max.bytes` for the state
/// producer; the topic is created with the same `max.message.bytes`).
pub const MAX_STATE_BYTES: usize = 64 << 20;

/// A state topic, open for reading and writing.
pub struct Changelog {
    topic: String,
    partitions: i32,
    producer: BaseProducer<DeliveryLog>,
    reader: BaseConsumer,
    timeout: Duration,
}

/// Why the state topic could not be used.
#[derive(Debug, thiserror::Error)]
#[error("state topic {topic}: {why}")]
pub struct ChangelogError {
    /// The topic.
    pub topic: String,
    /// What went wrong.
    pub why: String,
}

impl Changelog {
    /// Opens `topic` on `brokers` (with the source's librdkafka `properties`), creating it
    /// compacted with `partitions` partitions if it does not exist.
    pub fn open(
        brokers: &str,
        topic: &str,
        partitions: i32,
        properties: &[(String, String)],
        timeout: Duration,
    ) -> Result<Changelog, ChangelogError> {
        let fail = |why: String| ChangelogError {
            topic: topic.to_string(),
            why,
        };
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (k, v) in properties {
            // Consumer-group settings mean nothing to these clients.
            if !k.starts_with("group.") && !k.starts_with("session.") {
                config.set(k, v);
            }
        }
        let mut producer_config = config.clone();
        producer_config
            .set("enable.idempotence", "true")
            .set("message.max.bytes", MAX_STATE_BYTES.to_string())
            .set("linger.ms", "0");
        let producer: BaseProducer<DeliveryLog> = producer_config
            .create_with_context(DeliveryLog::default())
            .map_err(|e| fail(format!("cannot create a producer: {e}")))?;
        let mut reader_config = config.clone();
        reader_config
            .set("group.id", format!("motif-state-reader-{topic}"))
            .set("enable.auto.commit", "false")
            .set("fetch.max.bytes", (MAX_STATE_BYTES + (1 << 20)).to_string())
            .set("max.partition.fetch.bytes", MAX_STATE_BYTES.to_string())
            .set("enable.partition.eof", "false");
        let reader: BaseConsumer = reader_config
            .create()
            .map_err(|e| fail(format!("cannot create a reader: {e}")))?;
        let partitions = ensure_topic(&config, topic, partitions, true, timeout).map_err(&fail)?;
        Ok(Changelog {
            topic: topic.to_string(),
            partitions,
            producer,
            reader,
            timeout,
        })
    }

    /// The state partition of input partition `partition`.
    fn partition_of(&self, partition: i32) -> i32 {
        partition.rem_euclid(self.partitions.max(1))
    }

    /// Writes `bytes` as the newest state of `key` (of input partition `partition`) and
    /// waits until the broker has it.
    pub fn put(&self, key: &str, partition: i32, bytes: &[u8]) -> Result<(), ChangelogError> {
        let fail = |why: String| ChangelogError {
            topic: self.topic.clone(),
            why,
        };
        if bytes.len() > MAX_STATE_BYTES {
            return Err(fail(format!(
                "the state of {key} is {} bytes, more than the {MAX_STATE_BYTES} a state message may hold",
                bytes.len()
            )));
        }
        let mut record = BaseRecord::to(&self.topic)
            .key(key)
            .payload(bytes)
            .partition(self.partition_of(partition));
        let until = Instant::now() + self.timeout;
        let failed_before = self.producer.context().failed();
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer.context().note_sent();
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < until =>
                {
                    self.producer.poll(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => return Err(fail(format!("cannot write the state of {key}: {e}"))),
            }
        }
        let failed = || {
            if self.producer.context().failed() > failed_before {
                let why = self.producer.context().first_failure().unwrap_or_default();
                return Err(fail(format!("the state of {key} was not written: {why}")));
            }
            Ok(())
        };
        if !wait_acknowledged(&self.producer, Some(until), failed)? {
            return Err(fail(format!(
                "the state of {key} was not acknowledged within {:?}",
                self.timeout
            )));
        }
        failed()
    }

    /// The newest state of `key` (of input partition `partition`), if the topic has one.
    pub fn latest(&self, key: &str, partition: i32) -> Result<Option<Vec<u8>>, ChangelogError> {
        let fail = |why: String| ChangelogError {
            topic: self.topic.clone(),
            why,
        };
        let sp = self.partition_of(partition);
        let (low, high) = self
            .reader
            .fetch_watermarks(&self.topic, sp, self.timeout)
            .map_err(|e| fail(format!("cannot read the end of partition {sp}: {e}")))?;
        if high <= low {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, sp, Offset::Offset(low))
            .map_err(|e| fail(e.to_string()))?;
        self.reader
            .assign(&tpl)
            .map_err(|e| fail(format!("cannot read partition {sp}: {e}")))?;
        let mut newest = None;
        let until = Instant::now() + self.timeout;
        let mut at = low;
        while at < high {
            if Instant::now() >= until {
                let _ = self.reader.unassign();
                return Err(fail(format!(
                    "reading partition {sp} timed out at offset {at} of {high}"
                )));
            }
            match self.reader.poll(Duration::from_millis(100)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                // The connections are down or being made again (a broker restart): librdkafka
                // reconnects; read on until the timeout.
                Some(Err(e)) if connection_error(&e) => {}
                Some(Err(e)) => {
                    let _ = self.reader.unassign();
                    return Err(fail(format!("cannot read partition {sp}: {e}")));
                }
                Some(Ok(m)) => {
                    at = m.offset() + 1;
                    if m.key() == Some(key.as_bytes()) {
                        newest = m.payload().map(<[u8]>::to_vec);
                    }
                }
            }
        }
        let _ = self.reader.unassign();
        Ok(newest)
    }
}

/// Whether `e` says the connections to the brokers failed (librdkafka makes them again),
/// not that the read itself is refused.
fn connection_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::Resolve
        )
    )
}

/// The topic's partition count, `None` if it does not exist.
fn partition_count(
    reader: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, String> {
    let md = reader
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("cannot read its metadata: {e}"))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    Ok(Some(
        i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
    ))
}

/// The partition count of `topic`, created first with `partitions` partitions
/// (`compacted` or not) if it does not exist.
pub(super) fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    compacted: bool,
    timeout: Duration,
) -> Result<i32, String> {
    let reader: BaseConsumer = config
        .clone()
        .set("group.id", "motif-metadata")
        .create()
        .map_err(|e| format!("cannot create a client: {e}"))?;
    if let Some(n) = partition_count(&reader, topic, timeout)? {
        return Ok(n);
    }
    create_topic(config, topic, partitions, compacted, timeout)?;
    let until = Instant::now() + timeout;
    loop {
        match partition_count(&reader, topic, timeout)? {
            Some(n) => return Ok(n),
            None if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            None => return Err("created, but it does not appear".to_string()),
        }
    }
}

/// Creates `topic` with `partitions` partitions (`compacted` or not; the brokers' default
/// replication factor); one that exists already is not an error.
fn create_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    compacted: bool,
    timeout: Duration,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("cannot create an admin client: {e}"))?;
    let max = MAX_STATE_BYTES.to_string();
    let mut new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(-1));
    if compacted {
        new = new
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max);
    }
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = block_on(admin.create_topics([&new], &options))
        .map_err(|e| format!("cannot create it: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(format!("cannot create it: {code}")),
        }
    }
    Ok(())
}

/// Runs a future to its end on this thread (the admin client's futures are completed by
/// its own background thread; nothing else needs an executor here).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;

    /// The connections go down and come back between two reads: the error the reader was
    /// told meanwhile does not fail the next read, which finds the newest state.
    #[test]
    fn a_read_after_the_broker_came_back_finds_the_newest_state() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("st", 1, 1).expect("topic");
        let boot = cluster.bootstrap_servers();
        let log = Changelog::open(&boot, "st", 1, &[], Duration::from_secs(20)).expect("open");
        log.put("events/0", 0, b"one").expect("put");
        assert_eq!(
            log.latest("events/0", 0).expect("read"),
            Some(b"one".to_vec())
        );
        log.put("events/0", 0, b"two").expect("put");
        cluster.broker_down(1).expect("down");
        // Long enough for the clients to see every connection fail.
        std::thread::sleep(Duration::from_millis(1500));
        cluster.broker_up(1).expect("up");
        assert_eq!(
            log.latest("events/0", 0)
                .expect("a read once the broker is back"),
            Some(b"two".to_vec())
        );
        assert_eq!(log.latest("events/1", 0).expect("read"), None);
    }
}
