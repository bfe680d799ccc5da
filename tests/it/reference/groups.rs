//! Groups in the reference, nested to any depth: a pattern with groups is read as the set
//! of *chains* (patterns without groups) that its iteration counts give, and its matches
//! and partial runs are those of the chains together.
//!
//! # The rules
//!
//! * **(G1) iterations.** A group with `times(n)` is `n` copies of its contents in a row;
//!   `times(n, m)` any count from `n` to `m`; `oneOrMore()` / `timesOrMore(n)` any count
//!   from 1 / `n` on (as many as the input can feed, plus one, so that every run waiting
//!   for one more iteration is in some chain). Each choice of counts, nested groups
//!   included, is one chain; two chains giving the same events are two matches, as two
//!   runs of Flink's NFA through different states are.
//! * **(G2) the head of a group.** The first step of a group's contents (written
//!   `begin(..)`) is joined to the event before it not by its own `begin` but as Flink's
//!   `NFACompiler.getIgnoreCondition` / `headOfGroup` decide: in the group's first
//!   iteration by the contiguity the group was written with (`next(group)`,
//!   `followedBy(group)`, `followedByAny(group)`; a group written `begin(group)` — the head
//!   of an enclosing group — is strict, which makes a group at the head of a group strict
//!   whatever the enclosing group says), in later iterations by the group's inner
//!   contiguity (`consecutive()` strict, default skip till next, `allowCombinations()`
//!   skip till any). Every other step keeps its own.
//! * **(G3) the head's own loop.** A quantified step at the head of a group takes the
//!   group's inner contiguity instead of its own (`getInnerIgnoreCondition`: the head of
//!   a group reads the group's quantifier): `followedBy(begin("b").times(2).consecutive())`
//!   skips till the next `b` between its two `b`s.
//! * Everything else — conditions, quantifiers and modifiers of the steps, the window, the
//!   skip strategy — is the chain's, by the rules of the module docs and module `skip`.
//!
//! The subset: a group whose count of iterations varies (a loop, `times(n, m)` with
//! `n < m`) only where nothing follows it — not a later element, nor a later iteration of
//! an enclosing group. Where something does, Flink's run waiting for the next iteration
//! can ignore events (as the group's inner contiguity allows towards its head) and still
//! proceed to what follows, so one assignment can be several runs (conformance case
//! `agree__q1z_top_begin_group_loop` reports a match twice) — a rule this reference does
//! not state. Also: no negation, no `greedy()` inside a group (its guard would sit on the head
//! of the next iteration, which these rules do not say), no optional group, every group
//! with at least one step that is not optional.

use std::fmt::Write as _;

use super::skip::outcomes_of_chains;
use super::{json_str, render_inner, render_quantifier, AfterMatch, Contiguity, Ev, Inner};
use super::{PatternSpec, Quantifier, Step};

/// How an element is joined to the one before it, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// The first element of a sequence: `begin(..)`.
    Begin,
    /// `next(..)`.
    Next,
    /// `followedBy(..)`.
    FollowedBy,
    /// `followedByAny(..)`.
    FollowedByAny,
}

/// A step or a group, with its link.
#[derive(Clone, Debug)]
pub struct Node {
    /// How it follows the element before it.
    pub link: Link,
    /// What it is.
    pub element: Element,
}

/// A step (its `contiguity` is not read: the node's link is) or a group.
#[derive(Clone, Debug)]
pub enum Element {
    /// A variable.
    Leaf(Step),
    /// A group of elements.
    Group(Group),
}

/// A group: its contents, quantifier and inner contiguity.
#[derive(Clone, Debug)]
pub struct Group {
    /// The contents; the first has [`Link::Begin`].
    pub nodes: Vec<Node>,
    /// The group's quantifier (`optional()` is outside the subset).
    pub quantifier: Quantifier,
    /// `consecutive()` / `allowCombinations()` on the group.
    pub inner: Inner,
}

/// A pattern with groups.
#[derive(Clone, Debug)]
pub struct TreeSpec {
    /// The top-level sequence; the first has [`Link::Begin`].
    pub nodes: Vec<Node>,
    /// `within(N ms)` (first-and-last).
    pub within_ms: Option<i64>,
    /// The skip strategy; `ToFirst` / `ToLast` index [`TreeSpec::variables`].
    pub skip: AfterMatch,
}

/// Most chains the reference reads a pattern as before it gives up.
const MAX_CHAINS: usize = 2000;

