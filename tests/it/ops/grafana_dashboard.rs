//! The Grafana dashboard (`grafana/dashboards/hearken.json`) is a valid
//! dashboard model that file provisioning can load as it is, and every metric
//! its PromQL names is exported by a running server, with the labels the
//! queries group and filter by. A real call goes through the server first so
//! that the labelled families (which appear only once a label value is used)
//! are present. Renaming a metric or a label fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::{Outgoing, WhipClient, speech};
use hearken_fake_deepgram::{Behavior, FakeConfig, FakeDeepgram};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../../../grafana/dashboards/hearken.json");
const DATASOURCES: &str = include_str!("../../../grafana/provisioning/datasources/prometheus.yaml");
const PROVIDERS: &str = include_str!("../../../grafana/provisioning/dashboards/hearken.yaml");

/// Labels Prometheus attaches to every scraped series (not in `/metrics`).
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Variables Grafana defines itself.
const BUILTIN_VARIABLES: [&str; 4] = ["__rate_interval", "__interval", "__range", "__range_s"];

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("hearken.json is JSON")
}

/// Every panel, including those nested in collapsed rows.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels is an array") {
        out.push(panel);
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            out.extend(nested);
        }
    }
    out
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// Every PromQL expression: panel targets and query variables.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in all_panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((
                    panel["title"].as_str().unwrap_or("").to_owned(),
                    expr.to_owned(),
                ));
            }
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let query = var["query"]
            .get("query")
            .and_then(Value::as_str)
            .or_else(|| var["query"].as_str())
            .expect("query variable has a query");
        out.push((
            format!("variable ${}", var["name"].as_str().unwrap_or("")),
            query.to_owned(),
        ));
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Punct(char),
}

/// A PromQL tokenizer, enough to find metric names, grouping labels and
/// label matchers (string literals are kept whole, so a label value such as
/// `/whip/{call_id}` is not mistaken for syntax).
fn tokenize(expr: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' || c == '`' {
            chars.next();
            let mut s = String::new();
            while let Some(d) = chars.next() {
                if d == '\\' && c != '`' {
                    if let Some(e) = chars.next() {
                        s.push(e);
                    }
                } else if d == c {
                    break;
                } else {
                    s.push(d);
                }
            }
            tokens.push(Token::Str(s));
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.' {
            let mut s = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' || d == '.' {
                    s.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Ident(s));
        } else {
            tokens.push(Token::Punct(c));
            chars.next();
        }
    }
    tokens
}

