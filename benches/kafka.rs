//! Kafka end to end on one core: events consumed from a local broker's topic, matched, the
//! matches produced to another topic (`motif::pipeline::run` over a Kafka source, one
//! worker, `eof=true`), against the raw consume rate of the same topic in the same run —
//! the ceiling (target: at least half of it).
//!
//! The broker is tansu (`cargo install tansu@0.6.0 --locked --features dynostore`, or
//! `$TANSU`) on a port of its own, in memory; without it, librdkafka's mock cluster in this
//! process (`--broker mock` asks for it). Both rates are counted from the first message
//! (the group join before it is not the pipeline's cost).
//!
//! `cargo bench --bench kafka` (options after `--`: `--events N`, default 200,000;
//! `--rounds R`, default 3; `--broker tansu|mock`). No assertion on any figure.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use motif::pipeline::{self, OutputSpec, PipelineOptions};
use motif::runtime::EngineOptions;
use motif::sink::table::DbErrorPolicy;
use motif::source::gen::GenSource;
use motif::source::kafka::KafkaSource;
use motif::source::Source;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;

/// The throughput bench's scenario (b).
const ABC: &str = r#"
pattern abc
    key key
    time ts
= begin("A", skipPastLastEvent()).where(type == "A")
  .next("B").where(type == "B" and price > A.price).oneOrMore().consecutive().greedy()
  .next("C").where(type == "C")
  .within(10s);
"#;

/// The broker, kept until the bench ends (the mock cluster lives as long as its value).
enum Broker {
    Tansu(Child),
    Mock(#[allow(dead_code)] MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Tansu(c) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tansu_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".cargo/bin/tansu")).filter(|p| p.is_file())
}

/// A broker with a 4-partition topic `events` and a topic `matches`; its bootstrap address.
fn broker(kind: Option<&str>) -> (Broker, String, &'static str) {
    if kind != Some("mock") {
        if let Some(tansu) = tansu_binary() {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(&tansu)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start tansu");
            let boot = format!("127.0.0.1:{port}");
            while std::net::TcpStream::connect(&boot).is_err() {
                std::thread::sleep(Duration::from_millis(50));
            }
            for (topic, n) in [("events", "4"), ("matches", "1")] {
                let st = Command::new(&tansu)
                    .args([
                        "topic",
                        "create",
                        topic,
                        "--partitions",
                        n,
                        "--broker",
                        &url,
                    ])
                    .stdout(Stdio::null())
                    .status()
                    .expect("tansu topic create");
                assert!(st.success());
            }
            return (Broker::Tansu(child), boot, "tansu 0.6 (memory), a process");
        }
    }
    let c = MockCluster::new(1).expect("mock cluster");
    c.create_topic("events", 4, 1).expect("topic");
    c.create_topic("matches", 1, 1).expect("topic");
    let boot = c.bootstrap_servers();
    (
        Broker::Mock(c),
        boot,
        "librdkafka's mock cluster, in this process",
    )
}

/// Produces `n` generated events (1,000 keys), keyed by their `key` field.
fn produce(boot: &str, n: u64) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", boot)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()
        .expect("producer");
    let mut gen = GenSource::new(&format!("gen:events={n},keys=1000,seed=7")).expect("gen");
    while let Some(Ok(r)) = gen.next_record() {
        let key = r
            .json
            .split_once("\"key\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or("", |(k, _)| k)
            .to_string();
        let mut rec = BaseRecord::to("events").payload(r.json).key(key.as_str());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    p.poll(Duration::from_millis(5));
                    rec = back;
                }
            }
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

/// Raw consume: every message of `events` read (payload touched); messages/s from the
/// first message.
fn raw(boot: &str, group: &str, n: u64) -> f64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", boot)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&["events"]).expect("subscribe");
    let (mut got, mut bytes) = (0u64, 0usize);
    let mut first = None;
    while got < n {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, <[u8]>::len);
            got += 1;
        }
    }
    std::hint::black_box(bytes);
    let t = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    n as f64 / t
}

/// Consume, match, produce: events/s from the first record, and the matches.
fn end_to_end(boot: &str, group: &str) -> (f64, u64, u64) {
    let decls = motif::syntax::load_str("abc.motif", ABC).expect("pattern");
    let mut source = KafkaSource::open(&format!("kafka://{boot}/events?group={group}&eof=true"))
        .expect("kafka source");
    let options = PipelineOptions {
        engine: EngineOptions {
            source_partitions: source.partitions(),
            ..EngineOptions::default()
        },
        workers: 1,
        ordered: false,
        strict: false,
        format: motif::output::OutputFormat::JsonLines,
        checkpoint: None,
        aggregates: Vec::new(),
        db_errors: DbErrorPolicy::Skip,
        batch_records: pipeline::DEFAULT_BATCH_RECORDS,
        quiet_advance_ms: None,
    };
    let spec = OutputSpec {
        matches: Some(PathBuf::from(format!("kafka://{boot}/matches"))),
        ..OutputSpec::default()
    };
    let stop = AtomicBool::new(false);
    let mut first = None;
    let summary = pipeline::run(
        &decls,
        &options,
        &mut source,
        &spec,
        &stop,
        &mut |_| {},
        &mut |_| {
            first.get_or_insert_with(Instant::now);
        },
    )
    .expect("run");
    let t = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let s = summary.stats;
    (s.records as f64 / t, s.records, s.matches)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let events: u64 = opt("--events")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let rounds: usize = opt("--rounds").and_then(|s| s.parse().ok()).unwrap_or(3);
    let (_broker, boot, what) = broker(opt("--broker").as_deref());
    produce(&boot, events);
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let ceiling = raw(&boot, &format!("raw-{round}"), events);
        let (rate, records, matches) = end_to_end(&boot, &format!("e2e-{round}"));
        println!(
            "kafka round {round} ({what}): {events} events on 4 partitions: raw consume {:.0} msgs/s; consume + match + produce {:.0} events/s ({records} records, {matches} matches): {:.2} of raw",
            ceiling,
            rate,
            rate / ceiling
        );
        ratios.push(rate / ceiling);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "kafka: end to end / raw consume, median {:.2} (range {:.2}–{:.2}, {rounds} rounds)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}
