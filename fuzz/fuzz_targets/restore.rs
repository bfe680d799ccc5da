//! Restoring any bytes as a checkpoint never panics, and neither does running the engine
//! afterwards: damaged bytes are an error, and a state that decodes is either rejected by
//! validation or runs.
//!
//! Input: the first byte picks how the rest is used.
//! - 0: the rest is a checkpoint file.
//! - 1: the rest is a checkpoint payload (given a valid header and checksum, so decoding
//!   and validation are reached).
//! - anything else: a real state (three patterns over a fixed stream) is encoded, and the
//!   rest edits its payload (pairs of position and byte), so the edits land in real
//!   structure: run states, nodes, reference counts, keys, clocks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use motif::checkpoint::format;
use motif::checkpoint::Checkpoint;
use motif::runtime::{Engine, EngineOptions, EngineState};

const PATTERNS: &str = r#"
pattern four key card time ts
= begin("a").where(kind == "a").followedBy("b").where(kind == "b")
  .followedByAny("c").where(kind == "c").followedBy("d").where(kind == "d").within(1h);
pattern loop key card, n time ts lateness 3ms
= begin("x", skipPastLastEvent()).where(kind == "a").oneOrMore()
  .next("y").where(kind == "b" and n > avg(x.n)).within(20ms);
pattern unfinished key card time ts
= begin("a").where(kind == "a").notFollowedBy("d").where(kind == "d").within(15ms);
"#;

fn events() -> Vec<String> {
    let kinds = ["a", "b", "a", "c", "b", "a", "d", "c"];
    (0..60u64)
        .map(|i| {
            format!(
                r#"{{"card":"c{}","n":{},"kind":"{}","ts":{}}}"#,
                i % 3,
                i % 5,
                kinds[(i % 8) as usize],
                i + (i % 4)
            )
        })
        .collect()
}

fn engine() -> Option<Engine> {
    let decls = motif::syntax::load_str("<fuzz>", PATTERNS).ok()?;
    let options = EngineOptions {
        timeouts: true,
        shards: 2,
        ..EngineOptions::default()
    };
    Engine::new(&decls, options).ok()
}

fn run_after(state: EngineState) {
    let Some(mut e) = engine() else { return };
    let mut out = Vec::new();
    if e.restore(state, false).is_err() {
        return;
    }
    for l in events().iter().skip(40) {
        e.push_json(l, &mut out);
    }
    e.finish(&mut out);
    let _ = e.snapshot();
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = match mode {
        0 => rest.to_vec(),
        1 => format::frame(rest),
        _ => {
            let Some(mut e) = engine() else { return };
            let mut out = Vec::new();
            for l in events().iter().take(40) {
                e.push_json(l, &mut out);
            }
            let Ok(mut payload) = format::encode_payload(&e.snapshot()) else {
                return;
            };
            for pair in rest.chunks_exact(3) {
                if payload.is_empty() {
                    break;
                }
                let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % payload.len();
                payload[at] = pair[2];
            }
            let Ok(state) = format::decode_payload::<EngineState>(&payload) else {
                return;
            };
            run_after(state);
            return;
        }
    };
    if let Ok(cp) = Checkpoint::from_bytes(&bytes) {
        if let Some(state) = cp.engine {
            run_after(state);
        }
    }
});
