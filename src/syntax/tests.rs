//! Tests of the parser, the printer and the error rendering.

use std::path::{Path, PathBuf};

use super::*;
use crate::expr::ast::{BinaryOp, ExprKind, UnaryOp};
use crate::pattern::{Condition, Contiguity, InnerContiguity, Repeat, SkipStrategy, StepNode};
use crate::value::Value;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases")
}

/// Every `case.motif` of the conformance suite, with its path.
fn case_files() -> Vec<(PathBuf, String)> {
    let dir = cases_dir();
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read the conformance cases at {}: {e}",
            dir.display()
        )
    });
    for entry in entries.flatten() {
        let path = entry.path().join("case.motif");
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.push((path, text));
        }
    }
    out.sort();
    assert!(
        out.len() >= 100,
        "expected the conformance cases in {}",
        dir.display()
    );
    out
}

fn parse_ok(src: &str) -> Vec<PatternDecl> {
    match parse_source(src) {
        Ok(d) => d,
        Err(e) => panic!("{}", SourceErrors::new("test", src, e)),
    }
}

fn expr(src: &str) -> Expr {
    parse_expr(src).unwrap_or_else(|e| panic!("{e}"))
}

/// The rendered errors of `load_str`, which must fail.
fn load_err(src: &str) -> String {
    match load_str("t.motif", src) {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(e) => e.to_string(),
    }
}

fn print(src: &str) -> String {
    print_decls(&parse_ok(src))
}

/// The printer's fixpoint property.
fn assert_round_trip(src: &str) {
    let once = print(src);
    let twice = print(&once);
    assert_eq!(once, twice, "printing is not a fixpoint for:\n{src}");
}

// ---------------------------------------------------------------------------------------
// The conformance cases

