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
    /// Mean gap between events in ms.
    pub mean_gap_ms: u64,
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
            disorder_ms: 0,
            seed: 42,
            start_ms: 1_700_000_000_000,
        }
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
    id: u64,
    line: String,
}

impl Generator {
    /// The stream `opts` describes, from its first event.
    pub fn new(opts: GenOptions) -> Generator {
        Generator {
            rng: Rng::new(opts.seed),
            t: opts.start_ms,
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
        self.t += rng.below(2 * opts.mean_gap_ms + 1) as i64;
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
}
