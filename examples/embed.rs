//! Embedding motif: load a pattern file, run it over a generated stream, print the matches.
//! (`snapshot.rs` builds a pattern in Rust, feeds typed events and restores a snapshot.)
//!
//!     cargo run --release --example embed

use motif::gen::{generate, GenOptions};
use motif::runtime::{Engine, EngineOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = r#"
        pattern rising_then_drop
            key key
            time ts
        = begin("up").where(type == "B").oneOrMore().consecutive().greedy()
          .where(count(up) == 0 or price > up.price)
          .next("drop").where(price < first(up).price)
          .within(5s);
    "#;
    let decls = motif::syntax::load_str("<embedded>", source)?;
    let mut engine = Engine::new(&decls, EngineOptions::default())?;
    let mut out = Vec::new();
    generate(
        &GenOptions {
            events: 20_000,
            keys: 50,
            ..GenOptions::default()
        },
        |line| engine.push_json(line, &mut out),
    );
    engine.finish(&mut out);
    // A match shows as the JSON line the command line prints.
    for m in engine.matches(&out) {
        println!("{m}");
    }
    eprintln!("{:?}", engine.stats());
    Ok(())
}
