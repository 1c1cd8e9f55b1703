//! The server's Prometheus text exposition: parsing, summing a metric over
//! its label sets, and estimating quantiles from histogram bucket deltas the
//! way PromQL's `histogram_quantile` does.

use std::collections::BTreeMap;

/// A line of the exposition that is not a valid sample.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("metrics line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`/`_sum`/`_count` suffixes as written).
    pub name: String,
    /// Label pairs in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format (version 0.0.4): comments and blank lines are
    /// skipped, timestamps ignored.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let samples = text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let l = l.trim_start();
                !l.is_empty() && !l.starts_with('#')
            })
            .map(|(i, l)| {
                parse_sample(l.trim()).map_err(|message| ParseError {
                    line: i + 1,
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { samples })
    }

    /// Sum of `name` over all its label sets; `None` if the server does not
    /// expose it at all (as opposed to exposing zero).
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let total = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        found.then_some(total)
    }

    /// Sum of `name` over its label sets where label `label` is `value`;
    /// `None` if no such sample is exposed.
    pub fn sum_labelled(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        let mut found = false;
        let total = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels.iter().any(|(k, v)| k == label && v == value))
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        found.then_some(total)
    }

    /// The histogram `name`, with the buckets of every label set merged
    /// (bucket bounds are per metric, so same-`le` counts add up).
    pub fn histogram(&self, name: &str) -> Option<Histogram> {
        let bucket_name = format!("{name}_bucket");
        let mut buckets: BTreeMap<OrderedBound, f64> = BTreeMap::new();
        for sample in self.samples.iter().filter(|s| s.name == bucket_name) {
            let le = sample
                .labels
                .iter()
                .find(|(k, _)| k == "le")
                .and_then(|(_, v)| parse_value(v).ok())?;
            *buckets.entry(OrderedBound(le)).or_default() += sample.value;
        }
        if buckets.is_empty() {
            return None;
        }
        Some(Histogram {
            buckets: buckets.into_iter().map(|(le, n)| (le.0, n)).collect(),
            sum: self.sum(&format!("{name}_sum")).unwrap_or(0.0),
            count: self.sum(&format!("{name}_count")).unwrap_or(0.0),
        })
    }
}

/// An `f64` bucket bound with a total order (bounds are never NaN in a
/// valid exposition; `total_cmp` keeps a bad one from panicking).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedBound(f64);

impl Eq for OrderedBound {}

impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A cumulative histogram: `(upper bound, observations <= bound)`, by
/// increasing bound, the last normally `+Inf`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Cumulative buckets.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of observations.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl Histogram {
    /// What was observed between `earlier` and `self` (bucket by bucket;
    /// a bound missing from `earlier` counts from zero).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| b.total_cmp(&le).is_eq())
                .map_or(0.0, |(_, n)| *n)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| (le, (n - before(le)).max(0.0)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// Estimated `q` quantile (0..=1), interpolating linearly inside the
    /// bucket the rank falls in, like PromQL's `histogram_quantile`: the
    /// first bucket starts at 0, and a rank in the `+Inf` bucket gives the
    /// highest finite bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for &(upper, cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > below {
                if upper.is_infinite() {
                    return Some(lower);
                }
                let fraction = (rank - below) / (cumulative - below);
                return Some(lower + (upper - lower) * fraction);
            }
            lower = upper;
            below = cumulative;
        }
        Some(lower)
    }
}

/// Parses `name{k="v",…} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    if name_end == 0 {
        return Err("no metric name".to_owned());
    }
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("{name}: no value"))
        .and_then(|v| parse_value(v).map_err(|e| format!("{name}: {e}")))?;
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses label pairs up to and including the closing `}`; returns the rest
/// of the line.
fn parse_labels<'a>(
    mut text: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, String> {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = text.find('=').ok_or("label without '='")?;
        let key = text[..eq].trim().to_owned();
        if key.is_empty() {
            return Err("empty label name".to_owned());
        }
        text = text[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".to_owned()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".to_owned()),
            }
        };
        labels.push((key, value));
        text = text[end + 1..].trim_start();
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return Err("expected ',' or '}' after a label".to_owned());
        }
    }
}

/// A sample value or `le` bound: a float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|e| format!("bad value {text:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP hearken_frames_dropped_total Audio frames that did not reach a sink, by reason.
# TYPE hearken_frames_dropped_total counter
hearken_frames_dropped_total{reason="queue_full"} 3
hearken_frames_dropped_total{reason="late"} 4

