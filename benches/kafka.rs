//! Kafka end to end on one core: events consumed from a local broker's topic, matched, the
//! matches produced to another topic (`motif::pipeline::run` over a Kafka source, one
//! worker, `eof=true`), against the raw consume rate of the same topic in the same run —
//! the ceiling (target: at least half of it). The raw rate is measured twice, with a
//! consumer that polls one message at a time (`rdkafka`'s `poll`) and with one that reads
//! each partition's queue in batches as motif's source does (librdkafka's
//! `rd_kafka_consume_batch_queue`); the ceiling is the faster of the two.
//!
//! The broker is tansu (`cargo install tansu@0.6.0 --locked --features dynostore`, or
//! `$TANSU`) on a port of its own, in memory; without it, librdkafka's mock cluster in this
//! process (`--broker mock` asks for it). All rates are counted from the first message to
//! the last (the group join before it is not the pipeline's cost); the end-to-end run's rate
//! up to its end (the end of every partition found, the last matches acknowledged) is shown
//! too. Every consumer fetches with `fetch.wait.max.ms` = 10 ([`FETCH_WAIT_MS`]) and
//! `fetch.queue.backoff.ms` = 10 (motif's own setting).
//!
//! Each phase also reports the CPU time it took: this process's (user + system, every
//! thread, librdkafka's included) and the broker's (tansu's, from `/proc`). On a machine
//! with few cores the broker and the pipeline compete for them; `--pin` runs tansu on
//! CPU 0 and this process on CPU 1, so that the pipeline has one core of its own in both
//! phases ("on one core").
//!
//! `cargo bench --bench kafka` (options after `--`: `--events N`, default 200,000;
//! `--rounds R`, default 3; `--broker tansu|mock`; `--pin`; `MOTIF_BENCH_SOURCE_PROPERTIES`
//! in the environment adds librdkafka properties to motif's consumer, `a=1&b=2`). No
//! assertion on any figure.

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

/// `fetch.wait.max.ms` of both consumers. librdkafka's default (500 ms) lets the broker hold
/// a fetch that long when a partition has nothing new: then both rates measure how fetches
/// wait, not what the consumers do (this process is busy a fifth of the time).
const FETCH_WAIT_MS: &str = "10";

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