#[test]
fn every_case_parses_validates_and_round_trips() {
    for (path, text) in case_files() {
        let origin = path.display().to_string();
        let decls = load_str(&origin, &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(!decls.is_empty(), "{origin}: no declaration");
        let printed = print_decls(&decls);
        let again = load_str(&origin, &printed).unwrap_or_else(|e| {
            panic!("{origin}: the printed form does not load:\n{printed}\n{e}")
        });
        assert_eq!(
            printed,
            print_decls(&again),
            "{origin}: printing is not a fixpoint"
        );
        assert_eq!(decls.len(), again.len());
    }
}

#[test]
fn truncated_and_mangled_cases_never_panic() {
    for (_, text) in case_files() {
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        // Every fifth prefix keeps the test quick in debug builds; over 153 files the cuts
        // still land on every kind of token.
        for &i in boundaries.iter().step_by(5) {
            let _ = load_str("t", &text[..i]);
        }
        // Drop one character here and there.
        for &i in boundaries.iter().step_by(23) {
            if i < text.len() {
                let mut s = text.clone();
                s.remove(i);
                let _ = load_str("t", &s);
            }
        }
    }
}

#[test]
fn garbage_never_panics() {
    let garbage = [
        "",
        " ",
        "\u{FEFF}",
        "pattern",
        "pattern p",
        "pattern p =",
        "pattern p = begin(",
        "pattern p = begin(\"",
        "pattern p = begin(\"\\",
        "pattern p = begin(\"a\").where(",
        "/*",
        "/* unterminated",
        "\"",
        "\\u{",
        "pattern p = begin(\"\\u{110000}\");",
        "pattern p = begin(\"a\").where(\"\\u{}\");",
        "ü",
        "pattern ü = begin(\"a\");",
        "pattern p = begin(\"a\").times(99999999999999999999);",
        "pattern p = begin(\"a\").within(99999999999999999999d);",
        "pattern p = begin(\"a\").within(9999999999999999d);",
        "pattern p = begin(\"a\").where(1e999 > x);",
        "pattern p = begin(\"a\").where(x in [,]);",
        ";;;;",
        ")))",
        "]]]",
        "pattern p = begin(\"a\").where(x)\npattern q = begin(\"b\")",
    ];
    for g in garbage {
        let _ = load_str("t", g);
        let _ = parse_expr(g);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let err = parse_expr(&deep).unwrap_err();
    assert!(
        err.diagnostics[0].message.contains("nested too deeply"),
        "{err}"
    );

    let negs = format!("{}x", "-".repeat(100_000));
    let err = parse_expr(&negs).unwrap_err();
    assert!(
        err.diagnostics[0].message.contains("too deeply nested"),
        "{err}"
    );

    let nots = format!("{}x", "not ".repeat(10_000));
    assert!(parse_expr(&nots).is_err());

    // A long `or` chain: the advice does not AND its terms.
    let ors = (0..300)
        .map(|i| format!("x == {i}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let err = parse_expr(&ors).unwrap_err();
    let help = err.diagnostics[0].help.as_deref().unwrap_or("");
    assert!(
        help.contains("field in [a, b, ...]") && help.contains(".or(...)"),
        "{err}"
    );
    assert!(!help.contains("several `where`"), "{err}");

    let long = vec!["1"; 20_000].join(" + ");
    let err = parse_expr(&long).unwrap_err();
    assert!(
        err.diagnostics[0].message.contains("too deeply nested"),
        "{err}"
    );

    let groups = format!(
        "pattern p = {}begin(\"a\"){};",
        "begin(".repeat(5_000),
        ")".repeat(5_000)
    );
    assert!(load_str("t", &groups).is_err());

    // Within the limits, nesting is fine.
    let ok = format!("{}1{}", "(".repeat(50), ")".repeat(50));
    assert!(parse_expr(&ok).is_ok());
    let ok = vec!["1"; 200].join(" + ");
    assert!(parse_expr(&ok).is_ok());
}

// ---------------------------------------------------------------------------------------
// Declarations and the chain

#[test]
fn header_clauses_in_any_order() {
    let d = &parse_ok(
        "pattern p lateness 5s time event.ts key a, b.c = begin(\"x\");\n\
         pattern q key time time key = begin(\"y\");",
    );
    assert_eq!(d[0].name, "p");
    assert_eq!(
        d[0].key,
        vec![
            vec!["a".to_string()],
            vec!["b".to_string(), "c".to_string()]
        ]
    );
    assert_eq!(d[0].time, Some(vec!["event".to_string(), "ts".to_string()]));
    assert_eq!(d[0].lateness_ms, 5_000);
    // Declaration words are not reserved: fields may be called `time` and `key`.
    assert_eq!(d[1].key, vec![vec!["time".to_string()]]);
    assert_eq!(d[1].time, Some(vec!["key".to_string()]));
    assert_eq!(d[1].lateness_ms, 0);
}

#[test]
fn header_clause_twice_is_an_error() {
    let e = load_err("pattern p key a time t key b = begin(\"x\");");
    assert!(
        e.starts_with("t.motif:1:24: error: `key` is given twice"),
        "{e}"
    );
    assert!(e.contains("= help: the first `key` is at 1:11"), "{e}");
}

#[test]
fn durations() {
    let d = &parse_ok(
        "pattern p = begin(\"a\").within(250ms).followedBy(\"b\").within(10s)\
         .followedBy(\"c\").within(5m).followedBy(\"d\").within(2min)\
         .followedBy(\"e\").within(3h).followedBy(\"f\").within(1d);",
    );
    let w: Vec<Option<u64>> = d[0].pattern.steps.iter().map(|s| s.within).collect();
    assert_eq!(
        w,
        vec![
            Some(250),
            Some(10_000),
            Some(300_000),
            Some(120_000),
            Some(10_800_000),
            Some(86_400_000)
        ]
    );
    assert!(parse_source("pattern p = begin(\"a\").within(10);").is_err());
    assert!(parse_source("pattern p = begin(\"a\").within(1.5s);").is_err());
    assert!(parse_source("pattern p = begin(\"a\").within(10sec);").is_err());
}

#[test]
fn comments_and_whitespace_anywhere() {
    let d = &parse_ok(
        "// leading\n/* block\n comment */ pattern /* a */ p // b\n key /*c*/ k\n=\tbegin ( \"a\" /* d */ )\n\
         . where ( x /* e */ > // f\n 1 ) . oneOrMore ( ) ; // trailing",
    );
    assert_eq!(
        d[0].pattern.steps[0].quantifier.repeat,
        Repeat::Looping { min: 1 }
    );
}

#[test]
fn skip_strategies() {
    let cases = [
        ("noSkip()", SkipStrategy::NoSkip),
        ("skipToNext()", SkipStrategy::SkipToNext),
        ("skipPastLastEvent()", SkipStrategy::SkipPastLastEvent),
        ("skipToFirst(\"b\")", SkipStrategy::SkipToFirst("b".into())),
        ("skipToLast(\"b\")", SkipStrategy::SkipToLast("b".into())),
    ];
    for (text, skip) in cases {
        let d = &parse_ok(&format!("pattern p = begin(\"a\", {text}).next(\"b\");"));
        assert_eq!(d[0].pattern.skip, skip);
    }
    let d = &parse_ok("pattern p = begin(begin(\"a\").next(\"b\"), skipToNext()).next(\"c\");");
    assert_eq!(d[0].pattern.skip, SkipStrategy::SkipToNext);
    assert!(matches!(d[0].pattern.steps[0].node, StepNode::Group(_)));
}

#[test]
fn contiguity_and_groups() {
    let d = &parse_ok(
        "pattern p = begin(\"a\").next(\"b\").followedBy(\"c\").followedByAny(\"d\")\
         .notNext(\"e\").notFollowedBy(\"f\")\
         .next(begin(\"g\").followedBy(\"h\")).followedByAny(begin(\"i\")).followedBy(begin(\"j\"))\
         .within(1s);",
    );
    let c: Vec<Contiguity> = d[0].pattern.steps.iter().map(|s| s.contiguity).collect();
    use Contiguity::*;
    assert_eq!(
        c,
        vec![
            Relaxed,
            Strict,
            Relaxed,
            NonDeterministic,
            NotNext,
            NotFollowedBy,
            Strict,
            NonDeterministic,
            Relaxed
        ]
    );
    let StepNode::Group(g) = &d[0].pattern.steps[6].node else {
        panic!("expected a group")
    };
    assert_eq!(g.steps.len(), 2);
    assert_eq!(g.steps[0].contiguity, Relaxed);
    assert_eq!(
        d[0].pattern.variables(),
        vec!["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    );
}

#[test]
fn builder_semantics_of_conditions_and_quantifiers() {
    let d = &parse_ok(
        "pattern p = begin(\"a\").where(x > 1).where(y > 2).or(z > 3)\
         .followedBy(\"b\").or(w == 1).times(0, 3).consecutive()\
         .followedBy(\"c\").timesOrMore(2).allowCombinations().greedy().until(q)\
         .followedBy(\"d\").times(4).optional();",
    );
    let s = &d[0].pattern.steps;
    // where(a).where(b).or(c) is Or(And(a, b), c).
    let Some(Condition::Or(left, _)) = &s[0].condition else {
        panic!("expected Or, got {:?}", s[0].condition)
    };
    assert!(matches!(**left, Condition::And(_, _)));
    // A lone `or` is the condition.
    assert!(matches!(s[1].condition, Some(Condition::Expr(_))));
    // times(0, m) is optional + Times { 1, m }.
    assert_eq!(s[1].quantifier.repeat, Repeat::Times { from: 1, to: 3 });
    assert!(s[1].quantifier.optional);
    assert_eq!(s[1].quantifier.inner, InnerContiguity::Consecutive);
    assert_eq!(s[2].quantifier.repeat, Repeat::Looping { min: 2 });
    assert_eq!(s[2].quantifier.inner, InnerContiguity::AllowCombinations);
    assert!(s[2].quantifier.greedy);
    assert!(s[2].until.is_some());
    assert_eq!(s[3].quantifier.repeat, Repeat::Times { from: 4, to: 4 });
    assert!(s[3].quantifier.optional);
}

#[test]
fn within_kinds() {
    let d = &parse_ok(
        "pattern p = begin(\"a\").followedBy(\"b\").within(5s, PREVIOUS_AND_CURRENT)\
         .within(10s, FIRST_AND_LAST);",
    );
    let b = &d[0].pattern.steps[1];
    assert_eq!(b.within_previous, Some(5_000));
    assert_eq!(b.within, Some(10_000));
}

#[test]
fn spans_of_steps_calls_and_declarations() {
    let src = "pattern demo = begin(\"a\").where(x > 1).oneOrMore()\n  .followedBy(begin(\"b\").next(\"c\")).times(2)\n  .within(10s);";
    let d = &parse_ok(src);
    let at = |s: Span| &src[s.start..s.end];
    assert_eq!(at(d[0].span), "demo");
    let p = &d[0].pattern;
    assert!(at(p.span).starts_with("begin(\"a\")"));
    assert!(at(p.span).ends_with(".within(10s)"));
    assert_eq!(at(p.steps[0].span), "\"a\"");
    let calls: Vec<(&str, &str)> = p.steps[0]
        .call_spans
        .iter()
        .map(|(c, s)| (*c, at(*s)))
        .collect();
    assert_eq!(
        calls,
        vec![("where", "where(x > 1)"), ("oneOrMore", "oneOrMore()")]
    );
    assert_eq!(at(p.steps[1].span), "begin(\"b\").next(\"c\")");
    let calls: Vec<(&str, &str)> = p.steps[1]
        .call_spans
        .iter()
        .map(|(c, s)| (*c, at(*s)))
        .collect();
    assert_eq!(
        calls,
        vec![("times", "times(2)"), ("within", "within(10s)")]
    );
    let StepNode::Group(g) = &p.steps[1].node else {
        panic!()
    };
    assert_eq!(at(g.steps[1].span), "\"c\"");
    let Some(Condition::Expr(e)) = &p.steps[0].condition else {
        panic!()
    };
    assert_eq!(at(e.span), "x > 1");
    let ExprKind::Binary(_, l, r) = &e.kind else {
        panic!()
    };
    assert_eq!(at(l.span), "x");
    assert_eq!(at(r.span), "1");
}

#[test]
fn spans_in_a_later_declaration_after_an_error_are_absolute() {
    let src = "pattern bad = begin(\"a\").where(;\npattern good = begin(\"b\").where(y);";
    let errs = parse_source(src).unwrap_err();
    assert_eq!(errs.len(), 1);
    let parsed = super::parser::parse_file(src);
    assert_eq!(parsed.decls.len(), 1);
    let s = parsed.decls[0].span;
    assert_eq!(&src[s.start..s.end], "good");
    let step = &parsed.decls[0].pattern.steps[0];
    assert_eq!(&src[step.span.start..step.span.end], "\"b\"");
}

// ---------------------------------------------------------------------------------------
// Expressions

#[test]
fn precedence() {
    let e = expr("a or b and not c == d + e * -f");
    assert_eq!(
        e.to_string(),
        "(a or (b and (not (c == (d + (e * (-f)))))))"
    );
    let ExprKind::Binary(BinaryOp::Or, _, rhs) = &e.kind else {
        panic!("{e:?}")
    };
    let ExprKind::Binary(BinaryOp::And, _, rhs) = &rhs.kind else {
        panic!()
    };
    let ExprKind::Unary(UnaryOp::Not, rhs) = &rhs.kind else {
        panic!()
    };
    let ExprKind::Binary(BinaryOp::Eq, _, rhs) = &rhs.kind else {
        panic!()
    };
    let ExprKind::Binary(BinaryOp::Add, _, rhs) = &rhs.kind else {
        panic!()
    };
    let ExprKind::Binary(BinaryOp::Mul, _, rhs) = &rhs.kind else {
        panic!()
    };
    assert!(matches!(rhs.kind, ExprKind::Unary(UnaryOp::Neg, _)));

    let cases = [
        ("a || b && c", "(a or (b and c))"),
        ("a && b || c", "((a and b) or c)"),
        ("!a && b", "((not a) and b)"),
        ("not a == b", "(not (a == b))"),
        ("a - b - c", "((a - b) - c)"),
        ("a / b * c % d", "(((a / b) * c) % d)"),
        ("(a + b) * c", "((a + b) * c)"),
        ("-a * b", "((-a) * b)"),
        ("- -a", "(-(-a))"),
        ("a + b < c * d", "((a + b) < (c * d))"),
        ("x in [1, 2] and y", "((x in [1, 2]) and y)"),
        ("a + 1 in [2, 3]", "((a + 1) in [2, 3])"),
        ("not x in [1]", "(not (x in [1]))"),
        ("(not a) == b", "((not a) == b)"),
        ("a != b", "(a != b)"),
        (
            "a <= b or a >= b or a < b or a > b",
            "((((a <= b) or (a >= b)) or (a < b)) or (a > b))",
        ),
        (
            "first(v).price > last(v).price",
            "(first(v).price > last(v).price)",
        ),
        ("abs(-x) + len(lower(s))", "(abs((-x)) + len(lower(s)))"),
        ("sum(small.amount) * 10", "(sum(small.amount) * 10)"),
    ];
    for (src, shown) in cases {
        assert_eq!(expr(src).to_string(), shown, "{src}");
    }
}

#[test]
fn keywords_are_not_identifier_prefixes() {
    for name in [
        "order",
        "android",
        "notes",
        "index",
        "true_value",
        "nullable",
        "falsey",
        "inx",
        "orx",
        "ANDROID",
    ] {
        let e = expr(&format!("{name} == 1"));
        let ExprKind::Binary(BinaryOp::Eq, l, _) = &e.kind else {
            panic!("{name}")
        };
        assert_eq!(l.kind, ExprKind::Path(vec![name.to_string()]), "{name}");
    }
    assert_eq!(expr("order and notes").to_string(), "(order and notes)");
    assert_eq!(
        expr("this.price").kind,
        ExprKind::Path(vec!["this".into(), "price".into()])
    );
    assert!(parse_expr("and == 1").is_err());
    // Chain-call and declaration words are ordinary field names in expressions.
    assert_eq!(
        expr("next + where + time + key + pattern").to_string(),
        "((((next + where) + time) + key) + pattern)"
    );
}

#[test]
fn literals() {
    let lit = |s: &str| match expr(s).kind {
        ExprKind::Literal(v) => v,
        other => panic!("{s}: {other:?}"),
    };
    assert!(matches!(lit("42"), Value::Int(42)));
    assert!(matches!(lit("2.5"), Value::Float(x) if x == 2.5));
    assert!(matches!(lit("1e3"), Value::Float(x) if x == 1000.0));
    assert!(matches!(lit("1.5E-2"), Value::Float(x) if x == 0.015));
    assert!(matches!(lit("9223372036854775807"), Value::Int(i64::MAX)));
    // Too large for 64 bits: a float, as a JSON number would be.
    assert!(matches!(lit("9223372036854775808"), Value::Float(_)));
    assert!(matches!(lit("true"), Value::Bool(true)));
    assert!(matches!(lit("false"), Value::Bool(false)));
    assert!(matches!(lit("null"), Value::Null));
    assert_eq!(lit(r#""a\"b\\c\nd\te""#).as_str(), Some("a\"b\\c\nd\te"));
    assert_eq!(
        lit(r#""\u{1F600}\u00e9\r\/\0""#).as_str(),
        Some("\u{1F600}\u{e9}\r/\0")
    );
    assert_eq!(lit(r#""héllo wörld""#).as_str(), Some("héllo wörld"));
    assert!(parse_expr("1e999").is_err());
    assert!(parse_expr("\"a\nb\"").is_err());
    assert!(parse_expr(r#""\u{110000}""#).is_err());
    assert!(parse_expr(r#""\uD800""#).is_err());
}

#[test]
fn calls_and_members() {
    let e = expr("first(v).user.id");
    let ExprKind::Member { base, path } = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(path, &vec!["user".to_string(), "id".to_string()]);
    assert!(
        matches!(&base.kind, ExprKind::Call { name, args } if name == "first" && args.len() == 1)
    );
    assert_eq!(
        &"first(v).user.id"[base.span.start..base.span.end],
        "first(v)"
    );
    let e = expr("f()");
    assert!(matches!(&e.kind, ExprKind::Call { args, .. } if args.is_empty()));
    let e = expr("x in []");
    assert!(matches!(&e.kind, ExprKind::In(_, l) if l.is_empty()));
    let e = expr("x in [1, 2,]");
    assert!(matches!(&e.kind, ExprKind::In(_, l) if l.len() == 2));
}

#[test]
fn expression_spans() {
    let src = "  (a + b) * -c in [1, x]";
    let e = expr(src);
    let at = |s: Span| &src[s.start..s.end];
    assert_eq!(at(e.span), "(a + b) * -c in [1, x]");
    let ExprKind::In(lhs, items) = &e.kind else {
        panic!()
    };
    assert_eq!(at(lhs.span), "(a + b) * -c");
    assert_eq!(at(items[1].span), "x");
    let ExprKind::Binary(_, l, r) = &lhs.kind else {
        panic!()
    };
    assert_eq!(at(l.span), "(a + b)");
    assert_eq!(at(r.span), "-c");
}

// ---------------------------------------------------------------------------------------
// The printer

#[test]
fn printer_canonical_form() {
    let src = "pattern small_then_large key card_id time ts lateness 5000ms\n\
               = begin(\"small\", skipPastLastEvent()).where(amount < 10).times(3).consecutive()\n\
               .followedBy(\"large\").where(amount > 500 and amount > 10 * sum(small.amount))\n\
               .within(600s);";
    let expected = "pattern small_then_large\n    key card_id\n    time ts\n    lateness 5s\n\
                    = begin(\"small\", skipPastLastEvent()).where(amount < 10).times(3).consecutive()\n  \
                    .followedBy(\"large\").where(amount > 500 and amount > 10 * sum(small.amount))\n  \
                    .within(10m);\n";
    assert_eq!(print(src), expected);
}

#[test]
fn printed_expressions_nest_no_deeper_than_their_source() {
    // Found by the `parse` fuzz target: a chain of unary minus signs (and likewise a long
    // chain of binary operators) has no brackets in the source, so a fully parenthesised
    // print exceeded the nesting limit and did not parse back.
    let minus = "-".repeat(90);
    let plus = (0..90)
        .map(|i| format!("x{i}"))
        .collect::<Vec<_>>()
        .join(" + ");
    for cond in [format!("nam{minus}e == \"b\""), format!("{plus} > 1")] {
        let src = format!("pattern p = begin(\"a\").where({cond});");
        let once = print(&src);
        let again = parse_source(&once).unwrap_or_else(|e| panic!("{once}\n{e:?}"));
        assert_eq!(print_decls(&again), once);
    }
    // Brackets the tree needs stay.
    assert!(
        print("pattern p = begin(\"a\").where(a - (b - c) == -(-d) * (e + f));")
            .contains("where(a - (b - c) == --d * (e + f))")
    );
}

#[test]
fn printer_round_trips() {
    let samples = [
        "pattern a = begin(\"x\");",
        "pattern a key k1, k2.sub time t lateness 90s = begin(\"x\", skipToFirst(\"y\")).where(a > 1).or(b)\
         .next(\"y\").where(s == \"q\\\"uote\\\\ \\n\\t\\u{1F600}\\u00e9\\u0001\").times(0, 2)\
         .followedByAny(begin(\"g1\").where(v in [1, 2.0, \"s\", null, true]).next(\"g2\")).oneOrMore().optional().greedy().until(count(g1) > 3)\
         .notFollowedBy(\"n\").where(not (x == 1) and -y < 2.5e-3)\
         .followedBy(\"z\").timesOrMore(1).allowCombinations().within(7ms)\
         .within(3ms, PREVIOUS_AND_CURRENT);",
        "pattern b = begin(begin(\"a\").next(begin(\"b\").next(\"c\")).times(2, 4).consecutive(), skipToLast(\"c\"))\
         .notNext(\"d\").followedBy(\"e\").where(first(a).x.y + last(b).z % 3 / 2 - 1 >= 0);\n\
         pattern c = begin(\"a\").where(1.0 == 1).where(0.1 + 2.0 != 100000000000000000000);",
        "pattern d = begin(\"a\").where(x).where(y).or(z).where(w).until(u);",
        "pattern e = begin(\"a\").where((not a) == b and -(x) * (not y) < 1).where(not a).where(!(a or b));",
    ];
    for s in samples {
        assert_round_trip(s);
    }
    // Floats keep their kind through printing.
    let printed = print("pattern c = begin(\"a\").where(x == 2.0 and y == 1e3);");
    assert!(
        printed.contains("where(x == 2.0 and y == 1000.0)"),
        "{printed}"
    );
}

/// Field names that are not identifiers are written in backticks: parsed without them,
/// printed with them (only where needed), round-tripping.
#[test]
fn quoted_field_names() {
    let src = "pattern q key `user-id`, region time `@timestamp`\n\
               = begin(\"a\").where(`größe` > 1 and `a.b` == \"x\" and `we``ird` == 1 and `and` == 2)\n\
               .followedBy(\"b\").where(`größe` > a.`größe` and first(a).`@timestamp` > 0 and `plain` == 1);";
    let d = &parse_ok(src)[0];
    assert_eq!(
        d.key,
        vec![vec!["user-id".to_string()], vec!["region".to_string()]]
    );
    assert_eq!(d.time, Some(vec!["@timestamp".to_string()]));
    let printed = print(src);
    for quoted in [
        "`user-id`, region",
        "time `@timestamp`",
        "`größe` > 1",
        "`a.b` == \"x\"",
        "`we``ird` == 1",
        "`and` == 2",
        "a.`größe`",
        "first(a).`@timestamp`",
        "plain == 1",
    ] {
        assert!(printed.contains(quoted), "{quoted}: {printed}");
    }
    assert_round_trip(src);
    let names = |e: &Expr| match &e.kind {
        ExprKind::Path(p) => p.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names(&expr("`a.b`.c")), ["a.b", "c"]);
    assert_eq!(names(&expr("`x``y`")), ["x`y"]);
    // Empty or unclosed backticks are syntax errors, not panics.
    for bad in ["``", "`abc", "`a\nb`", "x.``"] {
        assert!(parse_expr(bad).is_err(), "{bad}");
    }
    // The builder's names print quoted too.
    let built = crate::pattern::Pattern::begin("a")
        .declare("p")
        .key(&["user-id"])
        .time("@ts");
    let printed = print_decls(&[built]);
    assert!(
        printed.contains("key `user-id`\n    time `@ts`"),
        "{printed}"
    );
    assert_round_trip(&printed);
}

#[test]
fn printer_handles_builder_conditions() {
    use crate::pattern::Pattern;
    let e = |s: &str| expr(s);
    let p = Pattern::begin("a")
        .where_(Condition::Or(
            Box::new(e("x > 1").into()),
            Box::new(e("y").into()),
        ))
        .where_(e("z"))
        .where_fn(|_, _| true)
        .followed_by("b")
        .times_range(0, 2)
        .within_ms(1500);
    let printed = print_decls(&[p.declare("built")]);
    assert!(
        printed.contains(".where(x > 1).or(y).where(z).where(true /* rust closure */)"),
        "{printed}"
    );
    assert!(
        printed.contains(".followedBy(\"b\").times(0, 2)\n  .within(1500ms);"),
        "{printed}"
    );
    // It parses back, and printing that is stable.
    assert_round_trip(&printed);
}

// ---------------------------------------------------------------------------------------
// Errors and their rendering

#[test]
fn syntax_error_messages_name_tokens_not_rules() {
    let cases = [
        (
            "pattern p = begin(\"a\").where(f(1, 2 3));",
            "1:37",
            "expected `)`, `,` or an operator, found `3`",
        ),
        (
            "pattern p = begin(\"a\").where(x > 1;",
            "1:35",
            "expected `)` or an operator, found `;`",
        ),
        (
            "pattern p = begin(\"a\")",
            "1:23",
            "expected `;` or `.`, found end of input",
        ),
        (
            "pattern p = begin(\"a\").folowedBy(\"b\");",
            "1:24",
            "expected a chain call",
        ),
        (
            "pattern p begin(\"a\");",
            "1:11",
            "expected `=`, `key`, `time` or `lateness`, found `begin`",
        ),
        (
            "pattern p = begin(a);",
            "1:19",
            "expected a variable name (a string such as \"a\") or `begin`, found `a`",
        ),
        (
            "pattern p = begin(\"a\").within(10 s);",
            "1:33",
            "expected a duration unit",
        ),
        (
            "pattern p = begin(\"a\").where(x in [1 2]);",
            "1:38",
            "expected `]`, `,` or an operator, found `2`",
        ),
        (
            "pattern p = begin(\"a\").times(two);",
            "1:30",
            "expected a whole number, found `two`",
        ),
    ];
    for (src, at, message) in cases {
        let e = load_err(src);
        let head = format!("t.motif:{at}: error: {message}");
        assert!(
            e.starts_with(&head),
            "for {src}\nexpected: {head}\ngot:\n{e}"
        );
        assert!(
            !e.contains("op_") && !e.contains("m_") && !e.contains("_call"),
            "{e}"
        );
    }
    let e = load_err("pattern p = begin(\"a\").folowedBy(\"b\");");
    assert!(e.contains("= help: did you mean `followedBy`?"), "{e}");
    let e = load_err("pattern p = begin(\"a\").where(name = \"c\");");
    assert!(e.contains("= help: compare with `==`"), "{e}");
}

#[test]
fn rendering_is_like_rustc() {
    let src = "pattern p\n= begin(\"a\")\n  .where(x amount);";
    let e = load_err(src);
    let expected = "t.motif:3:12: error: expected `)` or an operator, found `amount`\n  |\n3 |   .where(x amount);\n  |            ^^^^^^";
    assert_eq!(e, expected);

    // Columns count characters; tabs are kept so that the caret lines up.
    let src = "pattern p = begin(\"é\")\n\t.where(\"ü\" ==);";
    let e = load_err(src);
    assert!(
        e.starts_with("t.motif:2:15: error: expected an expression, found `)`"),
        "{e}"
    );
    assert!(
        e.contains("\n2 | \t.where(\"ü\" ==);\n  | \t             ^"),
        "{e}"
    );

    // A help line.
    let e = load_err("pattern p = begin(\"a\").where(x).until(y).until(z);");
    assert!(
        e.contains("\n  = help: the first `until` is at 1:33; combine the conditions with `or`"),
        "{e}"
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    let src = "\
pattern one = begin(\"a\").where(x >);
pattern two = begin(\"a\").oneOrMore().times(2);
pattern three = begin(\"a\").followedBy(\"a\")
  .notFollowedBy(\"c\");
pattern one = begin(\"b\") .folowedBy(\"c\");
pattern five = begin(\"x\").greedy();
";
    let e = load_str("many.motif", src).unwrap_err();
    let heads: Vec<String> = e
        .to_string()
        .lines()
        .filter(|l| l.starts_with("many.motif:"))
        .map(str::to_string)
        .collect();
    let expected = [
        "many.motif:1:35: error: expected an expression, found `)`",
        "many.motif:2:38: error: a quantifier is already applied to this step",
        "many.motif:3:39: error: the variable \"a\" is defined twice",
        "many.motif:4:18: error: notFollowedBy at the end of a pattern needs a within(...)",
        "many.motif:5:27: error: expected a chain call such as `where`, `followedBy` or `times`, found `folowedBy`",
        "many.motif:6:27: error: `greedy()` needs a quantifier",
    ];
    // Declaration 4 (`one` again) has a syntax error, so it is not counted as a duplicate.
    assert_eq!(heads, expected, "\n{e}");

    // Recovery also resumes after an error at a multi-byte character.
    let e = load_str(
        "u.motif",
        "pattern a = begin(\"x\").where(ü);\npattern b = begin(\"y\").where(é);",
    )
    .unwrap_err();
    assert_eq!(e.diagnostics.len(), 2, "{e}");
}

#[test]
fn duplicate_pattern_names() {
    let e =
        load_err("pattern p = begin(\"a\");\npattern q = begin(\"a\");\npattern p = begin(\"b\");");
    assert!(
        e.starts_with("t.motif:3:9: error: pattern `p` is declared twice in this file"),
        "{e}"
    );
    assert!(e.contains("= help: the first `p` is at 1:9"), "{e}");
}

#[test]
fn parse_time_chain_errors() {
    let cases = [
        (
            ".oneOrMore().times(2)",
            "1:36",
            "a quantifier is already applied to this step",
        ),
        (
            ".times(0)",
            "1:24",
            "`times(0)`: a step must occur at least once",
        ),
        (
            ".times(0, 0)",
            "1:24",
            "`times(0, 0)` matches no event at all",
        ),
        (
            ".times(0, 2).optional()",
            "1:36",
            "this step is already optional",
        ),
        (
            ".oneOrMore().optional().optional()",
            "1:47",
            "this step is already optional",
        ),
        (
            ".oneOrMore().consecutive().allowCombinations()",
            "1:50",
            "apply either `consecutive()` or `allowCombinations()`, not both",
        ),
        (
            ".oneOrMore().consecutive().consecutive()",
            "1:50",
            "`consecutive()` is already applied to this step",
        ),
        (
            ".oneOrMore().greedy().greedy()",
            "1:45",
            "`greedy()` is already applied to this step",
        ),
        (
            ".optional().oneOrMore()",
            "1:35",
            "the quantifier `oneOrMore()` must come before `optional()`",
        ),
        (
            ".oneOrMore().until(a).until(b)",
            "1:45",
            "only one `until` can be applied to a step",
        ),
        (
            ".within(1s).within(2s)",
            "1:35",
            "a FIRST_AND_LAST window is already given for this step",
        ),
        (".times(99999999999)", "1:30", "this number is too large"),
        (
            ".within(9999999999999999999d)",
            "1:31",
            "this duration is too long",
        ),
    ];
    for (calls, at, message) in cases {
        let src = format!("pattern p = begin(\"a\"){calls}.followedBy(\"z\");");
        let errs = parse_source(&src).unwrap_err();
        let rendered = SourceErrors::new("t.motif", src.as_str(), errs).to_string();
        let head = format!("t.motif:{at}: error: {message}");
        assert!(
            rendered.starts_with(&head),
            "for {calls}\nexpected: {head}\ngot:\n{rendered}"
        );
    }
}

#[test]
fn parse_expr_errors_render_against_the_expression() {
    let e = parse_expr("amount >").unwrap_err();
    assert_eq!(
        e.to_string(),
        "<expression>:1:9: error: expected an expression, found end of input\n  |\n1 | amount >\n  |         ^"
    );
    assert!(parse_expr("amount > 1 2").is_err());
    assert!(parse_expr("").is_err());
}

#[test]
fn load_file_reports_io_and_content_errors() {
    let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("no/such/file.motif");
    let err = load_file(&missing).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }));
    assert!(err.to_string().starts_with("cannot read "), "{err}");
    assert!(std::error::Error::source(&err).is_some());

    let (path, _) = &case_files()[0];
    assert!(load_file(path).is_ok());

    let dir = std::env::temp_dir().join(format!("motif-syntax-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.motif");
    std::fs::write(&bad, "pattern p = begin(\"a\").where(;\n").unwrap();
    let err = load_file(&bad).unwrap_err();
    let LoadError::Invalid(errors) = &err else {
        panic!("{err}")
    };
    assert_eq!(errors.diagnostics.len(), 1);
    assert!(
        err.to_string()
            .starts_with(&format!("{}:1:30: error:", bad.display())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn line_col_counts_characters() {
    let s = "ab\ncdé\u{1F600}x\n";
    assert_eq!(line_col(s, 0), (1, 1));
    assert_eq!(line_col(s, 3), (2, 1));
    let x = s.find('x').unwrap();
    assert_eq!(line_col(s, x), (2, 5));
    assert_eq!(line_col(s, s.len()), (3, 1));
    assert_eq!(line_col(s, 10_000), (3, 1));
}

/// The expression without its spans, to compare trees.
fn strip(e: &Expr) -> Expr {
    let kind = match &e.kind {
        ExprKind::Literal(v) => ExprKind::Literal(v.clone()),
        ExprKind::Path(p) => ExprKind::Path(p.clone()),
        ExprKind::Call { name, args } => ExprKind::Call {
            name: name.clone(),
            args: args.iter().map(strip).collect(),
        },
        ExprKind::Member { base, path } => ExprKind::Member {
            base: Box::new(strip(base)),
            path: path.clone(),
        },
        ExprKind::Unary(op, x) => ExprKind::Unary(*op, Box::new(strip(x))),
        ExprKind::Binary(op, a, b) => ExprKind::Binary(*op, Box::new(strip(a)), Box::new(strip(b))),
        ExprKind::In(x, l) => ExprKind::In(Box::new(strip(x)), l.iter().map(strip).collect()),
    };
    Expr::new(kind)
}

/// A new variable name.
fn fresh(names: &mut u32) -> String {
    *names += 1;
    format!("\"v{names}\"")
}

/// A tiny deterministic generator (xorshift) for the randomized round-trip test.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn expr(&mut self, depth: usize) -> String {
        if depth == 0 || self.below(3) == 0 {
            return self
                .pick(&[
                    "1",
                    "0",
                    "42",
                    "2.0",
                    "0.5",
                    "1e3",
                    "3.25",
                    "\"s\"",
                    "\"q\\\"\\n\\u{1F600}\"",
                    "true",
                    "false",
                    "null",
                    "a",
                    "user.id",
                    "this.x",
                    "start.price",
                    "order",
                    "count(v)",
                    "sum(v.f)",
                    "first(v).p",
                    "last(v).p.q",
                    "abs(x)",
                    "contains(s, \"a\")",
                    "f()",
                ])
                .to_string();
        }
        let d = depth - 1;
        match self.below(6) {
            0 => format!("{} {}", self.pick(&["not", "!", "-", "- "]), self.expr(d)),
            1 => format!("({})", self.expr(d)),
            2 => format!("{} in [{}, {}]", self.expr(d), self.expr(d), self.expr(d)),
            _ => {
                let op = self.pick(&[
                    "or", "||", "and", "&&", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/",
                    "%",
                ]);
                format!("{} {op} {}", self.expr(d), self.expr(d))
            }
        }
    }

    fn chain(&mut self, names: &mut u32, depth: usize) -> String {
        let mut s = if depth > 0 && self.below(4) == 0 {
            format!("begin({})", self.chain(names, depth - 1))
        } else {
            let n = fresh(names);
            let skip = self.pick(&[
                "",
                "",
                ", skipToNext()",
                ", skipPastLastEvent()",
                ", skipToFirst(\"v1\")",
                ", noSkip()",
            ]);
            format!("begin({n}{skip})")
        };
        for _ in 0..self.below(5) {
            match self.below(12) {
                0..=3 => {
                    let call = self.pick(&[
                        "next",
                        "followedBy",
                        "followedByAny",
                        "notNext",
                        "notFollowedBy",
                    ]);
                    let target = if depth > 0 && !call.starts_with("not") && self.below(3) == 0 {
                        self.chain(names, depth - 1)
                    } else {
                        fresh(names)
                    };
                    s += &format!("\n  .{call}({target})");
                }
                4 | 5 => s += &format!(".{}({})", self.pick(&["where", "or"]), self.expr(3)),
                6 => s += &format!(".until({})", self.expr(2)),
                7 => {
                    s += self.pick(&[
                        ".oneOrMore()",
                        ".timesOrMore(2)",
                        ".times(3)",
                        ".times(0, 2)",
                        ".times(1, 4)",
                    ])
                }
                8 => {
                    s += self.pick(&[
                        ".optional()",
                        ".greedy()",
                        ".consecutive()",
                        ".allowCombinations()",
                    ])
                }
                9 => {
                    s += self.pick(&[
                        ".within(10s)",
                        ".within(90s)",
                        ".within(250ms, PREVIOUS_AND_CURRENT)",
                        ".within(2h, FIRST_AND_LAST)",
                    ])
                }
                _ => s += &format!(".where({})", self.expr(1)),
            }
        }
        s
    }
}

#[test]
fn random_texts_round_trip() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    for i in 0..600 {
        let mut names = 0;
        let header = g.pick(&["", " key k", " time ts lateness 5s", " key a, b.c time t"]);
        let src = format!("pattern p{i}{header} = {};", g.chain(&mut names, 2));
        let Ok(decls) = parse_source(&src) else {
            continue;
        };
        parsed += 1;
        let once = print_decls(&decls);
        let again = parse_source(&once).unwrap_or_else(|e| {
            panic!(
                "printed text does not parse:\n{once}\n{}",
                SourceErrors::new("printed", once.as_str(), e)
            )
        });
        assert_eq!(once, print_decls(&again), "not a fixpoint for:\n{src}");
        // Validation never panics either.
        let _ = crate::validate::validate(&decls[0]);
    }
    assert!(parsed > 200, "only {parsed} random texts parsed");

    for _ in 0..2_000 {
        let src = g.expr(5);
        let e = parse_expr(&src).unwrap_or_else(|e| panic!("{e}"));
        let printed = super::printer::expr_text(&e);
        let back = parse_expr(&printed).unwrap_or_else(|e| panic!("{src}\n{e}"));
        assert_eq!(strip(&back), strip(&e), "the tree changed for {src}");
        assert_eq!(super::printer::expr_text(&back), printed, "for {src}");
    }
}

#[test]
fn quantifier_windows_parse_print_and_equal_the_builder() {
    use crate::pattern::Pattern;
    use std::time::Duration;
    let src = r#"pattern p
= begin("s").followedBy("a").times(2, 4, 3s).followedBy("b").oneOrMore(5ms)
  .followedBy("c").timesOrMore(2, 1m).followedBy("d").times(3, 250ms);"#;
    let d = parse_ok(src);
    let w: Vec<Option<u64>> = d[0]
        .pattern
        .steps
        .iter()
        .map(|s| s.quantifier.window_ms)
        .collect();
    assert_eq!(w, vec![None, Some(3_000), Some(5), Some(60_000), Some(250)]);
    let built = Pattern::begin("s")
        .followed_by("a")
        .times_range_within(2, 4, Duration::from_secs(3))
        .followed_by("b")
        .one_or_more_within(Duration::from_millis(5))
        .followed_by("c")
        .times_or_more_within(2, Duration::from_secs(60))
        .followed_by("d")
        .times_within(3, Duration::from_millis(250));
    let q = |p: &Pattern| -> Vec<Option<u64>> {
        p.steps.iter().map(|s| s.quantifier.window_ms).collect()
    };
    assert_eq!(q(&built), w);
    let printed = print(src);
    assert!(printed.contains(".times(2, 4, 3s)"), "{printed}");
    assert!(printed.contains(".oneOrMore(5ms)"), "{printed}");
    assert!(printed.contains(".timesOrMore(2, 1m)"), "{printed}");
    assert!(printed.contains(".times(3, 250ms)"), "{printed}");
    assert_round_trip(src);
    let err = load_err("pattern p\n= begin(\"a\").oneOrMore(0ms);");
    assert!(err.contains("a quantifier window of 0ms"), "{err}");
}

#[test]
fn every_random_case_round_trips_through_the_printer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/random");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the random cases").flatten() {
        let path = entry.path().join("case.motif");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let origin = path.display().to_string();
        let decls = load_str(&origin, &text).unwrap_or_else(|e| panic!("{e}"));
        let printed = print_decls(&decls);
        let again = load_str(&origin, &printed).unwrap_or_else(|e| {
            panic!("{origin}: the printed form does not load:\n{printed}\n{e}")
        });
        assert_eq!(printed, print_decls(&again), "{origin}: not a fixpoint");
        n += 1;
    }
    assert_eq!(n, 3_285);
}
