//! Compiling and running any pattern over any events never panics. Input: pattern text,
//! a NUL byte, then event lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, events) = text.split_once('\0').unwrap_or((text, ""));
    let lines: Vec<&str> = events.lines().take(64).collect();
    let options = motif::runtime::EngineOptions {
        timeouts: true,
        max_runs_per_key: Some(2_000),
        ..motif::runtime::EngineOptions::default()
    };
    let _ = motif::output::match_lines_with(pattern, &lines, options);
});
