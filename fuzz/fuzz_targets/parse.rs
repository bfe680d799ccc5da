//! The parser never panics, and a parsed file pretty-printed and parsed again gives the
//! same AST (compared through the canonical printer, which prints every field of it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(decls) = motif::syntax::parse_source(text) {
        let printed = motif::syntax::print_decls(&decls);
        let again = motif::syntax::parse_source(&printed)
            .unwrap_or_else(|e| panic!("printed form does not parse: {e:?}\n{printed}"));
        assert_eq!(
            motif::syntax::print_decls(&again),
            printed,
            "print(parse(print(x))) != print(x)"
        );
    }
    let _ = motif::syntax::load_str("<fuzz>", text);
});
