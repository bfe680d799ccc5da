//! Turning problems into readable messages: positions (line and column), rustc-style
//! rendering with a caret line, and pest's syntax errors described in the language's own
//! words ("expected `)` or `,`") instead of grammar rule names.

use std::fmt::{self, Write as _};

use pest::error::{Error as PestError, ErrorVariant, InputLocation};

use super::parser::Rule;
use crate::error::{did_you_mean, floor_char_boundary, line_col, Diagnostic};
use crate::expr::ast::Span;

/// Writes one diagnostic the way rustc does:
///
/// ```text
/// origin:3:14: error: expected `)` or `,`, found `b`
///   |
/// 3 | = begin("a").where(x > 1 b
///   |                          ^
///   = help: ...
/// ```
///
/// A span over several lines is underlined to the end of its first line; an empty span
/// gets a single caret.
pub fn render(out: &mut String, origin: &str, source: &str, diag: &Diagnostic) -> fmt::Result {
    render_as(out, "error", origin, source, diag)
}

/// [`render`] with another level than `error` (`warning`).
pub fn render_as(
    out: &mut String,
    level: &str,
    origin: &str,
    source: &str,
    diag: &Diagnostic,
) -> fmt::Result {
    let start = floor_char_boundary(source, diag.span.start.min(source.len()));
    let end = floor_char_boundary(source, diag.span.end.clamp(start, source.len()));
    let (line, col) = line_col(source, start);
    writeln!(out, "{origin}:{line}:{col}: {level}: {}", diag.message)?;

    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[start..]
        .find('\n')
        .map_or(source.len(), |i| start + i);
    let text = source[line_start..line_end].trim_end_matches('\r');
    let gutter = line.to_string().len();
    let pad = " ".repeat(gutter);
    writeln!(out, "{pad} |")?;
    writeln!(out, "{line} | {text}")?;

    // The caret line repeats tabs of the source line so that carets stay aligned.
    let mut carets = String::new();
    for ch in source[line_start..start].chars() {
        carets.push(if ch == '\t' { '\t' } else { ' ' });
    }
    let underlined = source[start..end.min(line_end)].chars().count().max(1);
    carets.push_str(&"^".repeat(underlined));
    writeln!(out, "{pad} | {carets}")?;
    if let Some(help) = &diag.help {
        writeln!(out, "{pad} = help: {help}")?;
    }
    Ok(())
}

/// The chain-call names of the language, for did-you-mean on unknown calls.
pub(crate) const CHAIN_CALLS: &[&str] = &[
    "next",
    "followedBy",
    "followedByAny",
    "notNext",
    "notFollowedBy",
    "where",
    "or",
    "until",
    "oneOrMore",
    "timesOrMore",
    "times",
    "optional",
    "greedy",
    "consecutive",
    "allowCombinations",
    "within",
];

const SKIP_CALLS: &[&str] = &[
    "noSkip",
    "skipToNext",
    "skipPastLastEvent",
    "skipToFirst",
    "skipToLast",
];

