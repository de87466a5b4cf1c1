//! The line checker's validating skip (`ndjson/json.rs`) against `serde_json`: on hand-made tricky
//! lines and on generated and mutated ones, both must accept and reject the same lines, and read the
//! same `resourceType`, `id` and `meta.lastUpdated`.
//!
//! The oracle: the line parses as a `serde_json::Value` (so: UTF-8, paired surrogates, f64 range,
//! nesting limit, no trailing bytes), is an object, and its head reads through `serde` derive into
//! optional strings (so: a head field of another type, or named twice, is an error; `null` is absent).

use std::borrow::Cow;

use oneup_bulk::ndjson::{LineError, RefSink, parse_head, parse_refs};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Head { resource_type: Option<String>, id: Option<String>, last_updated: Option<String> },
    NotAnObject,
    NotJson,
}

#[derive(Deserialize)]
struct OracleHead<'a> {
    #[serde(rename = "resourceType", borrow, default)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    meta: Option<OracleMeta>,
}

/// `meta` must be an object (serde derive would also take an array, positionally: not FHIR).
struct OracleMeta(Option<String>);

impl<'de> Deserialize<'de> for OracleMeta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OracleMeta;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<OracleMeta, A::Error> {
                let mut last: Option<Option<String>> = None;
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    if k == "lastUpdated" {
                        if last.is_some() {
                            return Err(serde::de::Error::duplicate_field("lastUpdated"));
                        }
                        last = Some(m.next_value()?);
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(OracleMeta(last.flatten()))
            }
        }
        d.deserialize_map(V)
    }
}

fn oracle(line: &[u8]) -> Verdict {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { return Verdict::NotJson };
    if !v.is_object() {
        return Verdict::NotAnObject;
    }
    match serde_json::from_slice::<OracleHead>(line) {
        Ok(h) => Verdict::Head {
            resource_type: h.resource_type.map(Cow::into_owned),
            id: h.id.map(Cow::into_owned),
            last_updated: h.meta.and_then(|m| m.0),
        },
        Err(_) => Verdict::NotJson,
    }
}

fn scanner(line: &[u8]) -> Verdict {
    let own = |c: Option<Cow<str>>| c.map(Cow::into_owned);
    let v = match parse_head(line) {
        Ok(h) => {
            Verdict::Head { resource_type: own(h.resource_type), id: own(h.id), last_updated: own(h.last_updated) }
        }
        Err(LineError::NotAnObject) => Verdict::NotAnObject,
        Err(LineError::NotJson(_)) => Verdict::NotJson,
        Err(e) => panic!("parse_head never says {e:?}"),
    };
    // Collecting references must not change the verdict.
    let mut sink = RefSink::default();
    let with_refs = match parse_refs(line, &mut sink) {
        Ok(_) => matches!(v, Verdict::Head { .. }),
        Err(LineError::NotAnObject) => v == Verdict::NotAnObject,
        Err(_) => v == Verdict::NotJson,
    };
    assert!(with_refs, "parse_refs disagrees with parse_head on {:?}", String::from_utf8_lossy(line));
    v
}

fn agree(line: &[u8]) {
    assert_eq!(scanner(line), oracle(line), "line {:?}", String::from_utf8_lossy(line));
}

const EOB: &str = r#"{"resourceType":"ExplanationOfBenefit","id":"eob-0-0","meta":{"lastUpdated":"2026-03-25T03:26:44Z"},"status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},"patient":{"reference":"Patient/pt-0"},"insurance":[{"focal":true,"coverage":{"reference":"Coverage/cov-0-0"}}],"item":[{"sequence":1,"net":{"value":106.82,"currency":"USD"},"adjudication":[{"amount":{"value":-0.0}},{"x":null,"y":false,"z":[]}]}],"total":[{"amount":{"value":2.2e2}}]}"#;

