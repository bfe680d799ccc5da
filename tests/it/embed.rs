//! The typed embedding API: events in as `serde_json::Value` or any `Serialize` type,
//! matches read through `Engine::view` (pattern name, typed key, events by variable name,
//! typed fields), windows and lateness as `Duration`, and a snapshot through checkpoint
//! bytes into a fresh engine.

use std::collections::HashMap;
use std::time::Duration;

use motif::checkpoint::format;
use motif::gen::{generate, GenOptions};
use motif::key::Key;
use motif::output::write_match;
use motif::pattern::{Pattern, PatternDecl, SkipStrategy};
use motif::runtime::{Engine, EngineOptions, EngineState, Output, PushError};
use motif::syntax::parse_expr;
use motif::Value;
use serde::{Deserialize, Serialize};

fn load(source: &str) -> Vec<PatternDecl> {
    motif::syntax::load_str("<test>", source).expect("test pattern loads")
}

fn engine(source: &str, options: EngineOptions) -> Engine {
    Engine::new(&load(source), options).expect("test pattern compiles")
}

/// Every output as the JSON line the command line prints, or a tag for the rest.
fn lines(engine: &Engine, out: &[Output]) -> Vec<String> {
    out.iter()
        .map(|o| match o {
            Output::Match { pattern, key, m } => {
                let mut s = String::new();
                write_match(&mut s, engine.nfa(*pattern), key.as_deref(), m);
                s
            }
            Output::Late { raw, .. } => format!("late {raw}"),
            Output::Reject { reason, .. } => format!("reject {reason}"),
            Output::Watermark { pattern, watermark } => format!("watermark {pattern} {watermark}"),
        })
        .collect()
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Reading {
    sensor: u32,
    ts: i64,
    temp: f64,
}

const RISE: &str = r#"
pattern rise key sensor time ts
= begin("low").where(temp < 20).oneOrMore().consecutive()
  .next("high").where(temp > 30);
"#;

#[test]
fn a_serialize_value_is_fed_as_its_json_text() {
    let readings = [(1, 15.0), (2, 18.5), (3, 35.0), (4, 10.0), (5, 31.0)];
    let mut typed = engine(RISE, EngineOptions::default());
    let mut as_value = engine(RISE, EngineOptions::default());
    let mut as_text = engine(RISE, EngineOptions::default());
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (ts, temp) in readings {
        let r = Reading {
            sensor: 9,
            ts,
            temp,
        };
        typed.push(&r, &mut a).unwrap();
        as_value.push_value(&serde_json::to_value(&r).unwrap(), &mut b);
        as_text.push_json(&serde_json::to_string(&r).unwrap(), &mut c);
    }
    for (e, out) in [
        (&mut typed, &mut a),
        (&mut as_value, &mut b),
        (&mut as_text, &mut c),
    ] {
        e.finish(out);
    }
    assert_eq!(lines(&typed, &a), lines(&as_text, &c));
    // A `serde_json::Value` writes its object's fields in its map's order (sorted, without
    // serde_json's `preserve_order`): the same matches, the events' text in another order.
    let parsed = |ls: Vec<String>| -> Vec<serde_json::Value> {
        ls.iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert_eq!(parsed(lines(&as_value, &b)), parsed(lines(&as_text, &c)));
    assert_eq!(typed.stats(), as_text.stats());
    assert_eq!(typed.matches(&a).count(), 3);
    // The events echo the serialised text, and read back as the type they came from.
    let m = typed.matches(&a).next().unwrap();
    let low: Vec<Reading> = m
        .events("low")
        .iter()
        .map(|e| e.deserialize().unwrap())
        .collect();
    assert_eq!(
        low,
        [
            Reading {
                sensor: 9,
                ts: 1,
                temp: 15.0
            },
            Reading {
                sensor: 9,
                ts: 2,
                temp: 18.5
            }
        ]
    );
}

#[test]
fn a_value_that_is_not_an_object_is_rejected_without_panic() {
    #[derive(Serialize)]
    struct Unit;
    #[derive(Serialize)]
    enum Kind {
        Plain,
        Tuple(i32, i32),
    }
    let mut e = engine(RISE, EngineOptions::default());
    let mut out = Vec::new();
    e.push(&42, &mut out).unwrap();
    e.push(&"text", &mut out).unwrap();
    e.push(&vec![1, 2, 3], &mut out).unwrap();
    e.push(&(), &mut out).unwrap();
    e.push(&Unit, &mut out).unwrap();
    e.push(&Kind::Plain, &mut out).unwrap();
    e.push(&Option::<Reading>::None, &mut out).unwrap();
    e.push_value(
        &serde_json::json!([{"sensor": 1, "ts": 1, "temp": 1}]),
        &mut out,
    );
    e.push_value(&serde_json::Value::Null, &mut out);
    assert_eq!(out.len(), 9);
    assert!(out.iter().all(|o| matches!(o, Output::Reject { .. })));
    assert!(out.iter().all(|o| e.view(o).is_none()));
    assert_eq!(e.stats().records, 9);
    assert_eq!(e.stats().rejected, 9);

    // An externally tagged enum variant with data is an object, but not one with a time.
    out.clear();
    e.push(&Kind::Tuple(1, 2), &mut out).unwrap();
    assert!(matches!(
        out[..],
        [Output::Reject {
            pattern: Some(0),
            ..
        }]
    ));
}

#[test]
fn a_value_that_does_not_serialise_is_an_error_and_feeds_nothing() {
    struct Broken;
    impl Serialize for Broken {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no JSON for this"))
        }
    }
    let mut e = engine(RISE, EngineOptions::default());
    let mut out = Vec::new();
    let err = e.push(&Broken, &mut out).unwrap_err();
    assert!(matches!(err, PushError::Serialise(_)));
    assert!(err.to_string().contains("no JSON for this"), "{err}");
    // Map keys JSON cannot write.
    let tuple_keys: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    assert!(e.push(&tuple_keys, &mut out).is_err());
    assert!(out.is_empty());
    assert_eq!(e.stats(), Default::default());
}

#[test]
fn a_numeric_key_comes_back_as_an_integer() {
    let mut e = engine(RISE, EngineOptions::default());
    let mut out = Vec::new();
    for (ts, temp) in [(1, 10.0), (2, 40.0)] {
        e.push(
            &Reading {
                sensor: 17,
                ts,
                temp,
            },
            &mut out,
        )
        .unwrap();
    }
    let m = e.view(&out[0]).expect("a match");
    assert_eq!(m.pattern(), "rise");
    assert_eq!(m.key_json(), Some("17"));
    let key = m.key().unwrap();
    assert!(matches!(key.fields(), [Value::Int(17)]), "{key:?}");
    assert_eq!(key, Key::new(vec![Value::Int(17)]));
    assert_ne!(key, Key::new(vec![Value::Float(17.0)]));
    assert_ne!(key, Key::new(vec![Value::from("17")]));
    assert_eq!(key.to_json(), "17");
}

#[test]
fn a_string_key_and_a_float_key_keep_their_types() {
    let src = r#"pattern p key k = begin("a").where(x == 1).next("b").where(x == 2);"#;
    for (k, want) in [
        (serde_json::json!("17"), Value::from("17")),
        (serde_json::json!(2.5), Value::Float(2.5)),
        (serde_json::json!(true), Value::Bool(true)),
    ] {
        let mut e = engine(src, EngineOptions::default());
        let mut out = Vec::new();
        e.push_value(&serde_json::json!({ "k": k, "x": 1 }), &mut out);
        e.push_value(&serde_json::json!({ "k": k, "x": 2 }), &mut out);
        let key = e.view(&out[0]).unwrap().key().unwrap();
        assert_eq!(key, Key::new(vec![want]), "key {k}");
        assert_eq!(key.to_json(), k.to_string());
    }
    // A null key is no key: the records are rejected (as Flink's key selector fails on null).
    let mut e = engine(src, EngineOptions::default());
    let mut out = Vec::new();
    e.push_value(&serde_json::json!({ "k": null, "x": 1 }), &mut out);
    e.push_value(&serde_json::json!({ "x": 2 }), &mut out);
    assert!(
        out.iter().all(|o| matches!(o, Output::Reject { .. })) && out.len() == 2,
        "{out:?}"
    );
}

#[test]
fn a_compound_key_is_several_typed_values() {
    let src = r#"
pattern p key region, site.id time ts
= begin("a").where(x == 1).followedBy("b").where(x == 2);
"#;
    let mut e = engine(src, EngineOptions::default());
    let mut out = Vec::new();
    for (ts, site, x) in [(1, 7, 1), (2, 8, 2), (3, 7, 2)] {
        e.push_value(
            &serde_json::json!({ "region": "eu", "site": { "id": site }, "ts": ts, "x": x }),
            &mut out,
        );
    }
    e.finish(&mut out);
    let matches: Vec<_> = e.matches(&out).collect();
    assert_eq!(matches.len(), 1);
    let key = matches[0].key().unwrap();
    assert!(
        matches!(key.fields(), [Value::Str(r), Value::Int(7)] if &**r == "eu"),
        "{key:?}"
    );
    assert_eq!(key.to_json(), r#"["eu",7]"#);
    assert_eq!(key.to_string(), matches[0].key_json().unwrap());
    assert_eq!((matches[0].start(), matches[0].end()), (1, 3));
}

#[test]
fn an_unkeyed_pattern_has_no_key() {
    let mut e = engine(
        r#"pattern p = begin("a").where(x == 1);"#,
        EngineOptions::default(),
    );
    let mut out = Vec::new();
    e.push_value(&serde_json::json!({ "x": 1 }), &mut out);
    let m = e.view(&out[0]).unwrap();
    assert_eq!(m.key(), None);
    assert_eq!(m.key_json(), None);
}

#[test]
fn events_by_variable_name_in_pattern_order() {
    // A group repeated twice: the match takes a, b, a, b, then c; an optional d takes none.
    let src = r#"
pattern g time ts
= begin("start").where(x == 0)
  .followedBy(begin("a").where(x == 1).next("b").where(x == 2)).times(2)
  .followedBy("d").where(x == 9).optional()
  .followedBy("c").where(x == 3);
"#;
    let mut e = engine(src, EngineOptions::default());
    let mut out = Vec::new();
    for (ts, x) in [(1, 0), (2, 1), (3, 2), (4, 1), (5, 2), (6, 3)] {
        e.push_value(&serde_json::json!({ "ts": ts, "x": x }), &mut out);
    }
    e.finish(&mut out);
    let matches: Vec<_> = e.matches(&out).collect();
    assert_eq!(matches.len(), 1, "{:?}", lines(&e, &out));
    let m = &matches[0];
    let times = |var: &str| -> Vec<i64> { m.events(var).iter().map(|e| e.time).collect() };
    assert_eq!(times("start"), [1]);
    assert_eq!(times("a"), [2, 4]);
    assert_eq!(times("b"), [3, 5]);
    assert_eq!(times("c"), [6]);
    assert!(
        m.events("d").is_empty(),
        "an optional variable that took nothing"
    );
    assert!(m.events("no such variable").is_empty());
    // Variables that took events, in pattern order, each with its events in order.
    let vars: Vec<(&str, Vec<i64>)> = m
        .variables()
        .map(|(name, events)| (name, events.iter().map(|e| e.time).collect()))
        .collect();
    assert_eq!(
        vars,
        [
            ("start", vec![1]),
            ("a", vec![2, 4]),
            ("b", vec![3, 5]),
            ("c", vec![6])
        ]
    );
    // In the order taken, with the variable's name.
    let taken: Vec<(&str, i64)> = m.events_in_order().map(|(v, e)| (v, e.time)).collect();
    assert_eq!(
        taken,
        [
            ("start", 1),
            ("a", 2),
            ("b", 3),
            ("a", 4),
            ("b", 5),
            ("c", 6)
        ]
    );
    assert!(matches!(m.events("b")[1].field("x"), Value::Int(2)));
    assert!(matches!(m.events("b")[1].field("ts"), Value::Int(5)));
    // The view shows as the line the command line prints.
    assert_eq!(format!("{m}\n"), lines(&e, &out)[0]);
}

#[test]
fn fields_by_dotted_path() {
    let src = r#"pattern p = begin("a").where(kind == "x");"#;
    let mut e = engine(src, EngineOptions::default());
    let mut out = Vec::new();
    e.push_value(
        &serde_json::json!({ "kind": "x", "user": { "id": 5, "tags": ["t"], "name": "ann" }, "n": 1.5 }),
        &mut out,
    );
    let m = e.view(&out[0]).unwrap();
    let ev = m.events("a")[0];
    assert!(matches!(ev.field("user.id"), Value::Int(5)));
    assert_eq!(ev.field("user.name").as_str(), Some("ann"));
    assert!(matches!(ev.field("n"), Value::Float(x) if x == 1.5));
    assert!(ev.field("user.tags").is_null(), "arrays are not scalars");
    assert!(ev.field("user.missing").is_null());
    assert!(ev.field("kind.deeper").is_null());
    #[derive(Deserialize)]
    struct User<'a> {
        id: i64,
        name: &'a str,
    }
    #[derive(Deserialize)]
    struct Ev<'a> {
        #[serde(borrow)]
        user: User<'a>,
    }
    let typed: Ev = ev.deserialize().unwrap();
    assert_eq!((typed.user.id, typed.user.name), (5, "ann"));
}