/// How a grammar rule is named in "expected ..." messages; `None` for rules never worth
/// mentioning on their own.
fn describe(rule: Rule) -> Option<&'static str> {
    use Rule::*;
    Some(match rule {
        lparen => "`(`",
        rparen => "`)`",
        lbracket => "`[`",
        rbracket => "`]`",
        comma => "`,`",
        semi => "`;`",
        dot => "`.`",
        assign => "`=`",
        ident | field_path => "a name",
        kw_pattern | decl | decl_at | file => "`pattern` or `aggregate`",
        kw_aggregate | agg_decl => "`aggregate`",
        kw_from | agg_from => "`from`",
        agg_window | kw_window | agg_group | kw_group | agg_select | kw_select | agg_having
        | kw_having | agg_output | kw_output | agg_trigger | kw_trigger => {
            "an aggregate clause (`window`, `group by`, `select`, `having`, `output` or `trigger`)"
        }
        w_tumbling | w_sliding | w_session | m_tumbling | m_sliding | m_session => {
            "a window (`tumbling(1m)`, `sliding(10m, 1m)` or `session(5m)`)"
        }
        agg_on | kw_on => "`on`",
        kw_start | kw_end => "`start` or `end`",
        kw_by => "`by`",
        kw_as => "`as`",
        agg_item => "a column",
        kw_append | kw_update | kw_complete => "`append`, `update` or `complete`",
        trigger_records | trigger_interval | kw_every => "`every`",
        kw_records => "`records`",
        trigger_watermark | kw_watermark => "`watermark`",
        kw_key | key_clause => "`key`",
        kw_time | time_clause => "`time`",
        kw_lateness | lateness_clause => "`lateness`",
        count => "a whole number",
        duration | duration_value => "a duration such as `10s`",
        duration_unit => "a duration unit (`ms`, `s`, `m`, `min`, `h` or `d`)",
        string | var_name => "a string",
        chain | begin_call | m_begin => "`begin`",
        expr | expr_input | op_not | op_neg | float | int | kw_true | kw_false | kw_null | call
        | path | paren => "an expression",
        op_or | op_and | op_eq | op_ne | op_le | op_lt | op_ge | op_gt | op_add | op_sub
        | op_mul | op_div | op_rem | in_list | kw_in | kw_and | kw_or => "an operator",
        member => "`.`",
        next_call
        | followed_by_call
        | followed_by_any_call
        | not_next_call
        | not_followed_by_call
        | where_call
        | or_call
        | until_call
        | one_or_more_call
        | times_or_more_call
        | times_call
        | optional_call
        | greedy_call
        | consecutive_call
        | allow_combinations_call
        | within_call
        | m_next
        | m_followed_by
        | m_followed_by_any
        | m_not_next
        | m_not_followed_by
        | m_where
        | m_or
        | m_until
        | m_one_or_more
        | m_times_or_more
        | m_times
        | m_optional
        | m_greedy
        | m_consecutive
        | m_allow_combinations
        | m_within => "a chain call such as `where`, `followedBy` or `times`",
        no_skip
        | skip_to_next
        | skip_past_last_event
        | skip_to_first
        | skip_to_last
        | m_no_skip
        | m_skip_to_next
        | m_skip_past_last_event
        | m_skip_to_first
        | m_skip_to_last => {
            "a skip strategy (`noSkip()`, `skipToNext()`, `skipPastLastEvent()`, \
             `skipToFirst(\"v\")` or `skipToLast(\"v\")`)"
        }
        first_and_last | previous_and_current => "`FIRST_AND_LAST` or `PREVIOUS_AND_CURRENT`",
        EOI | rest_empty => "end of input",
        _ => return None,
    })
}

/// Joins descriptions as "A", "A or B", "A, B or C".
fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The token found at `pos`: its span and how to name it in a message.
fn found_at(source: &str, pos: usize) -> (Span, String) {
    let pos = floor_char_boundary(source, pos.min(source.len()));
    let rest = &source[pos..];
    let Some(first) = rest.chars().next() else {
        return (Span::new(pos, pos), "end of input".to_string());
    };
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if is_word(first) {
        let len = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let word = &rest[..len];
        return (Span::new(pos, pos + len), format!("`{word}`"));
    }
    let len = first.len_utf8();
    let shown = match first {
        '\n' | '\r' => "end of line".to_string(),
        ' ' | '\t' => "whitespace".to_string(),
        '"' => "a string".to_string(),
        c => format!("`{c}`"),
    };
    (Span::new(pos, pos + len), shown)
}

/// The word (identifier) starting at `pos`, if any.
fn word_at(source: &str, pos: usize) -> Option<&str> {
    let rest = source.get(pos..)?;
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (len > 0).then(|| &rest[..len])
}

/// Checks the string literal that starts with the `"` at `pos`; describes what is wrong with
/// it, if anything.
fn malformed_string(source: &str, pos: usize) -> Option<Diagnostic> {
    let rest = source.get(pos..)?;
    let mut chars = rest.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return None,
            '\n' | '\r' => {
                return Some(
                    Diagnostic::new("unterminated string", Span::new(pos, pos + i)).with_help(
                        "close the string with `\"` on the same line; write a line break as `\\n`",
                    ),
                )
            }
            '\\' => {
                let Some(&(_, e)) = chars.peek() else { break };
                let ok = match e {
                    '"' | '\\' | '/' | 'n' | 't' | 'r' | 'b' | 'f' | '0' => true,
                    'u' => {
                        let after = &rest[i + 2..];
                        after.starts_with('{')
                            && after[1..].find('}').is_some_and(|close| {
                                (1..=6).contains(&close)
                                    && after[1..1 + close].chars().all(|h| h.is_ascii_hexdigit())
                            })
                            || after.len() >= 4
                                && after.is_char_boundary(4)
                                && after[..4].chars().all(|h| h.is_ascii_hexdigit())
                    }
                    _ => false,
                };
                if !ok {
                    let end = i + 1 + e.len_utf8();
                    return Some(
                        Diagnostic::new(
                            format!("unknown escape `{}` in a string", &rest[i..end]),
                            Span::new(pos + i, pos + end),
                        )
                        .with_help(
                            "the escapes are \\\" \\\\ \\n \\t \\r \\b \\f \\0 \\/ \\u{1F600} and \\u00e9",
                        ),
                    );
                }
                chars.next();
            }
            _ => {}
        }
    }
    Some(
        Diagnostic::new("unterminated string", Span::new(pos, source.len()))
            .with_help("close the string with `\"`"),
    )
}

