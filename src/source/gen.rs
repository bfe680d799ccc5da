//! The generator as a source: `--input gen:events=1000000,keys=1000,seed=42` reads
//! the deterministic stream of `motif gen` as if it were a file, with a position (events
//! generated) that a restart seeks back to by generating the stream again up to it.

use super::{InputPosition, Record, Source, SourceError, SourcePosition};
pub use crate::gen::GenOptions;
use crate::gen::Generator;

/// The prefix of a generator input.
pub const PREFIX: &str = "gen:";

/// A generated stream read as a source.
pub struct GenSource {
    origin: String,
    opts: GenOptions,
    gen: Generator,
    line: String,
    ended: bool,
}

/// Reads `gen:events=N,keys=K,rate=R,disorder=D,seed=S` (every part optional: 1,000
/// events, 1,000 keys, 1,000 events per second of event time, no disorder, seed 42).
pub fn parse_spec(spec: &str) -> Result<GenOptions, SourceError> {
    let body = spec.strip_prefix(PREFIX).unwrap_or(spec);
    let mut opts = GenOptions::default();
    let mut rate = 1000u64;
    for part in body.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| bad(spec, part, "is not name=value"))?;
        let n: u64 = value
            .trim()
            .parse()
            .map_err(|_| bad(spec, part, "needs a whole number"))?;
        match name.trim() {
            "events" | "n" => opts.events = n,
            "keys" if n == 0 => return Err(bad(spec, part, "needs at least one key")),
            "keys" => opts.keys = n,
            "rate" => rate = n,
            "disorder" => opts.disorder_ms = n,
            "seed" => opts.seed = n,
            other => {
                return Err(bad(
                    spec,
                    other,
                    "is not one of events, keys, rate, disorder, seed",
                ))
            }
        }
    }
    opts.with_rate(rate)
        .map_err(|e| SourceError::Spec(format!("generator input `{spec}`: {e}")))
}

fn bad(spec: &str, part: &str, why: &str) -> SourceError {
    SourceError::Spec(format!("generator input `{spec}`: `{part}` {why}"))
}

impl GenSource {
    /// The stream `spec` (see [`parse_spec`]) describes.
    pub fn new(spec: &str) -> Result<GenSource, SourceError> {
        let opts = parse_spec(spec)?;
        Ok(GenSource {
            origin: spec.to_string(),
            gen: Generator::new(opts),
            opts,
            line: String::new(),
            ended: false,
        })
    }
}

impl Source for GenSource {
    fn next_record(&mut self) -> Option<Result<Record<'_>, SourceError>> {
        match self.gen.next_line() {
            Some(l) => {
                self.line.clear();
                self.line.push_str(l);
                Some(Ok(Record {
                    json: &self.line,
                    origin: &self.origin,
                    line: self.gen.generated(),
                    partition: 0,
                }))
            }
            None => {
                self.ended = true;
                None
            }
        }
    }

    fn ended(&mut self) -> Option<usize> {
        None
    }

    fn may_wait(&self) -> bool {
        false
    }

    fn partitions(&self) -> usize {
        1
    }

    fn position(&self) -> SourcePosition {
        let n = self.gen.generated();
        SourcePosition {
            interleaved: false,
            inputs: vec![InputPosition {
                origin: self.origin.clone(),
                offset: n,
                line: n,
                ended: self.ended,
            }],
            next: 0,
        }
    }

    fn seek(&mut self, pos: &SourcePosition) -> Result<(), SourceError> {
        let [input] = pos.inputs.as_slice() else {
            return Err(SourceError::PositionMismatch {
                what: format!("{} inputs, a generator is one", pos.inputs.len()),
            });
        };
        if input.origin != self.origin {
            return Err(SourceError::PositionMismatch {
                what: format!("input `{}`, now `{}`", input.origin, self.origin),
            });
        }
        if input.offset > self.opts.events {
            return Err(SourceError::InvalidPosition(format!(
                "{} events generated of {}",
                input.offset, self.opts.events
            )));
        }
        let mut gen = Generator::new(self.opts);
        while gen.generated() < input.offset {
            gen.next_line();
        }
        self.gen = gen;
        self.ended = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(s: &mut GenSource) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        while let Some(Ok(r)) = s.next_record() {
            v.push((r.json.to_string(), r.line));
        }
        v
    }

    #[test]
    fn a_sought_generator_continues_the_same_stream() {
        let spec = "gen:events=50,keys=3,disorder=5,seed=9";
        let all = rest(&mut GenSource::new(spec).unwrap());
        assert_eq!(all.len(), 50);
        for k in [0, 1, 17, 49, 50] {
            let mut first = GenSource::new(spec).unwrap();
            for _ in 0..k {
                first.next_record();
            }
            let pos = first.position();
            let mut second = GenSource::new(spec).unwrap();
            second.seek(&pos).unwrap();
            assert_eq!(rest(&mut second), all[k..].to_vec(), "after {k}");
        }
        let other = GenSource::new("gen:events=50,keys=4").unwrap().position();
        assert!(GenSource::new(spec).unwrap().seek(&other).is_err());
    }

    #[test]
    fn specs() {
        let o = parse_spec("gen:events=7,keys=2,rate=500,disorder=3,seed=1").unwrap();
        assert_eq!(
            (o.events, o.keys, o.mean_gap_ms, o.disorder_ms, o.seed),
            (7, 2, 2, 3, 1)
        );
        assert_eq!(parse_spec("gen:").unwrap().events, 1000);
        let e = parse_spec("gen:events=x").err().unwrap().to_string();
        assert!(e.contains("`events=x` needs a whole number"), "{e}");
        assert!(parse_spec("gen:speed=3").is_err());
        for bad in ["gen:keys=0", "gen:rate=0", "gen:rate=1000001"] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_spec("gen:rate=600").unwrap().mean_gap_us, 1667);
    }
}