/// This process's CPU time so far (user + system, all threads), in seconds.
fn cpu_self() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// The broker process's CPU time so far in seconds (0 for the mock cluster).
fn cpu_broker(broker: &Broker) -> f64 {
    let Broker::Tansu(child) = broker else {
        return 0.0;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", child.id())) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): utime is the 14th field.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Pins `pid` (0: this thread, and the threads it starts later) to one CPU.
fn pin(pid: libc::pid_t, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Wall time, this process's CPU time and the broker's over one phase.
struct Spent {
    wall: f64,
    own: f64,
    broker: f64,
}

fn measure<T>(broker: &Broker, phase: impl FnOnce() -> T) -> (T, Spent) {
    let (t, own, b) = (Instant::now(), cpu_self(), cpu_broker(broker));
    let out = phase();
    let spent = Spent {
        wall: t.elapsed().as_secs_f64(),
        own: cpu_self() - own,
        broker: cpu_broker(broker) - b,
    };
    (out, spent)
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

/// A raw consumer of `group`: from the earliest offset, nothing committed, fetching as
/// motif's consumers do.
fn raw_consumer(boot: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", boot)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        // As motif's consumers: with librdkafka's default (1 s) a partition whose local
        // queue filled up is not fetched again for a second, and some rounds' raw rate fell
        // to a third.
        .set(
            "fetch.queue.backoff.ms",
            motif::source::kafka::FETCH_QUEUE_BACKOFF_MS,
        )
        .create()
        .expect("consumer")
}

/// Raw consume: every message of `events` read (payload touched); messages/s from the
/// first message.
fn raw(boot: &str, group: &str, n: u64) -> f64 {
    let c = raw_consumer(boot, group);
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

/// Raw consume in batches, as motif's source reads: each partition's queue split from the
/// consumer's and read with librdkafka's `rd_kafka_consume_batch_queue` (64 at a time, in
/// turn), the consumer's own queue (the group's rebalances) served between turns; every
/// message's payload touched. Messages/s from the first message.
fn raw_batches(boot: &str, group: &str, n: u64) -> f64 {
    use rdkafka::bindings as rd;
    let c = std::sync::Arc::new(raw_consumer(boot, group));
    let topic = std::ffi::CString::new("events").expect("topic name");
    let mut split = Vec::new();
    let mut queues = Vec::new();
    for p in 0..4 {
        split.push(
            c.split_partition_queue("events", p)
                .expect("partition queue"),
        );
        // SAFETY: the client lives as long as `c`, which outlives the handles (destroyed
        // below); the topic name is NUL-terminated.
        let q =
            unsafe { rd::rd_kafka_queue_get_partition(c.client().native_ptr(), topic.as_ptr(), p) };
        assert!(!q.is_null(), "partition queue handle");
        queues.push(q);
    }
    c.subscribe(&["events"]).expect("subscribe");
    let mut batch = [std::ptr::null_mut::<rd::rd_kafka_message_t>(); 64];
    let (mut got, mut bytes) = (0u64, 0usize);
    let mut first = None;
    while got < n {
        let _ = c.poll(Duration::ZERO);
        let mut any = false;
        for &q in &queues {
            // SAFETY: a live queue handle; librdkafka writes at most 64 message pointers.
            let k = unsafe { rd::rd_kafka_consume_batch_queue(q, 0, batch.as_mut_ptr(), 64) };
            for &m in &batch[..usize::try_from(k).unwrap_or(0)] {
                // SAFETY: a message librdkafka just returned, destroyed once, here.
                unsafe {
                    if (*m).err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                        first.get_or_insert_with(Instant::now);
                        bytes += (*m).len;
                        got += 1;
                    }
                    rd::rd_kafka_message_destroy(m);
                }
                any = true;
            }
        }
        if !any {
            let _ = c.poll(Duration::from_millis(1));
        }
    }
    for q in queues {
        // SAFETY: each handle destroyed once, before the consumer.
        unsafe { rd::rd_kafka_queue_destroy(q) };
    }
    drop(split);
    std::hint::black_box(bytes);
    let t = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    n as f64 / t
}

/// A source that notes when it handed out its first and its last record.
struct Timed<S> {
    inner: S,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl<S: Source> Source for Timed<S> {
    fn next_record(
        &mut self,
    ) -> Option<Result<motif::source::Record<'_>, motif::source::SourceError>> {
        let r = self.inner.next_record();
        if let Some(Ok(_)) = &r {
            let now = Instant::now();
            self.first.get_or_insert(now);
            self.last = Some(now);
        }
        r
    }
    fn ended(&mut self) -> Option<usize> {
        self.inner.ended()
    }
    fn may_wait(&self) -> bool {
        self.inner.may_wait()
    }
    fn partitions(&self) -> usize {
        self.inner.partitions()
    }
    fn alignment(&self) -> Option<i64> {
        self.inner.alignment()
    }
    fn align(&mut self, ahead: &[bool]) {
        self.inner.align(ahead)
    }
    fn position(&self) -> motif::source::SourcePosition {
        self.inner.position()
    }
    fn seek(
        &mut self,
        pos: &motif::source::SourcePosition,
    ) -> Result<(), motif::source::SourceError> {
        self.inner.seek(pos)
    }
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        self.inner.wait_ready(timeout)
    }
    fn commit(&mut self, pos: &motif::source::SourcePosition) {
        self.inner.commit(pos)
    }
}

/// What one end-to-end run measured.
struct EndToEnd {
    /// Events/s from the first record to the last (matches produced as they come).
    streaming: f64,
    /// Events/s from the first record to the end of the run (the last matches
    /// acknowledged, offsets committed, the consumer closed).
    to_the_end: f64,
    records: u64,
    matches: u64,
}

/// Consume, match, produce (see [`EndToEnd`]).
fn end_to_end(boot: &str, group: &str) -> EndToEnd {
    let decls = motif::syntax::load_str("abc.motif", ABC).expect("pattern");
    // MOTIF_BENCH_SOURCE_PROPERTIES: more librdkafka properties for motif's consumer.
    let more = std::env::var("MOTIF_BENCH_SOURCE_PROPERTIES")
        .map(|p| format!("&{p}"))
        .unwrap_or_default();
    let source = KafkaSource::open(&format!(
        "kafka://{boot}/events?group={group}&eof=true&fetch.wait.max.ms={FETCH_WAIT_MS}{more}"
    ))
    .expect("kafka source");
    let mut source = Timed {
        inner: source,
        first: None,
        last: None,
    };
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
    let summary = pipeline::run(
        &decls,
        &options,
        &mut source,
        &spec,
        &stop,
        &mut |_| {},
        &mut |_| {},
    )
    .expect("run");
    let end = Instant::now();
    let s = summary.stats;
    let first = source.first.unwrap_or(end);
    let last = source.last.unwrap_or(end);
    EndToEnd {
        streaming: s.records as f64 / (last - first).as_secs_f64(),
        to_the_end: s.records as f64 / (end - first).as_secs_f64(),
        records: s.records,
        matches: s.matches,
    }
}

fn main() {
    motif::process::disable_transparent_huge_pages();
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
    let (broker_, boot, what) = broker(opt("--broker").as_deref());
    if args.iter().any(|a| a == "--pin") {
        if let Broker::Tansu(child) = &broker_ {
            pin(child.id() as libc::pid_t, 0);
        }
        pin(0, 1);
    }
    produce(&boot, events);
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (per_message, raw_spent) =
            measure(&broker_, || raw(&boot, &format!("raw-{round}"), events));
        let (batches, batches_spent) = measure(&broker_, || {
            raw_batches(&boot, &format!("raw-batches-{round}"), events)
        });
        let ceiling = per_message.max(batches);
        let (e, e2e_spent) = measure(&broker_, || end_to_end(&boot, &format!("e2e-{round}")));
        println!(
            "kafka round {round} ({what}): {events} events on 4 partitions: raw consume {per_message:.0} msgs/s polling one message at a time, {batches:.0} in batches; consume + match + produce {:.0} events/s while streaming ({} records, {} matches): {:.2} of the faster raw consume; {:.0} events/s counting the end of the run (every partition's end found, the last matches acknowledged)",
            e.streaming,
            e.records,
            e.matches,
            e.streaming / ceiling,
            e.to_the_end
        );
        for (phase, s) in [
            ("raw consume, one at a time", &raw_spent),
            ("raw consume, batches", &batches_spent),
            ("end to end", &e2e_spent),
        ] {
            println!(
                "    {phase}: {:.2} s wall (group join included), CPU {:.2} s this process, {:.2} s broker",
                s.wall, s.own, s.broker
            );
        }
        ratios.push(e.streaming / ceiling);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "kafka: end to end (streaming) / raw consume, median {:.2} (range {:.2}–{:.2}, {rounds} rounds)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}
