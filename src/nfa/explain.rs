//! Human-readable renderings of a compiled NFA: plain text and Graphviz DOT.

use std::fmt::Write;

use crate::nfa::{Action, Grouping, Guard, Nfa, StateKind};

fn guard_text(nfa: &Nfa, g: &Guard) -> String {
    match g {
        Guard::True => "true".into(),
        Guard::Cond(i) => nfa
            .conditions
            .get(*i)
            .map(|c| c.text.clone())
            .unwrap_or_else(|| format!("cond#{i}")),
        Guard::Not(x) => format!("not ({})", guard_text(nfa, x)),
        Guard::And(a, b) => format!("{} and {}", guard_text(nfa, a), guard_text(nfa, b)),
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Take => "TAKE",
        Action::Ignore => "IGNORE",
        Action::Proceed => "PROCEED",
    }
}

fn kind_name(k: StateKind) -> &'static str {
    match k {
        StateKind::Normal => "normal",
        StateKind::Final => "final",
        StateKind::Stop => "stop",
        StateKind::Pending => "pending",
    }
}

/// Which layout a partition's runs get, and why.
fn matcher_text(nfa: &Nfa) -> String {
    if nfa.compact.is_ok() {
        return "compact: single steps, conditions on the event alone and no skip strategy, so \
                the partial matches are kept as the events they share (per step, the events \
                that end one, each with the range of the step before that can precede it), \
                not one run each; matches are enumerated when an event completes them"
            .into();
    }
    let why_not = nfa.compact.as_ref().err().copied().unwrap_or_default();
    let layout = format!("{} (not the compact matcher: {why_not})", layout_text(nfa));
    if nfa.any_links_as_next {
        return format!(
            "{layout}; followedByAny links run as followedBy: with skipPastLastEvent, single \
             steps and conditions on the event alone only the chain of earliest events can \
             be reported, so one partial match per first event is kept (with --timeouts, \
             which reports every partial match, each branch is kept)"
        );
    }
    layout
}

fn layout_text(nfa: &Nfa) -> String {
    match (nfa.grouping(), nfa.group_runs_at) {
        (Grouping::ByState, Some(at)) => format!(
            "partial matches grouped by state above {at} per key (an event visits only \
             the states it can move)"
        ),
        _ if nfa.step_windows => "partial matches in one list in Flink's order (the skip \
             strategy prunes by first event, and states have windows of their own)"
            .into(),
        _ => "partial matches in one list in Flink's order (two may share their first \
             event, and the skip strategy decides between such matches by that order)"
            .into(),
    }
}

/// The NFA as indented text: one block per state, one line per edge.
pub fn to_text(nfa: &Nfa) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pattern {}: {} states, variables [{}]",
        nfa.name,
        nfa.states.len(),
        nfa.variables.join(", ")
    );
    if nfa.window > 0 {
        let _ = writeln!(s, "  within {}ms (first to last event)", nfa.window);
    }
    let _ = writeln!(s, "  skip: {:?}", nfa.skip);
    let _ = writeln!(s, "  matcher: {}", matcher_text(nfa));
    // Start first, then in creation order.
    let mut order: Vec<usize> = (0..nfa.states.len()).collect();
    order.sort_by_key(|&i| (i != nfa.start, std::cmp::Reverse(i)));
    for i in order {
        let st = &nfa.states[i];
        let mut tags = vec![kind_name(st.kind).to_string()];
        if st.is_start {
            tags.insert(0, "start".into());
        }
        if let Some(w) = nfa.state_windows[i] {
            tags.push(format!("within {w}ms of previous event"));
        }
        let _ = writeln!(s, "state {} ({})", st.name, tags.join(", "));
        for e in &st.edges {
            let _ = writeln!(
                s,
                "  {:<7} -> {:<14} if {}",
                action_name(e.action),
                nfa.states[e.target].name,
                guard_text(nfa, &e.guard)
            );
        }
    }
    s
}

#[cfg(any(test, feature = "cli", feature = "internals"))]
fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The NFA as a Graphviz digraph.
#[cfg(any(test, feature = "cli", feature = "internals"))]
pub fn to_dot(nfa: &Nfa) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph \"{}\" {{", dot_escape(&nfa.name));
    let _ = writeln!(s, "  rankdir=LR;");
    let _ = writeln!(s, "  node [fontname=\"Helvetica\"];");
    for (i, st) in nfa.states.iter().enumerate() {
        let shape = match st.kind {
            StateKind::Final => "doublecircle",
            StateKind::Stop => "octagon",
            StateKind::Pending => "box",
            StateKind::Normal => "circle",
        };
        let style = if st.is_start { ", style=bold" } else { "" };
        let _ = writeln!(
            s,
            "  s{i} [label=\"{}\", shape={shape}{style}];",
            dot_escape(&st.name)
        );
    }
    for (i, st) in nfa.states.iter().enumerate() {
        for e in &st.edges {
            let style = match e.action {
                Action::Take => "solid",
                Action::Ignore => "dashed",
                Action::Proceed => "dotted",
            };
            let _ = writeln!(
                s,
                "  s{i} -> s{} [label=\"{}: {}\", style={style}];",
                e.target,
                action_name(e.action),
                dot_escape(&guard_text(nfa, &e.guard))
            );
        }
    }
    s.push_str("}\n");
    s
}