impl TreeSpec {
    /// The variables in pattern order.
    pub fn variables(&self) -> Vec<&str> {
        fn walk<'a>(nodes: &'a [Node], out: &mut Vec<&'a str>) {
            for n in nodes {
                match &n.element {
                    Element::Leaf(s) => out.push(&s.name),
                    Element::Group(g) => walk(&g.nodes, out),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.nodes, &mut out);
        out
    }

    /// The pattern as motif source text.
    pub fn to_motif(&self) -> String {
        let vars = self.variables();
        let strategy = self.skip.render(|v| vars[v]);
        let mut out = String::from("pattern p\n    time ts\n= ");
        render_nodes(&self.nodes, &strategy, &mut out);
        if let Some(w) = self.within_ms {
            let _ = write!(out, "\n  .within({w}ms)");
        }
        out.push_str(";\n");
        out
    }

    /// Whether the reference models this pattern (see the module docs), and Flink and
    /// motif accept it.
    pub fn validate(&self) -> Result<(), String> {
        fn check(nodes: &[Node], in_group: bool) -> Result<(), String> {
            if nodes.is_empty() {
                return Err("an empty sequence".into());
            }
            for (i, n) in nodes.iter().enumerate() {
                if (i == 0) != (n.link == Link::Begin) {
                    return Err("begin exactly at the head of a sequence".into());
                }
                match &n.element {
                    Element::Leaf(s) if in_group && s.greedy => {
                        return Err("greedy() inside a group".into())
                    }
                    Element::Leaf(_) => {}
                    Element::Group(g) => {
                        if !has_mandatory_step(&g.nodes) {
                            return Err("a group that can take no event".into());
                        }
                        if g.quantifier == Quantifier::One && g.inner != Inner::Relaxed {
                            return Err("an inner contiguity on a group without quantifier".into());
                        }
                        if matches!(g.quantifier, Quantifier::Times { from: 0, .. }) {
                            return Err("an optional group".into());
                        }
                        check(&g.nodes, true)?;
                    }
                }
            }
            Ok(())
        }
        check(&self.nodes, false)?;
        if !variable_groups_on_tail(&self.nodes, true) {
            return Err("a group with a varying count of iterations before another element".into());
        }
        let vars = self.variables();
        if (1..vars.len()).any(|i| vars[..i].contains(&vars[i])) {
            return Err("duplicate variable".into());
        }
        if let AfterMatch::ToFirst(v) | AfterMatch::ToLast(v) = self.skip {
            if v >= vars.len() {
                return Err("the skip strategy names no variable".into());
            }
        }
        let chains = self.chains(0).ok_or("too many chains")?;
        for c in &chains {
            c.validate()?;
        }
        if chains.iter().any(PatternSpec::can_match_empty) {
            return Err("the pattern can match nothing".into());
        }
        Ok(())
    }

    /// The chains (rule G1) for an input of `events` events, without the skip strategy
    /// (the tree's applies to them together); `None` beyond [`MAX_CHAINS`].
    pub fn chains(&self, events: usize) -> Option<Vec<PatternSpec>> {
        let sequences = expand(&self.nodes, None, events, "")?;
        Some(
            sequences
                .into_iter()
                .map(|steps| PatternSpec {
                    steps,
                    within_ms: self.within_ms,
                    within_previous: false,
                    gap_windows: Vec::new(),
                    negation: None,
                    skip: AfterMatch::NoSkip,
                })
                .collect(),
        )
    }

    /// The possible results over `events` (as [`super::skip::reference_outcomes`]);
    /// `None` when the reference gives up (too many chains or tie orders).
    pub fn outcomes(&self, events: &[Ev]) -> Option<Vec<Vec<Vec<usize>>>> {
        let chains = self.chains(events.len())?;
        outcomes_of_chains(&chains, &self.variables(), self.skip, events)
    }
}

/// Whether every group whose iteration count varies (a loop, or `times(n, m)` with
/// `n < m`) ends the pattern: it is the last element of a sequence that is the pattern or
/// the contents of a group with no quantifier that ends the pattern in turn. `tail` says
/// whether `nodes` end the pattern.
fn variable_groups_on_tail(nodes: &[Node], tail: bool) -> bool {
    nodes.iter().enumerate().all(|(i, n)| match &n.element {
        Element::Leaf(_) => true,
        Element::Group(g) => {
            let last = tail && i + 1 == nodes.len();
            let varies = match g.quantifier {
                Quantifier::One => false,
                Quantifier::Times { from, to } => from.max(1) != to,
                Quantifier::OneOrMore | Quantifier::TimesOrMore(_) => true,
            };
            (!varies || last)
                && variable_groups_on_tail(&g.nodes, last && g.quantifier == Quantifier::One)
        }
    })
}

/// Whether some step of `nodes`, in a group or not, is not optional.
pub fn has_mandatory_step(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| match &n.element {
        Element::Leaf(s) => !s.is_optional(),
        Element::Group(g) => has_mandatory_step(&g.nodes),
    })
}