fn is_metric_name(s: &str) -> bool {
    // Hearken's own metrics and the process collector's.
    s.strip_prefix("hearken_")
        .or_else(|| s.strip_prefix("process_"))
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// What one expression refers to.
#[derive(Debug, Default)]
struct Refs {
    /// Metric names as written, with the function directly around each.
    metrics: Vec<(String, Option<String>)>,
    /// Labels in `by (...)` / `without (...)`.
    grouping: BTreeSet<String>,
    /// Label matchers: (label, operator, value).
    matchers: Vec<(String, String, String)>,
    /// Dashboard variables (`$name`, `${name}`), also inside strings.
    variables: BTreeSet<String>,
}

fn references(expr: &str) -> Refs {
    let tokens = tokenize(expr);
    let mut refs = Refs::default();
    let ident = |i: usize| match tokens.get(i) {
        Some(Token::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let punct = |i: usize, c: char| tokens.get(i) == Some(&Token::Punct(c));
    let mut depth_braces = 0;
    for i in 0..tokens.len() {
        match &tokens[i] {
            Token::Punct('{') => depth_braces += 1,
            Token::Punct('}') => depth_braces -= 1,
            Token::Ident(name) if depth_braces == 0 && is_metric_name(name) => {
                let function = if i >= 2 && punct(i - 1, '(') {
                    ident(i - 2).map(str::to_owned)
                } else {
                    None
                };
                refs.metrics.push((name.clone(), function));
            }
            Token::Ident(kw) if (kw == "by" || kw == "without") && punct(i + 1, '(') => {
                let mut j = i + 2;
                while let Some(label) = ident(j) {
                    refs.grouping.insert(label.to_owned());
                    j += 1;
                    if punct(j, ',') {
                        j += 1;
                    }
                }
                assert!(punct(j, ')'), "grouping clause closes in {expr}");
            }
            Token::Ident(label) if depth_braces > 0 => {
                // label op "value", op one of = != =~ !~
                let mut j = i + 1;
                let mut op = String::new();
                while let Some(Token::Punct(c @ ('=' | '!' | '~'))) = tokens.get(j) {
                    op.push(*c);
                    j += 1;
                }
                if let (false, Some(Token::Str(value))) = (op.is_empty(), tokens.get(j)) {
                    refs.matchers
                        .push((label.clone(), op.clone(), value.clone()));
                }
            }
            _ => {}
        }
    }
    for (i, _) in expr.match_indices('$') {
        let rest = &expr[i + 1..];
        let rest = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(!name.is_empty(), "bare $ at {i} in {expr}");
        refs.variables.insert(name);
    }
    refs
}

#[test]
fn dashboard_is_a_valid_model() {
    assert!(
        !DASHBOARD.contains("__inputs") && !DASHBOARD.contains("${DS_"),
        "an export 'for sharing externally' does not load through file provisioning"
    );
    let d = dashboard();
    assert_eq!(d["uid"], "hearken");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["tags"].as_array().is_some_and(|t| !t.is_empty()));
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string());
    assert!(d["refresh"].is_string());
    assert!(d.get("id").is_none_or(Value::is_null), "no instance id");

    let variables = d["templating"]["list"].as_array().expect("templating.list");
    let datasource = variables
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let defined: BTreeSet<&str> = variables
        .iter()
        .map(|v| v["name"].as_str().expect("variable name"))
        .chain(BUILTIN_VARIABLES)
        .collect();
    let expected_ds = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for var in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(var["datasource"], expected_ds, "variable {}", var["name"]);
    }

    let panels = all_panels(&d);
    assert!(panels.iter().filter(|p| !is_row(p)).count() >= 20);
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(u64, u64, u64, u64, &str)> = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().expect("panel title");
        assert!(!title.is_empty());
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} used twice");
        assert!(
            panel["type"].as_str().is_some_and(|t| !t.is_empty()),
            "{title}"
        );
        let g = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        });
        assert!(w >= 1 && h >= 1 && x + w <= 24, "{title}: gridPos {g}");
        for &(bx, by, bw, bh, other) in &boxes {
            let overlap = x < bx + bw && bx < x + w && y < by + bh && by < y + h;
            assert!(!overlap, "{title} overlaps {other}");
        }
        boxes.push((x, y, w, h, title));
        if is_row(panel) {
            assert!(
                panel.get("targets").is_none(),
                "{title}: a row has no queries"
            );
            continue;
        }
        assert_eq!(panel["datasource"], expected_ds, "{title}");
        assert!(
            panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_some_and(|u| !u.is_empty()),
            "{title}: fieldConfig.defaults.unit"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: at least one target");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            let expr = target["expr"].as_str().expect("target expr");
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
            let ref_id = target["refId"].as_str().expect("target refId");
            assert!(ref_ids.insert(ref_id), "{title}: refId {ref_id} twice");
            if let Some(ds) = target.get("datasource") {
                assert_eq!(ds, &expected_ds, "{title}");
            }
            let refs = references(expr);
            assert!(!refs.metrics.is_empty(), "{title}: {expr} names no metric");
            for var in &refs.variables {
                assert!(
                    defined.contains(var.as_str()),
                    "{title}: ${var} is not defined"
                );
            }
            assert!(
                !expr.contains("rate(")
                    || expr.contains("[$__rate_interval]")
                    || expr.contains("[$__range]"),
                "{title}: rates use $__rate_interval: {expr}"
            );
        }
    }
}

#[test]
fn provisioning_matches_the_dashboard() {
    // The datasource has a fixed uid and a URL from the environment.
    assert!(DATASOURCES.contains("type: prometheus"));
    assert!(DATASOURCES.contains("uid: prometheus"));
    assert!(
        DATASOURCES.contains("${PROMETHEUS_URL"),
        "URL from the environment"
    );
    // The provider loads files from a folder.
    assert!(PROVIDERS.contains("type: file"));
    assert!(PROVIDERS.contains("path: /var/lib/grafana/dashboards/hearken"));
}

/// Families in Prometheus text: name -> (type, label names, label values).
type Families = BTreeMap<String, (String, BTreeSet<String>, BTreeMap<String, BTreeSet<String>>)>;

