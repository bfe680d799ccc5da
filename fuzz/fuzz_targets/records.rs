//! The source's record handling, any bytes as an input file: invalid UTF-8, byte-order
//! marks, CRLF, lines over the limit, CSV quoting. Reading never panics, every record comes
//! with its line number, and each record is accounted for exactly once: accepted (and
//! matched, the pattern taking every event), late, or rejected. Input: one byte choosing
//! the format (even: JSON lines, odd: CSV with a header) and the line limit, then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use motif::runtime::{Engine, EngineOptions, Input, Output};
use motif::source::{Format, Records};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let path = std::env::temp_dir().join(format!("motif-fuzz-records-{}", std::process::id()));
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let format = if mode & 1 == 0 {
        Format::JsonLines
    } else {
        Format::Csv
    };
    let max_line = 8 + usize::from(mode >> 1);
    let mut records = Records::new(vec![Some(path)], Some(format)).max_line_bytes(max_line);
    let decls = motif::syntax::load_str(
        "<fuzz>",
        "pattern p key k time ts lateness 3ms = begin(\"a\");",
    )
    .expect("the pattern loads");
    let mut engine = Engine::new(&decls, EngineOptions::default()).expect("it compiles");
    let mut out = Vec::new();
    let mut n = 0u64;
    let mut last_line = 0;
    while let Some(rec) = records.next_record() {
        let Ok(rec) = rec else {
            // An I/O error of the temporary file: nothing to check.
            return;
        };
        assert!(
            rec.line > last_line,
            "line numbers grow: {} after {last_line}",
            rec.line
        );
        last_line = rec.line;
        n += 1;
        engine.push_input(
            &Input {
                json: rec.json,
                origin: rec.origin,
                line: rec.line,
                partition: 0,
                now_ms: 0,
            },
            &mut out,
        );
        while records.ended().is_some() {}
    }
    engine.finish(&mut out);
    let accounted = out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Match { .. } | Output::Late { .. } | Output::Reject { .. }
            )
        })
        .count() as u64;
    assert_eq!(
        accounted, n,
        "every record matched, late or rejected once: {out:?}"
    );
    for o in &out {
        if let Output::Reject { record, .. } = o {
            assert!(record.line >= 1 && record.line <= last_line, "{record:?}");
        }
    }
});