/// The contiguity a link gives the step it joins (`begin(group)` nested: strict).
fn contiguity_of(link: Link) -> Contiguity {
    match link {
        Link::Begin | Link::Next => Contiguity::Next,
        Link::FollowedBy => Contiguity::FollowedBy,
        Link::FollowedByAny => Contiguity::FollowedByAny,
    }
}

/// The contiguity between two iterations of a group with this inner contiguity.
fn contiguity_between(inner: Inner) -> Contiguity {
    match inner {
        Inner::Consecutive => Contiguity::Next,
        Inner::Relaxed => Contiguity::FollowedBy,
        Inner::Combinations => Contiguity::FollowedByAny,
    }
}

/// Every step sequence `nodes` can stand for; `head` is, when they are a group's contents,
/// the contiguity of their first step (rule G2) and the group's inner contiguity, which
/// that step takes as its own (G3); `None` at the top. `copy` tells the copies of
/// a variable apart.
fn expand(
    nodes: &[Node],
    head: Option<(Contiguity, Inner)>,
    events: usize,
    copy: &str,
) -> Option<Vec<Vec<Step>>> {
    let mut sequences: Vec<Vec<Step>> = vec![Vec::new()];
    for (i, node) in nodes.iter().enumerate() {
        let parts: Vec<Vec<Step>> = match &node.element {
            Element::Leaf(s) => {
                let mut s = s.clone();
                s.contiguity = match (i, head) {
                    (0, Some((c, _))) => c,
                    (0, None) => Contiguity::Next,
                    _ => contiguity_of(node.link),
                };
                if let (0, Some((_, inner))) = (i, head) {
                    if s.quantifier != Quantifier::One {
                        s.inner = inner;
                    }
                }
                s.name = format!("{}{copy}", s.name);
                vec![vec![s]]
            }
            Element::Group(g) => {
                let (from, to) = match g.quantifier {
                    Quantifier::One => (1, 1),
                    Quantifier::Times { from, to } => (from.max(1) as usize, to as usize),
                    Quantifier::OneOrMore => (1, events + 1),
                    Quantifier::TimesOrMore(n) => (n as usize, (n as usize).max(events + 1)),
                };
                let mut all = Vec::new();
                for count in from..=to {
                    let mut runs: Vec<Vec<Step>> = vec![Vec::new()];
                    for k in 1..=count {
                        let head = if k == 1 {
                            contiguity_of(node.link)
                        } else {
                            contiguity_between(g.inner)
                        };
                        let head = (head, g.inner);
                        let tag = format!("{copy}~{i}.{k}");
                        let iteration = expand(&g.nodes, Some(head), events, &tag)?;
                        runs = product(&runs, &iteration)?;
                    }
                    all.extend(runs);
                    if all.len() > MAX_CHAINS {
                        return None;
                    }
                }
                all
            }
        };
        sequences = product(&sequences, &parts)?;
    }
    Some(sequences)
}

/// Every `a` followed by every `b`.
fn product(a: &[Vec<Step>], b: &[Vec<Step>]) -> Option<Vec<Vec<Step>>> {
    if a.len() * b.len() > MAX_CHAINS {
        return None;
    }
    Some(
        a.iter()
            .flat_map(|x| b.iter().map(move |y| x.iter().chain(y).cloned().collect()))
            .collect(),
    )
}

/// Writes a sequence of nodes; `strategy` goes into the first `begin`.
fn render_nodes(nodes: &[Node], strategy: &str, out: &mut String) {
    for (i, node) in nodes.iter().enumerate() {
        let call = match node.link {
            Link::Begin => "begin",
            Link::Next => "next",
            Link::FollowedBy => "followedBy",
            Link::FollowedByAny => "followedByAny",
        };
        if i > 0 {
            out.push('.');
        }
        let strategy = if i == 0 { strategy } else { "" };
        match &node.element {
            Element::Leaf(s) => {
                let _ = write!(out, "{call}({}{strategy})", json_str(&s.name));
                s.render_calls(out);
            }
            Element::Group(g) => {
                let _ = write!(out, "{call}(");
                render_nodes(&g.nodes, "", out);
                let _ = write!(out, "{strategy})");
                render_quantifier(g.quantifier, out);
                render_inner(g.inner, out);
            }
        }
    }
}
