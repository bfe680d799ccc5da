//! `motif produce FILE kafka://BROKERS/TOPIC[?key=FIELD]`: each line of a JSON-lines file
//! (or standard input) as one message of a topic, keyed by a field of the line — to put
//! events on a topic for a run to read (what `kcat -P` does), with nothing but motif.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::source::kafka::split_url;

/// Runs the command; the exit status.
pub(super) fn produce(input: &Path, url: &str) -> i32 {
    let parts = match split_url(url) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("motif: produce: {e}");
            return 2;
        }
    };
    let [topic] = parts.topics.as_slice() else {
        eprintln!("motif: produce: {url}: one topic");
        return 2;
    };
    let mut key_field = None;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &parts.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20");
    for (k, v) in &parts.options {
        if k == "key" {
            key_field = Some(v.clone());
        } else {
            config.set(k, v);
        }
    }
    let producer: BaseProducer = match config.create() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("motif: produce: {url}: {e}");
            return 1;
        }
    };
    let reader: Box<dyn Read> = if input == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        match std::fs::File::open(input) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("motif: produce: {}: {e}", input.display());
                return 1;
            }
        }
    };
    let (mut sent, mut without_key) = (0u64, 0u64);
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("motif: produce: {} line {}: {e}", input.display(), n + 1);
                return 1;
            }
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let key = key_field.as_deref().and_then(|f| key_of(line, f));
        if key_field.is_some() && key.is_none() {
            without_key += 1;
        }
        let mut record = BaseRecord::<str, str>::to(topic).payload(line);
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => {
                    eprintln!("motif: produce: {url}: line {}: {e}", n + 1);
                    return 1;
                }
            }
        }
        sent += 1;
    }
    if let Err(e) = producer.flush(Duration::from_secs(60)) {
        eprintln!("motif: produce: {url}: not every message was acknowledged: {e}");
        return 1;
    }
    eprintln!(
        "motif: produce: {sent} messages to {topic}{}",
        if without_key > 0 {
            format!(" ({without_key} without the key field, sent without a key)")
        } else {
            String::new()
        }
    );
    0
}

/// The value of top-level field `field` of JSON line `line` as a key: a string as it is,
/// anything else as its JSON text; `None` if the line is not an object or lacks it.
fn key_of(line: &str, field: &str) -> Option<String> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
    match v.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::key_of;

    #[test]
    fn keys_are_strings_or_json_text() {
        assert_eq!(key_of(r#"{"s":"a","n":7}"#, "s").as_deref(), Some("a"));
        assert_eq!(key_of(r#"{"s":"a","n":7}"#, "n").as_deref(), Some("7"));
        assert_eq!(key_of(r#"{"s":null}"#, "s"), None);
        assert_eq!(key_of("not json", "s"), None);
    }
}
