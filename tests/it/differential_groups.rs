//! Differential test with groups: motif against the reference (`reference::groups`) on
//! random patterns whose steps sit in groups nested up to three deep (one or two elements
//! a sequence) — each group with or
//! without a quantifier (`times(n)`, and, where nothing follows the group, `times(n, m)`,
//! `oneOrMore()`, `timesOrMore(n)`), with `consecutive()` / `allowCombinations()`, joined
//! by `begin`, `next`, `followedBy` or `followedByAny` — with a `within` in some and an
//! after-match skip strategy in half of them, over 2 to 8 events (a third with equal
//! timestamps). motif must give one of the results the reference allows.

use proptest::prelude::*;

use crate::differential::{compare, drop_impossible_modifiers, events_of, raw_step};
use crate::reference::groups::{has_mandatory_step, Element, Group, Link, Node, TreeSpec};
use crate::reference::{AfterMatch, Cond, Ev, Inner, Quantifier, Step};

/// A raw tree: steps and groups, before names and repairs.
#[derive(Clone, Debug)]
enum Raw {
    Leaf(Step),
    Group(Vec<(Link, Raw)>, Quantifier, Inner),
}

fn link() -> impl Strategy<Value = Link> {
    prop_oneof![
        Just(Link::Next),
        Just(Link::FollowedBy),
        Just(Link::FollowedByAny)
    ]
}

fn group_quantifier() -> impl Strategy<Value = Quantifier> {
    prop_oneof![
        3 => Just(Quantifier::One),
        3 => (1u32..=2).prop_map(|n| Quantifier::Times { from: n, to: n }),
        1 => (1u32..=2).prop_map(|n| Quantifier::Times { from: n, to: n + 1 }),
        2 => Just(Quantifier::OneOrMore),
        1 => (1u32..=2).prop_map(Quantifier::TimesOrMore),
    ]
}

fn group_inner() -> impl Strategy<Value = Inner> {
    prop_oneof![
        2 => Just(Inner::Relaxed),
        1 => Just(Inner::Consecutive),
        1 => Just(Inner::Combinations),
    ]
}

/// A condition on `name`, broader than the flat test's (patterns with groups have more
/// steps, so that narrow conditions would leave most cases without a match).
fn broad_cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        2 => Just(Cond::Any),
        2 => prop::sample::subsequence(vec!["a", "b", "c"], 2).prop_map(|v| Cond::names(&v)),
        3 => prop::sample::select(vec!["a", "b", "c"]).prop_map(Cond::name),
    ]
}

/// Up to three levels of groups, 1 or 2 elements each.
fn raw_tree() -> impl Strategy<Value = Raw> {
    let leaf = (raw_step(), broad_cond()).prop_map(|(s, cond)| Raw::Leaf(Step { cond, ..s }));
    leaf.prop_recursive(3, 8, 2, |element| {
        (
            prop::collection::vec((link(), element), 1..=2),
            group_quantifier(),
            group_inner(),
        )
            .prop_map(|(nodes, q, inner)| Raw::Group(nodes, q, inner))
    })
}

/// Turns raw elements into nodes a pattern can have: names `v1`, `v2`, ...; the first of
/// a sequence `begin`; no `greedy()` inside a group; the modifiers a step cannot have
/// dropped (`drop_impossible_modifiers`); a group with varying
/// iterations made a group without quantifier unless nothing follows it (the reference's
/// subset); a group with no mandatory step given one. `prev_greedy`: the element before
/// `raw` is a greedy step (so its first step may not be optional).
fn build(
    raw: &[(Link, Raw)],
    in_group: bool,
    tail: bool,
    prev_greedy: bool,
    names: &mut usize,
) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut prev_greedy = prev_greedy;
    for (i, (l, r)) in raw.iter().enumerate() {
        let link = if i == 0 { Link::Begin } else { *l };
        let last = tail && i + 1 == raw.len();
        let element = match r {
            Raw::Leaf(s) => {
                let mut s = s.clone();
                *names += 1;
                s.name = format!("v{names}");
                if in_group {
                    s.greedy = false;
                }
                drop_impossible_modifiers(&mut s, prev_greedy);
                prev_greedy = s.greedy;
                Element::Leaf(s)
            }
            Raw::Group(inner_raw, q, inner) => {
                let head_after_greedy = std::mem::replace(&mut prev_greedy, false);
                let varies = match q {
                    Quantifier::One => false,
                    Quantifier::Times { from, to } => from != to,
                    _ => true,
                };
                let quantifier = if varies && !last {
                    Quantifier::Times { from: 1, to: 1 }
                } else {
                    *q
                };
                let quantifier = match quantifier {
                    Quantifier::Times { from: 1, to: 1 } => Quantifier::One,
                    q => q,
                };
                let inner = if quantifier == Quantifier::One {
                    Inner::Relaxed
                } else {
                    *inner
                };
                let contents_tail = last && quantifier == Quantifier::One;
                let mut nodes = build(inner_raw, true, contents_tail, head_after_greedy, names);
                make_mandatory(&mut nodes);
                Element::Group(Group {
                    nodes,
                    quantifier,
                    inner,
                })
            }
        };
        nodes.push(Node { link, element });
    }
    nodes
}