hearken_rtp_packets_received_total 1500
process_cpu_seconds_total 12.34
odd{path="a \"quoted\" \\ back\nslash",x="1",} 2 1700000000000
# TYPE lat_seconds histogram
lat_seconds_bucket{worker="0",le="0.001"} 10
lat_seconds_bucket{worker="0",le="0.01"} 90
lat_seconds_bucket{worker="0",le="+Inf"} 100
lat_seconds_bucket{worker="1",le="0.001"} 0
lat_seconds_bucket{worker="1",le="0.01"} 10
lat_seconds_bucket{worker="1",le="+Inf"} 100
lat_seconds_sum{worker="0"} 0.5
lat_seconds_sum{worker="1"} 1.5
lat_seconds_count{worker="0"} 100
lat_seconds_count{worker="1"} 100
"#;

    #[test]
    fn counters_sum_over_labels_and_absent_is_none() {
        let e = Exposition::parse(TEXT).expect("parses");
        assert_eq!(e.sum("hearken_frames_dropped_total"), Some(7.0));
        assert_eq!(e.sum("hearken_rtp_packets_received_total"), Some(1500.0));
        assert_eq!(e.sum("process_cpu_seconds_total"), Some(12.34));
        assert_eq!(e.sum("hearken_recorder_frames_written_total"), None);
        // A prefix of another name is not that name.
        assert_eq!(e.sum("hearken_rtp_packets"), None);
    }

    #[test]
    fn sums_can_select_one_label_value() {
        let e = Exposition::parse(TEXT).expect("parses");
        let dropped = "hearken_frames_dropped_total";
        assert_eq!(e.sum_labelled(dropped, "reason", "late"), Some(4.0));
        assert_eq!(e.sum_labelled(dropped, "reason", "other"), None);
        assert_eq!(e.sum_labelled(dropped, "worker", "late"), None);
    }

    #[test]
    fn label_values_unescape_and_timestamps_are_ignored() {
        let e = Exposition::parse(TEXT).expect("parses");
        let odd = e.samples.iter().find(|s| s.name == "odd").expect("odd");
        assert_eq!(odd.labels[0].1, "a \"quoted\" \\ back\nslash");
        assert_eq!(odd.labels[1], ("x".to_owned(), "1".to_owned()));
        assert_eq!(odd.value, 2.0);
    }

    #[test]
    fn bad_lines_are_errors_with_their_line_number() {
        let err = Exposition::parse("ok 1\nbroken{a=\"x\" 2\n").expect_err("bad");
        assert_eq!(err.line, 2);
        assert!(Exposition::parse("novalue\n").is_err());
        assert!(Exposition::parse("x 1e\n").is_err());
    }

    #[test]
    fn histograms_merge_label_sets() {
        let e = Exposition::parse(TEXT).expect("parses");
        let h = e.histogram("lat_seconds").expect("histogram");
        assert_eq!(
            h.buckets,
            vec![(0.001, 10.0), (0.01, 100.0), (f64::INFINITY, 200.0)]
        );
        assert_eq!(h.count, 200.0);
        assert_eq!(h.sum, 2.0);
        assert!(e.histogram("missing_seconds").is_none());
    }

    fn hist(buckets: &[(f64, f64)]) -> Histogram {
        Histogram {
            buckets: buckets.to_vec(),
            sum: 0.0,
            count: buckets.last().map_or(0.0, |b| b.1),
        }
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = hist(&[
            (1.0, 50.0),
            (2.0, 100.0),
            (4.0, 200.0),
            (f64::INFINITY, 200.0),
        ]);
        // Rank 100 of 200 is the top of the (1, 2] bucket.
        assert_eq!(h.quantile(0.5), Some(2.0));
        // Rank 50 in the first bucket, which starts at 0.
        assert_eq!(h.quantile(0.25), Some(1.0));
        assert_eq!(h.quantile(0.125), Some(0.5));
        // Rank 150: half way through (2, 4].
        assert_eq!(h.quantile(0.75), Some(3.0));
        assert_eq!(h.quantile(0.0), Some(0.0));
        assert_eq!(h.quantile(1.5), None);
    }

    #[test]
    fn a_rank_in_the_inf_bucket_gives_the_highest_finite_bound() {
        let h = hist(&[(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 100.0)]);
        assert_eq!(h.quantile(0.99), Some(2.0));
    }

    #[test]
    fn empty_histograms_have_no_quantiles() {
        assert_eq!(
            hist(&[(1.0, 0.0), (f64::INFINITY, 0.0)]).quantile(0.5),
            None
        );
        assert_eq!(hist(&[]).quantile(0.5), None);
    }

    #[test]
    fn deltas_subtract_bucket_by_bucket() {
        let earlier = hist(&[(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)]);
        let later = hist(&[(1.0, 10.0), (2.0, 60.0), (f64::INFINITY, 70.0)]);
        let delta = later.since(&earlier);
        assert_eq!(
            delta.buckets,
            vec![(1.0, 0.0), (2.0, 40.0), (f64::INFINITY, 50.0)]
        );
        assert_eq!(delta.count, 50.0);
        // 40 of the 50 new observations are in (1, 2].
        assert_eq!(delta.quantile(0.4), Some(1.5));
        assert_eq!(delta.quantile(0.99), Some(2.0));
    }
}
