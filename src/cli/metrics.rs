//! `--metrics ADDR`: the run's counters and gauges as a Prometheus (OpenMetrics) text
//! endpoint, encoded by `prometheus-client`: every request on `ADDR` (any path) is answered
//! with the figures as the run last reported them, per partition where the run knows its
//! partitions (a Kafka scale-out member: offsets behind the partition's end, watermark,
//! open partial matches, records and matches).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::pipeline::Progress;

type Labels = Vec<(&'static str, String)>;
type Totals = Family<Labels, Gauge<u64, AtomicU64>>;
type Levels = Family<Labels, Gauge<i64, AtomicI64>>;

/// The figures the endpoint serves.
pub struct Metrics {
    registry: Mutex<Registry>,
    totals: Totals,
    partial_matches: Gauge<i64, AtomicI64>,
    watermark_lag: Gauge<i64, AtomicI64>,
    partition_records: Totals,
    partition_matches: Totals,
    partition_partial: Levels,
    partition_watermark: Levels,
    partition_offset_lag: Levels,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("motif");
        let totals = Totals::default();
        let partial_matches = Gauge::<i64, AtomicI64>::default();
        let watermark_lag = Gauge::<i64, AtomicI64>::default();
        let (partition_records, partition_matches) = (Totals::default(), Totals::default());
        let (partition_partial, partition_watermark, partition_offset_lag) =
            (Levels::default(), Levels::default(), Levels::default());
        registry.register(
            "outputs",
            "Records read and outputs given, by kind (records, matches, timeouts, late, rejected, dropped_partial_matches)",
            totals.clone(),
        );
        registry.register(
            "open_partial_matches",
            "Partial matches open now",
            partial_matches.clone(),
        );
        registry.register(
            "watermark_lag_ms",
            "How far the watermark trails the newest event time (largest over patterns and partitions)",
            watermark_lag.clone(),
        );
        registry.register(
            "partition_records",
            "Records processed, per input partition (by this process)",
            partition_records.clone(),
        );
        registry.register(
            "partition_matches",
            "Matches given, per input partition (by this process)",
            partition_matches.clone(),
        );
        registry.register(
            "partition_open_partial_matches",
            "Partial matches open now, per input partition",
            partition_partial.clone(),
        );
        registry.register(
            "partition_watermark_ms",
            "The watermark (event time, ms), per input partition",
            partition_watermark.clone(),
        );
        registry.register(
            "partition_offset_lag",
            "Messages between the consumer's position and the partition's end",
            partition_offset_lag.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            totals,
            partial_matches,
            watermark_lag,
            partition_records,
            partition_matches,
            partition_partial,
            partition_watermark,
            partition_offset_lag,
        }
    }

    /// Takes the figures of a progress report.
    pub fn update(&self, p: &Progress<'_>) {
        let s = p.stats;
        for (kind, v) in [
            ("records", s.records),
            ("matches", s.matches),
            ("timeouts", s.timeouts),
            ("late", s.late),
            ("rejected", s.rejected),
            ("dropped_partial_matches", s.dropped_runs),
        ] {
            self.totals
                .get_or_create(&vec![("kind", kind.to_string())])
                .set(v);
        }
        if let Some(n) = p.partial_matches {
            self.partial_matches
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.watermark_lag.set(p.watermark_lag.unwrap_or(0));
        for part in p.partitions {
            let l = vec![("partition", part.origin.clone())];
            self.partition_records.get_or_create(&l).set(part.records);
            self.partition_matches.get_or_create(&l).set(part.matches);
            self.partition_partial
                .get_or_create(&l)
                .set(i64::try_from(part.partial_matches).unwrap_or(i64::MAX));
            if let Some(w) = part.watermark {
                self.partition_watermark.get_or_create(&l).set(w);
            }
            if let Some(lag) = part.offset_lag {
                self.partition_offset_lag.get_or_create(&l).set(lag);
            }
        }
    }

    /// The OpenMetrics text of every figure.
    fn text(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing into a String does not fail.
            let _ = encode(&mut out, &r);
        }
        out
    }
}

/// Listens on `addr` and answers every request with the figures, on a thread of its own.
///
/// # Errors
/// The address cannot be listened on.
pub fn serve(addr: &str) -> std::io::Result<Arc<Metrics>> {
    let listener = TcpListener::bind(addr)?;
    let metrics = Arc::new(Metrics::new());
    let m = Arc::clone(&metrics);
    std::thread::Builder::new()
        .name("metrics".to_string())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                answer(conn, &m);
            }
        })?;
    Ok(metrics)
}

/// Reads one request (its head, at most 16 KiB, for at most two seconds) and answers it.
fn answer(mut conn: TcpStream, m: &Metrics) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = m.text();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