/// Describes a pest error at byte offset `base` of `source` (the error's positions are
/// relative to `&source[base..]`).
pub(crate) fn from_pest(err: &PestError<Rule>, source: &str, base: usize) -> Diagnostic {
    let pos = base
        + match err.location {
            InputLocation::Pos(p) => p,
            InputLocation::Span((s, _)) => s,
        };
    let (span, found) = found_at(source, pos);
    let positives = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => positives.clone(),
        ErrorVariant::CustomError { message } => {
            let message = if message.contains("limit") {
                "the input is nested too deeply".to_string()
            } else {
                message.clone()
            };
            return Diagnostic::new(message, span);
        }
    };

    if source[pos.min(source.len())..].starts_with('"') {
        if let Some(d) = malformed_string(source, pos) {
            return d;
        }
    }

    let mut expected: Vec<&str> = Vec::new();
    for rule in &positives {
        if let Some(d) = describe(*rule) {
            if !expected.contains(&d) {
                expected.push(d);
            }
        }
    }
    // After an operand, `(` (it would make a call) is noise next to "an operator"; and the
    // operators read best last: "expected `)`, `,` or an operator".
    // Where an expression may start, its first tokens are all "an expression"; where a
    // string is all that may come, it is a variable name.
    if expected.contains(&"an expression") {
        expected.retain(|d| !matches!(*d, "`(`" | "a name" | "a string"));
    } else if let Some(s) = expected.iter_mut().find(|d| **d == "a string") {
        *s = "a variable name (a string such as \"a\")";
    }
    if expected.contains(&"an operator") {
        expected.retain(|d| *d != "`(`" && *d != "an operator");
        expected.push("an operator");
    }
    let message = if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {}, found {found}", join_or(&expected))
    };
    let mut diag = Diagnostic::new(message, span);

    // Hints for common slips.
    let wants = |r: Rule| positives.contains(&r);
    let wants_call = positives
        .iter()
        .any(|r| describe(*r).is_some_and(|d| d.starts_with("a chain call")));
    let wants_skip = positives
        .iter()
        .any(|r| describe(*r).is_some_and(|d| d.starts_with("a skip strategy")));
    let wants_operator = positives
        .iter()
        .any(|r| describe(*r) == Some("an operator"));
    let rest = &source[span.start..];
    if let Some(word) = word_at(source, span.start) {
        let candidates: &[&str] = if wants_call {
            CHAIN_CALLS
        } else if wants_skip {
            SKIP_CALLS
        } else {
            &[]
        };
        if let Some(best) = did_you_mean(word, candidates.iter().copied()) {
            diag = diag.with_help(format!("did you mean `{best}`?"));
        } else if wants_call {
            diag = diag.with_help(format!("the chain calls are {}", CHAIN_CALLS.join(", ")));
        } else if (wants(Rule::first_and_last) || wants(Rule::previous_and_current))
            && word.eq_ignore_ascii_case("previous_and_current")
        {
            diag = diag.with_help("write `PREVIOUS_AND_CURRENT` in capitals");
        }
    } else if wants_operator && rest.starts_with('=') && !rest.starts_with("==") {
        diag = diag.with_help("compare with `==`");
    } else if rest.starts_with('\'') {
        diag = diag.with_help("strings are written in double quotes: \"...\"");
    } else if wants(Rule::duration_unit) || wants(Rule::duration) {
        diag = diag.with_help("a duration is a whole number and a unit, e.g. `250ms`, `10s`, `5m`");
    }
    if (wants(Rule::semi) || wants(Rule::dot)) && word_at(source, span.start) == Some("pattern") {
        diag = diag.with_help("end the previous declaration with `;`");
    }
    diag
}