#[test]
fn hand_made_tricky_lines() {
    let mut cases: Vec<Vec<u8>> = [
        EOB,
        "{}",
        " {} ",
        "\t{\"resourceType\" : \"Patient\" }\r",
        "[]",
        "[1,2]",
        "\"x\"",
        "1",
        "null",
        "",
        "   ",
        "{",
        "}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "[1,]",
        "{,}",
        "{\"a\":1 \"b\":2}",
        "{\"a\" 1}",
        "{1:2}",
        "{}{}",
        "{} x",
        "{}}",
        // Numbers
        "{\"n\":-0}",
        "{\"n\":-}",
        "{\"n\":01}",
        "{\"n\":1.}",
        "{\"n\":.5}",
        "{\"n\":1e}",
        "{\"n\":1e+}",
        "{\"n\":1E-7}",
        "{\"n\":1e400}",
        "{\"n\":-1e400}",
        "{\"n\":1e-400}",
        "{\"n\":1.7976931348623157e308}",
        "{\"n\":1.7976931348623159e308}",
        "{\"n\":+1}",
        "{\"n\":0x10}",
        "{\"n\":1_000}",
        "{\"n\":NaN}",
        "{\"n\":Infinity}",
        "{\"n\":-01}",
        "{\"n\":00}",
        "{\"n\":1.5e308}",
        "{\"n\":123456789012345678901234567890}",
        // Literals
        "{\"t\":true,\"f\":false,\"n\":null}",
        "{\"t\":tru}",
        "{\"t\":True}",
        "{\"t\":nul}",
        "{\"t\":nulls}",
        "{\"t\":truee}",
        // Strings and escapes
        r#"{"s":"a\"b\\c\/d\b\f\n\r\t"}"#,
        r#"{"s":"\x"}"#,
        r#"{"s":"\u00e9"}"#,
        r#"{"s":"\u00E9\u00"}"#,
        r#"{"s":"\u00g9"}"#,
        r#"{"s":"\ud83d\ude00"}"#,
        r#"{"s":"\ud83d"}"#,
        r#"{"s":"\ud83dx"}"#,
        r#"{"s":"\ud83d\n"}"#,
        r#"{"s":"\ud83d\u0041"}"#,
        r#"{"s":"\ude00"}"#,
        r#"{"s":"\ude00\ud83d"}"#,
        r#"{"s":"\ud83d\ud83d"}"#,
        r#"{"s":"\"#,
        r#"{"s":"\u12"#,
        r#"{"resourceType":"Pati\u0065nt"}"#,
        r#"{"resourc\u0065Type":"Patient"}"#,
        r#"{"resourceType":"\ud83d\ude00"}"#,
        "{\"s\":\"é中😀\"}",
        "{\"s\":\"tab\tinside\"}",
        "{\"s\":\"nl\ninside\"}",
        "{\"s\":\"del\u{7f}inside\"}",
        "{\"s\":\"unterminated}",
        // Head fields
        r#"{"resourceType":"Patient","resourceType":"Coverage"}"#,
        r#"{"resourceType":null,"resourceType":"Coverage"}"#,
        r#"{"resourceType":5}"#,
        r#"{"resourceType":["Patient"]}"#,
        r#"{"resourceType":{"a":1}}"#,
        r#"{"resourceType":null}"#,
        r#"{"resourceType":true}"#,
        r#"{"id":7,"resourceType":"Patient"}"#,
        r#"{"id":null,"resourceType":"Patient"}"#,
        r#"{"id":"a","id":"b"}"#,
        r#"{"meta":{"lastUpdated":"2024"},"meta":{}}"#,
        r#"{"meta":{"lastUpdated":"2024","lastUpdated":"2025"}}"#,
        r#"{"meta":{"lastUpdated":2024}}"#,
        r#"{"meta":{"lastUpdated":null}}"#,
        r#"{"meta":null}"#,
        r#"{"meta":[]}"#,
        r#"{"meta":["2024"]}"#,
        r#"{"meta":"x"}"#,
        r#"{"meta":{"x":{"lastUpdated":"deep"},"lastUpdated":"top"}}"#,
        r#"{"x":{"meta":{"lastUpdated":"nested"}},"x":{"resourceType":"Nested","id":"n"}}"#,
        r#"{"contained":[{"resourceType":"Patient","id":"c"}],"resourceType":"Group"}"#,
        r#"[{"resourceType":"Patient"}]"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // Invalid UTF-8: inside a string, outside, cut short, overlong, a UTF-16 surrogate as UTF-8.
    for bad in [&b"\xff"[..], b"\xc3", b"\xc3\x28", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"] {
        cases.push([&b"{\"s\":\""[..], bad, b"\"}"].concat());
        cases.push([&b"{\"s\":1"[..], bad, b"}"].concat());
        cases.push([&b"{\"s\":\""[..], bad].concat());
        cases.push([&br#"{"resourceType":""#[..], bad, b"\"}"].concat());
    }
    // Nesting: the limit and one past it, in arrays, objects and a mix.
    for depth in [126, 127, 128, 129, 1000] {
        cases.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
        cases.push(format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
        cases.push(format!("{}{{}}{}", "{\"a\":".repeat(depth - 1), "}".repeat(depth - 1)).into_bytes());
        cases.push(format!("{{\"a\":{}{}}}", "[{\"b\":".repeat(depth / 2), "1}]".repeat(depth / 2)).into_bytes());
    }
    // Escapes, surrogate pairs, quotes and control characters at every offset of a 64-byte block.
    for shift in 0..140 {
        let pad = "x".repeat(shift);
        for tail in [r#"a\\\"b\ud83d\ude00c\\"#, r#"\"#, r#"\\"#, r#"\\\"#, r#"\ud83d"#, "\t", r#"\u00e9\n"#] {
            cases.push(format!(r#"{{"pad":"{pad}","s":"{tail}","resourceType":"P"}}"#).into_bytes());
            cases.push(format!(r#"{{"pad":"{pad}{tail}","id":"{pad}"}}"#).into_bytes());
        }
        cases.push(format!("{{\"pad\":\"{pad}\",\"n\":1\t,\"m\":[1 ,2\r\n]}}").into_bytes());
        cases.push(format!("{{\"pad\":\"{pad}\",\"n\":1\x0b}}").into_bytes());
        cases.push(format!("{{\"pad\":\"{pad}\" ,\"n\":tru}}").into_bytes());
    }
    // Long strings: whole blocks of text, with and without escapes, cut anywhere near the end.
    let long = format!(
        r#"{{"resourceType":"DocumentReference","description":"{}"}}"#,
        "lorem ipsum \\n dolor \\\" ".repeat(40)
    );
    for cut in [0, 1, 2, 3, 5, 9, 40] {
        cases.push(long.as_bytes()[..long.len() - cut].to_vec());
    }
    cases.push(long.replace("dolor", "dol\u{1}r").into_bytes());
    cases.push(long.replace("ipsum", "ips\\xm").into_bytes());
    // Every prefix of a realistic line: cut-short lines are rejected, as "unexpected end" mostly.
    for n in 0..EOB.len() {
        cases.push(EOB.as_bytes()[..n].to_vec());
    }
    for c in &cases {
        agree(c);
    }
}

#[test]
fn error_categories_read_as_before() {
    let msg = |l: &str| match parse_head(l.as_bytes()) {
        Err(LineError::NotJson(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(msg(r#"{"resourceType":"Patient""#), "unexpected end at column 26");
    assert_eq!(msg(r#"{"resourceType":"Patient"]"#), "syntax error at column 26");
    assert_eq!(msg(r#"{"resourceType":5}"#), "unexpected value at column 17");
    assert_eq!(msg(r#"{"id":"a","id":"b"}"#), "unexpected value at column 11");
}

/// Any JSON value, as text with random whitespace, sometimes with the head fields in it.
fn json_text() -> impl Strategy<Value = String> {
    let ws = prop::sample::select(vec!["", "", "", " ", "\t", "\r\n", "  "]);
    let string = prop_oneof![
        "[a-zA-Z0-9 /:.-]{0,20}",
        Just("resourceType".to_string()),
        Just("id".to_string()),
        Just("meta".to_string()),
        Just("lastUpdated".to_string()),
        Just("reference".to_string()),
        "(\\PC|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4}|\\\\u[dD][89abAB][0-9a-f]{2}|\\\\)*",
    ]
    .prop_map(|s| format!("\"{s}\""));
    let number = prop_oneof![
        "-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?",
        "-?[0-9]{1,4}(\\.)?[0-9]{0,2}([eE][+-]?)?[0-9]{0,3}",
    ];
    let leaf = prop_oneof![
        string.clone(),
        number,
        prop::sample::select(vec!["true", "false", "null", "nul", "tru"]).prop_map(str::to_string),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        let ws = ws.clone();
        prop_oneof![
            (prop::collection::vec((ws.clone(), inner.clone()), 0..6), ws.clone())
                .prop_map(|(items, w)| format!("[{w}{}]", items.iter().map(|(w, v)| format!("{w}{v}")).join_with(","))),
            (prop::collection::vec((string.clone(), ws.clone(), inner), 0..6), ws).prop_map(|(items, w)| format!(
                "{{{w}{}}}",
                items.iter().map(|(k, w, v)| format!("{k}{w}:{w}{v}")).join_with(",")
            )),
        ]
    })
}

trait JoinWith {
    fn join_with(self, sep: &str) -> String;
}

impl<I: Iterator<Item = String>> JoinWith for I {
    fn join_with(self, sep: &str) -> String {
        self.collect::<Vec<_>>().join(sep)
    }
}

fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(at, byte, op) in edits {
        let i = at % (b.len() + 1);
        match op % 3 {
            0 if i < b.len() => {
                b.remove(i);
            }
            1 if i < b.len() => b[i] = byte,
            _ => b.insert(i, byte),
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn generated_json_agrees(text in json_text()) {
        agree(text.as_bytes());
    }

    #[test]
    fn generated_objects_with_head_fields_agree(
        body in json_text(),
        rt in prop::sample::select(vec!["\"Patient\"", "null", "1", "\"Pat\\u0069ent\"", "[]"]),
        meta in prop::sample::select(vec!["{\"lastUpdated\":\"2024-01-01T00:00:00Z\"}", "{}", "null", "{\"lastUpdated\":1}"]),
        order in 0u8..3,
    ) {
        let line = match order {
            0 => format!("{{\"resourceType\":{rt},\"meta\":{meta},\"x\":{body}}}"),
            1 => format!("{{\"x\":{body},\"meta\":{meta},\"resourceType\":{rt}}}"),
            _ => format!("{{\"meta\":{meta},\"x\":{body},\"resourceType\":{rt},\"id\":{rt}}}"),
        };
        agree(line.as_bytes());
    }

    #[test]
    fn mutated_resources_agree(edits in prop::collection::vec((0usize..2000, any::<u8>(), any::<u8>()), 1..5)) {
        agree(&mutate(EOB.as_bytes(), &edits));
    }

    #[test]
    fn mutated_generated_json_agrees(
        text in json_text(),
        edits in prop::collection::vec((0usize..500, prop::sample::select(b"{}[]:,\"\\ 0-e.tnu\xc3\xa9\xff".to_vec()), any::<u8>()), 1..4),
    ) {
        agree(&mutate(text.as_bytes(), &edits));
    }
}
