//! The reference (`reference/`) against Flink's own answers: every conformance case whose
//! pattern lies in the reference's subset (`reference::from_motif`: without groups, or
//! with groups as `reference::groups` reads them) — Flink's test
//! scenarios (`tests/conformance/cases`) and the random cases Flink 2.3 answered
//! (`tests/conformance/random`) — gets exactly Flink's matches from the reference, or,
//! where waiting matches tie under a skip strategy, Flink's matches are one of the results
//! the reference allows.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::reference::from_motif::{spec_of, tree_of};
use crate::reference::groups::TreeSpec;
use crate::reference::skip::reference_outcomes;
use crate::reference::{AfterMatch, Ev};

/// A case's pattern as the reference reads it.
enum Reference {
    /// Without groups (negations allowed).
    Flat(crate::reference::PatternSpec),
    /// With groups.
    Groups(TreeSpec),
}

/// How the cases under one folder went.
#[derive(Debug, Default)]
struct Tally {
    /// Cases in the reference's subset, compared (not given up on).
    compared: usize,
    /// Of those, cases with a skip strategy.
    with_skip: usize,
    /// Of those, cases with groups.
    with_groups: usize,
    /// Cases where ties left the reference more than one result (Flink's among them).
    tied: usize,
    /// Cases whose ties allowed more orders than the reference follows.
    gave_up: usize,
    /// Disagreements: the case and what differed.
    failures: Vec<String>,
}

fn check_cases(root: &Path) -> Tally {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.motif").is_file())
        .collect();
    dirs.sort();
    let mut tally = Tally::default();
    for dir in dirs {
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
        let Ok(decls) = motif::syntax::load_str("case.motif", &read("case.motif")) else {
            continue;
        };
        let Some(decl) = decls.first() else { continue };
        let Ok(events) = read("events.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str::<Json>)
            .collect::<Result<Vec<Json>, _>>()
        else {
            continue;
        };
        let Some(evs) = events
            .iter()
            .map(|e| {
                Some(Ev {
                    id: e.get("id")?.as_str()?.to_string(),
                    name: e
                        .get("name")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    ts: e.get("ts")?.as_i64()?,
                })
            })
            .collect::<Option<Vec<Ev>>>()
        else {
            continue;
        };
        if evs.windows(2).any(|w| w[1].ts < w[0].ts) {
            continue;
        }
        let reference = match spec_of(decl, &events) {
            Some(spec) => Reference::Flat(spec),
            None => match tree_of(decl, &events) {
                Some(tree) => Reference::Groups(tree),
                None => continue,
            },
        };
        let index = |id: &str| evs.iter().position(|e| e.id == id);
        let Some(mut want) = read("expected.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Json>(l).ok())
            .filter(|m| m.as_ref().and_then(|m| m.get("timed_out")).is_none())
            .map(|m| {
                let mut ids = m?
                    .get("events")?
                    .as_array()?
                    .iter()
                    .map(|id| index(id.as_str()?))
                    .collect::<Option<Vec<usize>>>()?;
                ids.sort_unstable();
                Some(ids)
            })
            .collect::<Option<Vec<Vec<usize>>>>()
        else {
            continue;
        };
        want.sort();
        let skip = match &reference {
            Reference::Flat(spec) => spec.skip,
            Reference::Groups(tree) => tree.skip,
        };
        if skip != AfterMatch::NoSkip {
            tally.with_skip += 1;
        }
        if matches!(reference, Reference::Groups(_)) {
            tally.with_groups += 1;
        }
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let outcomes = match &reference {
            Reference::Flat(spec) => reference_outcomes(spec, &evs),
            Reference::Groups(tree) => tree.outcomes(&evs),
        };
        if outcomes.is_some() {
            tally.compared += 1;
        }
        match outcomes {
            None => tally.gave_up += 1,
            Some(outcomes) if outcomes.contains(&want) => {
                tally.tied += usize::from(outcomes.len() > 1)
            }
            Some(outcomes) => tally.failures.push(format!(
                "{name}: Flink {want:?}, the reference {:?}{}",
                outcomes[0],
                if outcomes.len() > 1 {
                    " (or another tie order)"
                } else {
                    ""
                }
            )),
        }
    }
    tally
}

#[test]
fn the_reference_gives_flinks_answers_on_the_conformance_cases_it_models() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    // Floors a little under today's counts (148 / 18 / 30 and 264 / 191 / 55).
    let tallies: Vec<_> = [("cases", (140, 15, 25)), ("random", (250, 180, 50))]
        .into_iter()
        .map(|(folder, least)| (folder, least, check_cases(&root.join(folder))))
        .collect();
    for (folder, _, tally) in &tallies {
        eprintln!("{folder}: {tally:?}");
    }
    for (folder, (compared, with_skip, with_groups), tally) in tallies {
        assert!(
            tally.failures.is_empty(),
            "{} of {} cases in {folder} disagree:\n{}",
            tally.failures.len(),
            tally.compared,
            tally.failures.join("\n")
        );
        // The subset must not shrink unnoticed, nor the reference give up on it.
        assert!(
            tally.gave_up <= 3,
            "{folder}: the reference gave up on {} cases",
            tally.gave_up
        );
        assert!(
            tally.compared >= compared,
            "{folder}: only {} cases in the subset",
            tally.compared
        );
        assert!(
            tally.with_skip >= with_skip,
            "{folder}: only {} with a skip strategy",
            tally.with_skip
        );
        assert!(
            tally.with_groups >= with_groups,
            "{folder}: only {} with groups",
            tally.with_groups
        );
    }
}
