//! Kafka in and out, against librdkafka's in-process mock cluster (a real Kafka protocol
//! listener on 127.0.0.1, served by this test process; the motif binary connects to it).
//!
//! Each test has its own cluster and topics. The events are keyed by the pattern key, so
//! each key's events keep their order in one partition, and are in time order without
//! disorder, so that a run over the topic (watermark: the minimum over its 4 partitions)
//! finds exactly the matches of a run over the same events from a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;

const PATTERN: &str = r#"
pattern abc key key time ts
= begin("a").where(type == "A")
  .followedBy("b").where(type == "B")
  .followedBy("c").where(type == "C")
  .within(50ms);
"#;

fn motif() -> Command {
    Command::new(env!("CARGO_BIN_EXE_motif"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("motif-kafka-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A mock cluster of one broker with a topic `events` of 4 partitions.
fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(1).expect("mock cluster");
    c.create_topic("events", 4, 1).expect("topic");
    c
}

/// `n` generated events (50 keys, in time order), as lines, written to `dir/events.jsonl`.
fn events(dir: &Path, n: u64) -> Vec<String> {
    let path = dir.join("events.jsonl");
    let st = motif()
        .args([
            "gen",
            "-n",
            &n.to_string(),
            "--keys",
            "50",
            "--seed",
            "5",
            "-o",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Produces `lines` to `topic`, each keyed by its `key` field.
fn produce(boot: &str, topic: &str, lines: &[String]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", boot)
        .create()
        .expect("producer");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        let mut rec = BaseRecord::to(topic).payload(l.as_str()).key(key.as_str());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    p.poll(Duration::from_millis(10));
                    rec = r;
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// Every message of `topic` (all partitions), waiting until `n` came or 60 s passed.
fn consume(boot: &str, topic: &str, n: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", boot)
        .set("group.id", "test-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while out.len() < n && Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap());
        }
    }
    // Anything more than `n` would show here.
    let quiet = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap());
        }
    }
    out
}

fn sorted(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// The matches of a run over the events from a file.
fn file_run(dir: &Path) -> Vec<String> {
    let out = dir.join("file-matches.jsonl");
    let st = motif()
        .args(["run", "-q"])
        .arg(dir.join("p.motif"))
        .arg("-i")
        .arg(dir.join("events.jsonl"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let m = sorted(&std::fs::read_to_string(out).unwrap());
    assert!(m.len() > 50, "the events give matches: {}", m.len());
    m
}

#[test]
fn a_four_partition_topic_gives_the_matches_of_the_file_run_on_a_matches_topic() {
    let dir = scratch("topic");
    std::fs::write(dir.join("p.motif"), PATTERN).unwrap();
    let lines = events(&dir, 20_000);
    let c = cluster();
    let boot = c.bootstrap_servers();
    c.create_topic("matches", 2, 1).unwrap();
    produce(&boot, "events", &lines);
    let expected = file_run(&dir);
    let o = motif()
        .args(["run"])
        .arg(dir.join("p.motif"))
        .arg("-i")
        .arg(format!("kafka://{boot}/events?group=g1&eof=true"))
        .arg("-o")
        .arg(format!("kafka://{boot}/matches"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("20000 records"), "{stderr}");
    let mut got = consume(&boot, "matches", expected.len());
    got.sort();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

#[test]
fn a_killed_run_resumes_from_its_checkpoint_and_offsets_and_loses_and_repeats_nothing() {
    let dir = scratch("resume");
    std::fs::write(dir.join("p.motif"), PATTERN).unwrap();
    let lines = events(&dir, 30_000);
    let c = cluster();
    let boot = c.bootstrap_servers();
    let expected = file_run(&dir);
    // The first half is on the topic when the service starts; it runs until killed.
    produce(&boot, "events", &lines[..15_000]);
    let out = dir.join("matches.jsonl");
    let ck = dir.join("ck");
    let run = |source: &str| {
        let mut cmd = motif();
        cmd.args(["run", "-q"])
            .arg(dir.join("p.motif"))
            .arg("-i")
            .arg(source)
            .arg("-o")
            .arg(&out)
            .arg("--late-output")
            .arg(dir.join("late.jsonl"))
            .arg("--checkpoint")
            .arg(&ck)
            .args(["--checkpoint-interval", "200ms"]);
        cmd
    };
    // A short session, so that the killed member leaves the group soon.
    let session = "session.timeout.ms=6000&heartbeat.interval.ms=500";
    let mut child = run(&format!("kafka://{boot}/events?group=g2&{session}"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once a checkpoint covers some of the first half.
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let held = std::fs::read_dir(&ck).map_or(0, |d| d.count());
        if held > 1 && std::fs::metadata(&out).map_or(0, |m| m.len()) > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    // The rest arrives while it is down; the restarted run reads to the end and stops.
    produce(&boot, "events", &lines[15_000..]);
    let o = run(&format!(
        "kafka://{boot}/events?group=g2&eof=true&{session}"
    ))
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("resumed from checkpoint"), "{stderr}");
    let got = sorted(&std::fs::read_to_string(&out).unwrap());
    let late = std::fs::read_to_string(dir.join("late.jsonl")).unwrap_or_default();
    assert_eq!(
        late.lines().count(),
        0,
        "late: {}",
        &late[..late.len().min(2000)]
    );
    assert_eq!(got.len(), expected.len(), "matches: none lost, none twice");
    assert_eq!(got, expected);
}

#[test]
fn an_unreachable_broker_is_a_clear_error_not_a_crash() {
    let dir = scratch("unreachable");
    std::fs::write(dir.join("p.motif"), PATTERN).unwrap();
    // Nothing listens on port 1; the metadata request fails after its timeout.
    let o = motif()
        .args(["run", "-q"])
        .arg(dir.join("p.motif"))
        .args(["-i", "kafka://127.0.0.1:1/events?connect_timeout_ms=2000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("kafka://127.0.0.1:1/events"), "{stderr}");
    assert!(stderr.contains("metadata"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
