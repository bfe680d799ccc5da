//! Embedding motif with typed events: a pattern built in Rust, events fed as `Serialize`
//! structs, matches read by variable name with their typed key, and a snapshot taken
//! midway, written as checkpoint bytes and restored into a fresh engine, which then ends
//! exactly as an uninterrupted run does.
//!
//!     cargo run --example snapshot

use std::time::Duration;

use motif::checkpoint::format;
use motif::pattern::{Pattern, PatternDecl, SkipStrategy};
use motif::runtime::{Engine, EngineOptions, EngineState, Output};
use motif::syntax::parse_expr;
use motif::Value;
use serde::{Deserialize, Serialize};

/// One card payment: the events, as the application has them.
#[derive(Debug, Serialize, Deserialize)]
struct Txn {
    card: u32,
    ts: i64,
    amount: f64,
}

/// Three small payments in a row, then a large one within ten minutes, per card.
fn card_testing() -> PatternDecl {
    Pattern::begin_with("small", SkipStrategy::SkipPastLastEvent)
        .where_(parse_expr("amount < 10").expect("a valid condition"))
        .times(3)
        .consecutive()
        .followed_by("large")
        .where_(parse_expr("amount > 500").expect("a valid condition"))
        .within(Duration::from_secs(10 * 60))
        .declare("card_testing")
        .key(&["card"])
        .time("ts")
}

fn new_engine() -> Engine {
    Engine::new(&[card_testing()], EngineOptions::default()).expect("the pattern compiles")
}

/// Payments of three cards, interleaved, one a minute.
fn payments() -> Vec<Txn> {
    (0..60)
        .map(|i| Txn {
            card: i % 3 + 1,
            ts: i64::from(i) * 60_000,
            amount: if i % 13 > 9 {
                750.0
            } else {
                f64::from(i % 4) + 2.5
            },
        })
        .collect()
}

/// Each match of `out` as one line: pattern, card, and each variable's amounts.
fn describe(engine: &Engine, out: &[Output]) -> Vec<String> {
    engine
        .matches(out)
        .map(|m| {
            // The key is typed: the card number is an integer, as in the events.
            let key = m.key().expect("the pattern is keyed");
            let [Value::Int(card)] = key.fields() else {
                panic!("the key is one integer, not {key}");
            };
            let variables: Vec<String> = m
                .variables()
                .map(|(name, events)| {
                    let amounts: Vec<f64> = events
                        .iter()
                        .map(|e| e.deserialize::<Txn>().expect("events are Txns").amount)
                        .collect();
                    format!("{name} {amounts:?}")
                })
                .collect();
            format!(
                "{} card {card} at {}..{} min: {}",
                m.pattern(),
                m.start() / 60_000,
                m.end() / 60_000,
                variables.join(", ")
            )
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let payments = payments();
    let (before, after) = payments.split_at(payments.len() / 2);

    // One engine over every payment.
    let mut whole = new_engine();
    let mut out = Vec::new();
    for t in &payments {
        whole.push(t, &mut out)?;
    }
    whole.finish(&mut out);
    let uninterrupted = describe(&whole, &out);

    // The first half, then a snapshot as checkpoint bytes (a header, a checksum and a
    // compact binary payload), which could go to a file or a database.
    let mut first = new_engine();
    let mut out = Vec::new();
    for t in before {
        first.push(t, &mut out)?;
    }
    let mut resumed = describe(&first, &out);
    let bytes = format::encode(&first.snapshot())?;
    drop(first);

    // A fresh engine over the same pattern restores the bytes and takes the second half.
    let state: EngineState = format::decode(&bytes)?;
    println!(
        "checkpoint: {} bytes, {} partial matches",
        bytes.len(),
        state.patterns[0].partial_matches()
    );
    let mut second = new_engine();
    second.restore(state, false)?;
    let mut out = Vec::new();
    for t in after {
        second.push(t, &mut out)?;
    }
    second.finish(&mut out);
    resumed.extend(describe(&second, &out));

    for line in &resumed {
        println!("{line}");
    }
    assert!(!uninterrupted.is_empty());
    assert_eq!(
        resumed, uninterrupted,
        "the restored run ends as the whole one"
    );
    assert_eq!(second.stats(), whole.stats());
    println!("{:?}", second.stats());
    Ok(())
}