#[test]
fn timed_out_partial_matches_and_other_outputs() {
    let src = r#"
pattern p key k time ts
= begin("a").where(x == 1).followedBy("b").where(x == 2).within(10ms);
"#;
    let mut e = engine(
        src,
        EngineOptions {
            timeouts: true,
            ..EngineOptions::default()
        },
    );
    let mut out = Vec::new();
    e.push_value(&serde_json::json!({ "k": 1, "ts": 100, "x": 1 }), &mut out);
    e.push_value(&serde_json::json!({ "k": 1, "ts": 200, "x": 0 }), &mut out);
    e.push_value(&serde_json::json!({ "k": 1, "ts": 50, "x": 0 }), &mut out);
    e.push_json("not json", &mut out);
    e.finish(&mut out);
    let timeouts: Vec<_> = e.matches(&out).collect();
    assert_eq!(timeouts.len(), 1);
    let t = &timeouts[0];
    assert!(t.is_timed_out());
    assert_eq!(t.timed_out_at(), Some(110));
    assert_eq!(t.events("a").len(), 1);
    assert!(t.events("b").is_empty());
    assert!(out.iter().any(|o| matches!(o, Output::Late { .. })));
    for o in &out {
        if !matches!(o, Output::Match { .. }) {
            assert!(e.view(o).is_none());
        }
    }
    // A match of a pattern this engine does not have.
    let foreign = Output::Match {
        pattern: 5,
        key: None,
        m: t.get().clone(),
    };
    assert!(e.view(&foreign).is_none());
}