/// Makes the first step of `nodes` (or of its first group) mandatory when none is.
fn make_mandatory(nodes: &mut [Node]) {
    if has_mandatory_step(nodes) {
        return;
    }
    match &mut nodes[0].element {
        Element::Leaf(s) => {
            s.optional = false;
            if let Quantifier::Times { from: 0, to } = s.quantifier {
                s.quantifier = Quantifier::Times { from: 1, to };
            }
        }
        Element::Group(g) => make_mandatory(&mut g.nodes),
    }
}

fn tree() -> impl Strategy<Value = TreeSpec> {
    (
        prop::collection::vec((link(), raw_tree()), 1..=2),
        prop::option::weighted(0.3, 1i64..=6),
        prop::option::weighted(0.5, (0u8..4, 0usize..8)),
    )
        .prop_map(|(raw, within_ms, skip)| {
            let mut names = 0;
            let mut nodes = build(&raw, false, true, false, &mut names);
            make_mandatory(&mut nodes);
            let skip = match skip {
                None => AfterMatch::NoSkip,
                Some((0, _)) => AfterMatch::ToNext,
                Some((1, _)) => AfterMatch::PastLastEvent,
                Some((2, v)) => AfterMatch::ToFirst(v % names),
                Some((_, v)) => AfterMatch::ToLast(v % names),
            };
            TreeSpec {
                nodes,
                within_ms,
                skip,
            }
        })
}

/// 2 to 8 events (a loop over groups is read as one chain per count of iterations, so
/// not more).
fn few_events() -> impl Strategy<Value = Vec<Ev>> {
    events_of(2..=8)
}

proptest! {
    /// motif reports one of the results the reference allows for patterns with groups.
    #[test]
    fn motif_matches_the_reference_with_groups(tree in tree(), events in few_events()) {
        let source = tree.to_motif();
        // The generator makes only patterns in the reference's subset that Flink accepts.
        if let Err(e) = tree.validate() {
            prop_assert!(false, "generator produced an invalid pattern ({}):\n{}", e, source);
        }
        let outcomes = tree.outcomes(&events);
        prop_assume!(outcomes.is_some(), "too many chains or tie orders");
        if let Err(report) = compare(&source, &events, &outcomes.unwrap_or_default()) {
            prop_assert!(false, "{}", report);
        }
    }
}

/// A group at the head of a group is strict (rule G2): `followedBy(begin(begin("b")))`
/// over a, x, b finds nothing; `followedBy(begin("b"))` finds {a, b}. Flink's answers
/// (`agree__nestedGroupHeadIsStrict`).
#[test]
fn smoke_nested_group_head() {
    use crate::reference::Contiguity;
    let leaf = |name: &str, cond: &str| Step::new(name, Contiguity::Next, Cond::name(cond));
    let group = |nodes: Vec<Node>| {
        Element::Group(Group {
            nodes,
            quantifier: Quantifier::One,
            inner: Inner::Relaxed,
        })
    };
    let b = Node {
        link: Link::Begin,
        element: Element::Leaf(leaf("b", "b")),
    };
    let a = Node {
        link: Link::Begin,
        element: Element::Leaf(leaf("a", "a")),
    };
    let nested = TreeSpec {
        nodes: vec![
            a.clone(),
            Node {
                link: Link::FollowedBy,
                element: group(vec![Node {
                    link: Link::Begin,
                    element: group(vec![b.clone()]),
                }]),
            },
        ],
        within_ms: None,
        skip: AfterMatch::NoSkip,
    };
    let single = TreeSpec {
        nodes: vec![
            a,
            Node {
                link: Link::FollowedBy,
                element: group(vec![b]),
            },
        ],
        ..nested.clone()
    };
    let events = crate::reference::events_from_names(&["a", "x", "b"]);
    for (tree, want) in [(&nested, vec![]), (&single, vec![vec![0, 2]])] {
        tree.validate().expect("in the subset");
        assert_eq!(
            tree.outcomes(&events),
            Some(vec![want.clone()]),
            "{}",
            tree.to_motif()
        );
        compare(&tree.to_motif(), &events, &[want]).unwrap_or_else(|r| panic!("{r}"));
    }
}