fn families(text: &str) -> Families {
    let mut out = Families::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().expect("TYPE name").to_owned();
            let kind = parts.next().expect("TYPE kind").to_owned();
            out.insert(name, (kind, BTreeSet::new(), BTreeMap::new()));
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).expect("sample line");
        let sample = &line[..name_end];
        let family = if out.contains_key(sample) {
            sample
        } else {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| sample.strip_suffix(s).filter(|b| out.contains_key(*b)))
                .unwrap_or_else(|| panic!("sample {sample} has no # TYPE"))
        };
        let entry = out.get_mut(family).expect("family");
        if line[name_end..].starts_with('{') {
            // label="value",... with escapes; values may contain braces.
            let mut chars = line[name_end + 1..].chars();
            loop {
                let label: String = chars.by_ref().take_while(|&c| c != '=').collect();
                let label = label.trim_start_matches(',').trim().to_owned();
                if label.is_empty() || label.starts_with('}') {
                    break;
                }
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                entry.1.insert(label.clone());
                entry.2.entry(label).or_default().insert(value);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_metric_is_exported() {
    // A transcribing server whose backend refuses the first connection (so
    // a reconnect is counted), and a consent grace period, so the gate
    // withholds the first frames: every labelled family gets a series.
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    fake.set_behavior(Behavior::default().reject_next(1, 503));
    let server = crate::common::transcribing_server(&fake, "HEARKEN_TEST_GRAFANA_KEY", |c| {
        c.consent.grace_period_ms = 200;
    })
    .await;
    let client = WhipClient::connect(&server, "grafana", &["g"]).await;
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "g".into(),
                packets: speech("speaker-a.opus")[..25].to_vec(),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(200),
        )
    })
    .await
    .expect("client");
    assert_eq!(server.delete(&client.location).await.status(), 200);
    let text = server.metrics().await;
    let exported = families(&text);
    server.shutdown().await;

    let mut missing = BTreeSet::new();
    let mut problems = Vec::new();
    let mut referenced = BTreeSet::new();
    for (title, expr) in expressions(&dashboard()) {
        let refs = references(&expr);
        let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
        let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, function) in &refs.metrics {
            let (family, suffix) = if exported.contains_key(name) {
                (name.as_str(), "")
            } else if let Some((base, suffix)) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| Some((name.strip_suffix(s)?, *s)))
                .filter(|(b, _)| exported.get(*b).is_some_and(|f| f.0 == "histogram"))
            {
                (base, suffix)
            } else {
                missing.insert(name.clone());
                continue;
            };
            referenced.insert(family.to_owned());
            let (kind, family_labels, family_values) = &exported[family];
            labels.extend(family_labels.iter().cloned());
            for (l, v) in family_values {
                values
                    .entry(l.clone())
                    .or_default()
                    .extend(v.iter().cloned());
            }
            let rated = matches!(function.as_deref(), Some("rate" | "irate" | "increase"));
            match kind.as_str() {
                "counter" if !rated => {
                    problems.push(format!("{title}: counter {name} not under rate()"))
                }
                "histogram" if suffix.is_empty() => problems.push(format!(
                    "{title}: histogram {name} needs _bucket/_sum/_count"
                )),
                "histogram" if !rated => problems.push(format!("{title}: {name} not under rate()")),
                "gauge" if rated => problems.push(format!("{title}: gauge {name} under rate()")),
                _ => {}
            }
        }
        for label in refs
            .grouping
            .iter()
            .chain(refs.matchers.iter().map(|m| &m.0))
        {
            if !labels.contains(label) {
                problems.push(format!(
                    "{title}: label {label} is not on the metrics of {expr}"
                ));
            }
        }
        for (label, op, value) in &refs.matchers {
            if label == "route"
                && op == "="
                && !values.get(label).is_some_and(|v| v.contains(value))
            {
                problems.push(format!("{title}: no route {value} is served"));
            }
        }
    }
    println!(
        "dashboard references {} metric families: {referenced:?}",
        referenced.len()
    );
    assert!(
        missing.is_empty(),
        "metrics the dashboard names but the server does not export: {missing:?}\nexported: {:?}",
        exported.keys().collect::<Vec<_>>()
    );
    assert!(problems.is_empty(), "{problems:#?}");
    // The dashboard covers what the server exports (build info included via
    // the instance variable); report any family it leaves out.
    let unused: Vec<_> = exported
        .keys()
        .filter(|k| !referenced.contains(*k))
        .collect();
    println!("exported but not on the dashboard: {unused:?}");
}