/// The same chain twice: windows and lateness as `Duration`, and in milliseconds.
fn windowed(duration: bool) -> PatternDecl {
    let p = Pattern::begin_with("a", SkipStrategy::SkipToNext)
        .where_(parse_expr(r#"type == "A""#).unwrap())
        .followed_by("b")
        .where_(parse_expr(r#"type == "B""#).unwrap())
        .one_or_more();
    let p = if duration {
        p.within_previous(Duration::from_millis(30))
    } else {
        p.within_previous_ms(30)
    };
    let p = p
        .followed_by("c")
        .where_(parse_expr(r#"type == "C""#).unwrap());
    let p = if duration {
        p.within(Duration::from_millis(120))
    } else {
        p.within_ms(120)
    };
    let d = p.declare("w").key(&["key"]).time("ts");
    if duration {
        d.lateness(Duration::from_millis(20))
    } else {
        d.lateness_ms(20)
    }
}

#[test]
fn duration_windows_equal_the_millisecond_ones() {
    let a = windowed(true);
    let b = windowed(false);
    assert_eq!(a.lateness_ms, b.lateness_ms);
    for (x, y) in a.pattern.steps.iter().zip(&b.pattern.steps) {
        assert_eq!((x.within, x.within_previous), (y.within, y.within_previous));
    }
    let options = EngineOptions {
        timeouts: true,
        ..EngineOptions::default()
    };
    let mut ea = Engine::new(&[a], options).unwrap();
    let mut eb = Engine::new(&[b], options).unwrap();
    let (mut oa, mut ob) = (Vec::new(), Vec::new());
    generate(
        &GenOptions {
            events: 3_000,
            keys: 5,
            mean_gap_ms: 3,
            disorder_ms: 30,
            ..GenOptions::default()
        },
        |line| {
            ea.push_json(line, &mut oa);
            eb.push_json(line, &mut ob);
        },
    );
    ea.finish(&mut oa);
    eb.finish(&mut ob);
    assert!(ea.stats().matches > 0 && ea.stats().timeouts > 0 && ea.stats().late > 0);
    assert_eq!(lines(&ea, &oa), lines(&eb, &ob));
    assert_eq!(ea.stats(), eb.stats());
}

#[test]
fn durations_round_to_what_whole_milliseconds_can_tell_apart() {
    let w = |d: Duration| Pattern::begin("a").within(d).steps[0].within;
    assert_eq!(w(Duration::from_millis(0)), Some(0));
    assert_eq!(w(Duration::from_nanos(1)), Some(1));
    assert_eq!(w(Duration::from_micros(1_500)), Some(2));
    assert_eq!(w(Duration::from_secs(2)), Some(2_000));
    // Saturates at the longest duration validation allows (i64::MAX ms).
    assert_eq!(w(Duration::MAX), Some(i64::MAX as u64));
    let prev = Pattern::begin("a")
        .next("b")
        .within_previous(Duration::from_micros(999))
        .steps[1]
        .within_previous;
    assert_eq!(prev, Some(1));
    let late = |d: Duration| Pattern::begin("a").declare("p").lateness(d).lateness_ms;
    assert_eq!(late(Duration::from_micros(1_999)), 1);
    assert_eq!(late(Duration::MAX), i64::MAX as u64);

    // A 1.5 ms window keeps exactly the matches whose events are less than 1.5 ms apart:
    // 0 or 1 ms at whole milliseconds.
    let decl = Pattern::begin("a")
        .where_(parse_expr("x == 1").unwrap())
        .followed_by("b")
        .where_(parse_expr("x == 2").unwrap())
        .within(Duration::from_micros(1_500))
        .declare("p")
        .key(&["k"])
        .time("ts");
    let mut e = Engine::new(&[decl], EngineOptions::default()).unwrap();
    let mut out = Vec::new();
    for (k, gap) in [(0, 0), (1, 1), (2, 2)] {
        e.push_value(&serde_json::json!({ "k": k, "ts": 10, "x": 1 }), &mut out);
        e.push_value(
            &serde_json::json!({ "k": k, "ts": 10 + gap, "x": 2 }),
            &mut out,
        );
    }
    e.finish(&mut out);
    let mut keys: Vec<String> = e
        .matches(&out)
        .map(|m| m.key().unwrap().to_json())
        .collect();
    keys.sort();
    assert_eq!(keys, ["0", "1"]);

    // A window past every time is as good as none.
    let unbounded = Pattern::begin("a")
        .followed_by("b")
        .within(Duration::MAX)
        .declare("p");
    let mut e = Engine::new(&[unbounded], EngineOptions::default()).unwrap();
    let mut out = Vec::new();
    e.push_value(&serde_json::json!({ "x": 1 }), &mut out);
    e.push_value(&serde_json::json!({ "x": 2 }), &mut out);
    e.finish(&mut out);
    assert_eq!(e.matches(&out).count(), 1);
}

#[derive(Serialize)]
struct Tick<'a> {
    key: &'a str,
    ts: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    price: f64,
}

const ABC: &str = r#"
pattern abc key key time ts lateness 5ms
= begin("A", skipPastLastEvent()).where(type == "A")
  .followedBy("B").where(type == "B" and price > A.price).oneOrMore()
  .followedBy("C").where(type == "C")
  .within(60ms);
"#;

fn ticks() -> Vec<Tick<'static>> {
    let keys = ["k1", "k2", "k3"];
    let kinds = ["A", "B", "B", "C", "A", "B", "C"];
    (0..300i64)
        .map(|i| Tick {
            key: keys[(i % 3) as usize],
            // A little disorder, within the lateness.
            ts: i * 2 - (i % 2) * 3,
            kind: kinds[(i as usize / 3) % kinds.len()],
            price: (i % 11) as f64,
        })
        .collect()
}

/// Each match as its line, read through the typed view.
fn described(engine: &Engine, out: &[Output]) -> Vec<String> {
    engine.matches(out).map(|m| m.to_string()).collect()
}

#[test]
fn a_snapshot_through_checkpoint_bytes_resumes_as_an_uninterrupted_run() {
    let options = EngineOptions {
        timeouts: true,
        ..EngineOptions::default()
    };
    let ticks = ticks();
    let mut whole = engine(ABC, options);
    let mut out = Vec::new();
    for t in &ticks {
        whole.push(t, &mut out).unwrap();
    }
    whole.finish(&mut out);
    let want = described(&whole, &out);
    assert!(whole.stats().matches > 10, "{:?}", whole.stats());

    for cut in [1, 77, 150, 299] {
        let mut first = engine(ABC, options);
        let mut out = Vec::new();
        for t in &ticks[..cut] {
            first.push(t, &mut out).unwrap();
        }
        let mut got = described(&first, &out);
        let bytes = format::encode(&first.snapshot()).unwrap();
        drop(first);
        let state: EngineState = format::decode(&bytes).unwrap();
        // A fresh engine, with another shard count for good measure.
        let mut second = engine(
            ABC,
            EngineOptions {
                shards: 3,
                ..options
            },
        );
        let report = second.restore(state, false).unwrap();
        assert!(report.added.is_empty() && report.changed.is_empty());
        let mut out = Vec::new();
        for t in &ticks[cut..] {
            second.push(t, &mut out).unwrap();
        }
        second.finish(&mut out);
        got.extend(described(&second, &out));
        let (mut got_sorted, mut want_sorted) = (got.clone(), want.clone());
        got_sorted.sort();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "cut at {cut}");
        assert_eq!(second.stats(), whole.stats(), "cut at {cut}");
    }
}

/// Matched events carry their decoded fields when asked: those the conditions read and those
/// the declaration names for a sink, by schema slot, without parsing the text again.
#[test]
fn matched_events_carry_decoded_fields_when_asked() {
    let decls = motif::syntax::load_str(
        "<test>",
        r#"pattern hot key sensor time ts = begin("h").where(temp > 30).next("c").where(temp < 20);"#,
    )
    .unwrap();
    let decl = decls[0].clone().output_fields(&["site", "loc.room"]);
    let events = [
        r#"{"sensor":1,"ts":1,"temp":35,"site":"north","loc":{"room":7}}"#,
        r#"{"sensor":1,"ts":2,"temp":12.5,"site":"south","loc":{"room":"b"}}"#,
    ];
    let run = |match_fields: bool| {
        let options = EngineOptions {
            match_fields,
            ..EngineOptions::default()
        };
        let mut engine = Engine::new(std::slice::from_ref(&decl), options).unwrap();
        let mut out = Vec::new();
        for e in events {
            engine.push_json(e, &mut out);
        }
        engine.finish(&mut out);
        let slots: Vec<usize> = ["temp", "site", "loc.room"]
            .iter()
            .map(|p| engine.field_slot(p).expect("the engine decodes the field"))
            .collect();
        assert_eq!(engine.field_slot("nosuch"), None);
        let m = out
            .iter()
            .find_map(|o| match o {
                Output::Match { m, .. } => Some(m.clone()),
                _ => None,
            })
            .expect("one match");
        (slots, m)
    };
    let (slots, m) = run(true);
    let got: Vec<Vec<String>> = m
        .events
        .iter()
        .map(|e| slots.iter().map(|s| format!("{:?}", e.get(*s))).collect())
        .collect();
    assert_eq!(
        got,
        [
            ["Int(35)", "Str(\"north\")", "Int(7)"],
            ["Float(12.5)", "Str(\"south\")", "Str(\"b\")"]
        ]
    );
    // Off (the default): only time and text, and `get` reads null.
    let (slots, m) = run(false);
    assert!(m.events.iter().all(|e| e.fields.is_empty()));
    assert!(m.events[0].get(slots[1]).is_null());
}

/// With watermarks on, each move of a pattern's watermark is an output after the outputs it
/// caused; moves only go forward and the end of input moves them to +∞. Off, there are none.
#[test]
fn watermark_moves_are_outputs_when_asked() {
    let decls = motif::syntax::load_str(
        "<test>",
        r#"pattern ab key k time ts lateness 2ms = begin("a").where(x == 1).followedBy("b").where(x == 2).within(5ms);"#,
    )
    .unwrap();
    let events = [
        (1, 1),
        (3, 2),
        (2, 9),
        (10, 1),
        (11, 2),
        (30, 9),
        (4, 2), // late
    ];
    let run = |watermarks: bool| {
        let options = EngineOptions {
            watermarks,
            ..EngineOptions::default()
        };
        let mut engine = Engine::new(&decls, options).unwrap();
        let mut out = Vec::new();
        for (ts, x) in events {
            engine.push_json(&format!(r#"{{"k":"a","ts":{ts},"x":{x}}}"#), &mut out);
        }
        engine.finish(&mut out);
        out
    };
    let out = run(true);
    let moves: Vec<i64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Watermark {
                pattern: 0,
                watermark,
            } => Some(*watermark),
            _ => None,
        })
        .collect();
    // max time seen − lateness − 1: 1−3, 3−3, 10−3, 11−3, 30−3, then +∞.
    assert_eq!(moves, [-2, 0, 7, 8, 27, i64::MAX]);
    let mut watermark = i64::MIN;
    for o in &out {
        match o {
            Output::Watermark { watermark: w, .. } => watermark = *w,
            Output::Match { m, .. } => {
                let end = m.events.last().unwrap().time;
                assert!(
                    end > watermark,
                    "a match ending at {end} after watermark {watermark}"
                );
            }
            _ => {}
        }
    }
    let matches = out
        .iter()
        .filter(|o| matches!(o, Output::Match { .. }))
        .count();
    assert_eq!(matches, 2);
    assert!(out.iter().any(|o| matches!(o, Output::Late { .. })));
    // Off: the same outputs without the moves.
    let plain = run(false);
    let without: Vec<&Output> = out
        .iter()
        .filter(|o| !matches!(o, Output::Watermark { .. }))
        .collect();
    assert_eq!(plain.iter().collect::<Vec<_>>(), without);
}

/// A rejected record names its input, line and text; pushed without a position, its
/// number among the records given.
#[test]
fn rejects_name_their_record() {
    let decls =
        motif::syntax::load_str("<test>", r#"pattern p time ts = begin("a").where(x > 1);"#)
            .unwrap();
    let mut engine = Engine::new(&decls, EngineOptions::default()).unwrap();
    let mut out = Vec::new();
    engine.push_json(r#"{"ts":1,"x":2}"#, &mut out);
    engine.push_input(
        &motif::runtime::Input {
            json: r#"{"x":2}"#,
            origin: "events.jsonl",
            line: 41,
            ..Default::default()
        },
        &mut out,
    );
    engine.push_json("{oops", &mut out);
    let rejects: Vec<(Option<usize>, String, u64, String)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Reject {
                pattern, record, ..
            } => Some((
                *pattern,
                record.source.to_string(),
                record.line,
                record.text.to_string(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        rejects,
        [
            (
                Some(0),
                "events.jsonl".to_string(),
                41,
                r#"{"x":2}"#.to_string()
            ),
            (None, String::new(), 3, "{oops".to_string()),
        ]
    );
}

/// An embedder advances the watermark without an event: timeouts and trailing negations up
/// to it are decided now, later events at or before it are late, it never goes back, and a
/// snapshot keeps it.
#[test]
fn the_watermark_advances_without_an_event_when_asked() {
    let src = r#"pattern quiet key k time ts
        = begin("a").where(t == "A").notFollowedBy("b").where(t == "B").within(10s);"#;
    let mut e = engine(
        src,
        EngineOptions {
            watermarks: true,
            ..EngineOptions::default()
        },
    );
    let mut out = Vec::new();
    e.push_json(r#"{"k":1,"t":"A","ts":1000}"#, &mut out);
    e.push_json(r#"{"k":2,"t":"A","ts":30000}"#, &mut out);
    let decided = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::Match { .. }))
            .count()
    };
    // The first A's window ended at 11,000 when the second A moved the watermark to 29,999.
    assert_eq!(decided(&out), 1);
    out.clear();
    // Nothing after 30,000 comes: the second A's window (to 40,000) is decided at once.
    e.advance_watermark(45_000, &mut out);
    assert_eq!(decided(&out), 1, "{out:?}");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Watermark {
            watermark: 45_000,
            ..
        }
    )));
    // Back in time: no move, no output.
    out.clear();
    e.advance_watermark(40_000, &mut out);
    assert!(out.is_empty(), "{out:?}");
    // An event at or before the advanced watermark is late.
    e.push_json(r#"{"k":3,"t":"A","ts":44000}"#, &mut out);
    assert!(matches!(out.last(), Some(Output::Late { .. })), "{out:?}");
    // A snapshot keeps the watermark: the restored engine calls the same event late.
    let state = e.snapshot();
    let mut r = engine(src, EngineOptions::default());
    r.restore(state, false).unwrap();
    let mut out = Vec::new();
    r.push_json(r#"{"k":4,"t":"A","ts":44500}"#, &mut out);
    assert!(matches!(out.last(), Some(Output::Late { .. })), "{out:?}");
}
