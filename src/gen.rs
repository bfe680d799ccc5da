//! A deterministic generator of synthetic event streams for demos and benchmarks: the same
//! stream as `../shared/peer/gen_events.py` describes (keys `k0000`…, a clock advancing by
//! 0..2×gap ms per event, optional bounded disorder, types A–D, prices 1.00–99.99), as JSON
//! lines.

use std::fmt::Write;

/// Parameters of a generated stream.
#[derive(Debug, Clone, Copy)]
pub struct GenOptions {
    /// Number of events.
    pub events: u64,
    /// Number of distinct keys.
    pub keys: u64,
    /// Mean gap between events in ms (used when `mean_gap_us` is 0).
    pub mean_gap_ms: u64,
    /// Mean gap between events in microseconds, for rates a whole number of milliseconds
    /// cannot give (0: use `mean_gap_ms`). The clock then advances by 0..=2×gap µs per event
    /// and event times are its whole milliseconds.
    pub mean_gap_us: u64,
    /// Maximum backwards shift of an event's time (bounded out-of-orderness).
    pub disorder_ms: u64,
    /// RNG seed.
    pub seed: u64,
    /// Time of the first event.
    pub start_ms: i64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            events: 1000,
            keys: 1000,
            mean_gap_ms: 1,
            mean_gap_us: 0,
            disorder_ms: 0,
            seed: 42,
            start_ms: 1_700_000_000_000,
        }
    }
}

/// The most events per second of event time a stream can have: one per microsecond.
pub const MAX_RATE: u64 = 1_000_000;

impl GenOptions {
    /// Sets the mean gap for `rate` events per second of event time: whole milliseconds
    /// when 1000 / `rate` is one (the stream is then the one `mean_gap_ms` always gave),
    /// else microseconds, so every rate up to `MAX_RATE` (1,000,000) is what it says. `Err`
    /// for a rate of 0 or above it.
    pub fn with_rate(mut self, rate: u64) -> Result<GenOptions, String> {
        if rate == 0 || rate > MAX_RATE {
            return Err(format!(
                "a rate of {rate} events per second is out of range (1 to {MAX_RATE})"
            ));
        }
        if 1000 % rate == 0 {
            self.mean_gap_ms = 1000 / rate;
            self.mean_gap_us = 0;
        } else {
            self.mean_gap_us = (MAX_RATE + rate / 2) / rate;
        }
        Ok(self)
    }
}

/// SplitMix64: small, fast, good enough for synthetic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The stream as an iterator of lines: [`Generator::next_line`] gives event after event.
#[derive(Debug, Clone)]
pub struct Generator {
    opts: GenOptions,
    rng: Rng,
    t: i64,
    /// With a microsecond gap: microseconds elapsed past `t`'s millisecond.
    us: u64,
    id: u64,
    line: String,
}

impl Generator {
    /// The stream `opts` describes, from its first event.
    pub fn new(opts: GenOptions) -> Generator {
        Generator {
            rng: Rng::new(opts.seed),
            t: opts.start_ms,
            us: 0,
            id: 0,
            line: String::with_capacity(96),
            opts,
        }
    }

    /// Events generated so far.
    pub fn generated(&self) -> u64 {
        self.id
    }

    /// The next event as a JSON line (no newline), `None` after the last.
    pub fn next_line(&mut self) -> Option<&str> {
        if self.id >= self.opts.events {
            return None;
        }
        let opts = &self.opts;
        let rng = &mut self.rng;
        if opts.mean_gap_us > 0 {
            self.us += rng.below(2 * opts.mean_gap_us + 1);
            self.t = self.t.saturating_add((self.us / 1000) as i64);
            self.us %= 1000;
        } else {
            self.t = self
                .t
                .saturating_add(rng.below(2 * opts.mean_gap_ms + 1) as i64);
        }
        let ts = if opts.disorder_ms > 0 {
            self.t - rng.below(opts.disorder_ms + 1) as i64
        } else {
            self.t
        };
        let k = rng.below(opts.keys);
        let ty = ['A', 'B', 'C', 'D'][rng.below(4) as usize];
        let cents = 100 + rng.below(9900);
        self.line.clear();
        let _ = write!(
            self.line,
            r#"{{"id":{},"key":"k{k:04}","ts":{ts},"type":"{ty}","price":{}.{:02}}}"#,
            self.id,
            cents / 100,
            cents % 100
        );
        self.id += 1;
        Some(&self.line)
    }
}

/// Generates the stream, calling `emit` with each JSON line (no newline).
#[cfg(any(test, feature = "cli", feature = "internals"))]
pub fn generate(opts: &GenOptions, mut emit: impl FnMut(&str)) {
    let mut g = Generator::new(*opts);
    while let Some(line) = g.next_line() {
        emit(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_well_formed() {
        let opts = GenOptions {
            events: 50,
            keys: 3,
            disorder_ms: 5,
            ..GenOptions::default()
        };
        let mut a = Vec::new();
        generate(&opts, |l| a.push(l.to_string()));
        let mut b = Vec::new();
        generate(&opts, |l| b.push(l.to_string()));
        assert_eq!(a, b);
        for l in &a {
            let v: serde_json::Value = serde_json::from_str(l).expect("valid JSON");
            assert!(v["price"]
                .as_f64()
                .is_some_and(|p| (1.0..100.0).contains(&p)));
            assert!(["k0000", "k0001", "k0002"].contains(&v["key"].as_str().unwrap_or("")));
        }
    }

    /// The rate is what it says, also between and above whole milliseconds per event (600
    /// and 5000 both gave about 1000 events per second when the gap was whole ms).
    #[test]
    fn rates_are_exact() {
        for rate in [1, 7, 500, 600, 1000, 5000, 250_000] {
            let opts = GenOptions {
                events: 50_000,
                keys: 1,
                ..GenOptions::default()
            }
            .with_rate(rate)
            .unwrap();
            let mut first = None;
            let mut last = 0;
            generate(&opts, |l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let ts = v["ts"].as_i64().unwrap();
                first.get_or_insert(ts);
                last = ts;
            });
            let secs = (last - first.unwrap()) as f64 / 1000.0;
            let got = 49_999.0 / secs;
            assert!(
                (got / rate as f64 - 1.0).abs() < 0.02,
                "rate {rate}: {got:.1} events/s"
            );
        }
        // Whole-millisecond gaps keep the stream they always gave.
        let old = GenOptions {
            mean_gap_ms: 2,
            ..GenOptions::default()
        };
        let new = GenOptions::default().with_rate(500).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        generate(&old, |l| a.push(l.to_string()));
        generate(&new, |l| b.push(l.to_string()));
        assert_eq!(a, b);
        assert!(GenOptions::default().with_rate(0).is_err());
        assert!(GenOptions::default().with_rate(MAX_RATE + 1).is_err());
    }
}
