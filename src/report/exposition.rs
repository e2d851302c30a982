//! The two text formats `GET /metrics` answers in, and which one a scrape gets.
//!
//! * **Prometheus text 0.0.4** (`text/plain; version=0.0.4`): what `curl`, `promtool check
//!   metrics` and every scraper understand. Served without an `Accept` header, for `text/plain`,
//!   `text/*`, `*/*`, and for anything we cannot serve (a format nobody asked for is still better
//!   than a 406 to a probe).
//! * **OpenMetrics 1.0** (`application/openmetrics-text; version=1.0.0`): only when the `Accept`
//!   header names it and ranks it at least as high as the text format (Prometheus asks for it
//!   first). It ends with `# EOF`, and a counter's family is named without `_total` while its
//!   samples carry it, as OpenMetrics wants.
//!
//! prometheus-client encodes OpenMetrics; the Prometheus text is derived from that encoding by
//! [`to_prometheus_text`], a pure function of the text: the same samples, with `# EOF` and
//! `# UNIT` dropped and a counter's `# HELP`/`# TYPE` named as its samples are (`..._total`),
//! which is what the text format and promtool's lint expect.

/// A format `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    PrometheusText,
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The format for a request with this `Accept` header (`None`: no header). OpenMetrics only when
/// the header names it (any version we can answer for: none, 1.0.0, 0.0.1) with a quality above
/// zero and at least that of the text format; wildcards never select it.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::PrometheusText;
    };
    let (mut openmetrics, mut text) = (0.0_f64, 0.0_f64);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let (mut quality, mut version) = (1.0, None);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                // An unreadable quality makes the range unacceptable rather than preferred.
                "q" => {
                    quality = value
                        .parse::<f64>()
                        .ok()
                        .filter(|q| q.is_finite())
                        .unwrap_or(0.0)
                }
                "version" => version = Some(value.to_owned()),
                _ => {}
            }
        }
        let version = version.as_deref();
        match media.as_str() {
            "application/openmetrics-text" if matches!(version, None | Some("1.0.0" | "0.0.1")) => {
                openmetrics = openmetrics.max(quality)
            }
            "text/plain" if matches!(version, None | Some("0.0.4" | "1.0.0")) => {
                text = text.max(quality)
            }
            "text/*" | "*/*" => text = text.max(quality),
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics >= text {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    }
}

/// The Prometheus text format (0.0.4) of an OpenMetrics text as prometheus-client encodes it:
/// every sample as it is (without exemplars, and without a counter's `_created`), the `# HELP`
/// and `# TYPE` of a counter named after its samples (`name_total`), `unknown` as `untyped`, and
/// no `# UNIT` or `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A family's HELP comes before its TYPE, which says how to name both.
    let mut help: Option<(&str, &str)> = None;
    let mut counter: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take());
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (shown, kind) = match kind {
                "counter" => (format!("{name}_total"), kind),
                "unknown" => (name.to_owned(), "untyped"),
                _ => (name.to_owned(), kind),
            };
            counter = (kind == "counter").then_some(name);
            match help.take() {
                Some((n, text)) if n == name => out += &format!("# HELP {shown} {text}\n"),
                other => flush_help(&mut out, other),
            }
            out += &format!("# TYPE {shown} {kind}\n");
            continue;
        }
        flush_help(&mut out, help.take());
        let sample = line
            .split_once(" # ")
            .map_or(line, |(sample, _exemplar)| sample);
        let created = counter.is_some_and(|c| {
            sample
                .strip_prefix(c)
                .is_some_and(|rest| rest.starts_with("_created"))
        });
        if !created {
            out += sample;
            out.push('\n');
        }
    }
    flush_help(&mut out, help);
    out
}

/// A `# HELP` line whose `# TYPE` did not follow: as it was.
fn flush_help(out: &mut String, help: Option<(&str, &str)>) {
    if let Some((name, text)) = help {
        *out += &format!("# HELP {name} {text}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_format_a_scrape_gets() {
        use Format::{OpenMetrics as Om, PrometheusText as Text};
        let prometheus_2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let prometheus_3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let rows: &[(Option<&str>, Format)] = &[
            (None, Text),
            (Some(""), Text),
            (Some("text/plain"), Text),
            (Some("text/plain; version=0.0.4"), Text),
            (Some("*/*"), Text),
            (Some("text/*"), Text),
            (Some("application/json"), Text),
            (Some("application/openmetrics-text"), Om),
            (Some("Application/OpenMetrics-Text; Version=1.0.0"), Om),
            (Some("application/openmetrics-text; version=\"1.0.0\""), Om),
            (Some("application/openmetrics-text;version=0.0.1"), Om),
            // A version we cannot answer for.
            (Some("application/openmetrics-text;version=2.0.0"), Text),
            (Some(prometheus_2), Om),
            (Some(prometheus_3), Om),
            // Ranked below the text format, or refused.
            (Some("application/openmetrics-text;q=0.5, text/plain"), Text),
            (Some("text/plain;q=0.5, application/openmetrics-text"), Om),
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("application/openmetrics-text;q=x"), Text),
            (Some("application/openmetrics-text;q=NaN"), Text),
            // Asked for as much as the text format: it was asked for by name.
            (Some("application/openmetrics-text, text/plain"), Om),
            (Some("*/*, application/openmetrics-text;q=0.9"), Text),
            (Some(",;,=;q"), Text),
        ];
        for (accept, want) in rows {
            assert_eq!(negotiate(*accept), *want, "{accept:?}");
        }
    }

    #[test]
    fn the_text_format_names_counters_after_their_samples() {
        let openmetrics = "\
# HELP app_up 1 while up.
# TYPE app_up gauge
app_up 1
# HELP app_restarts Restarts.
# TYPE app_restarts counter
app_restarts_total 3
app_restarts_created 1700000000.0
# HELP app_by_role Role changes.
# TYPE app_by_role counter
app_by_role_total{role=\"leader\"} 2 # {trace=\"x\"} 1.0
# HELP app_wait_seconds Waits.
# TYPE app_wait_seconds histogram
# UNIT app_wait_seconds seconds
app_wait_seconds_sum 0.5
app_wait_seconds_count 1
app_wait_seconds_bucket{le=\"1.0\"} 1
app_wait_seconds_bucket{le=\"+Inf\"} 1
# HELP app_other Unknown kind.
# TYPE app_other unknown
app_other 7
# EOF
";
        let want = "\
# HELP app_up 1 while up.
# TYPE app_up gauge
app_up 1
# HELP app_restarts_total Restarts.
# TYPE app_restarts_total counter
app_restarts_total 3
# HELP app_by_role_total Role changes.
# TYPE app_by_role_total counter
app_by_role_total{role=\"leader\"} 2
# HELP app_wait_seconds Waits.
# TYPE app_wait_seconds histogram
app_wait_seconds_sum 0.5
app_wait_seconds_count 1
app_wait_seconds_bucket{le=\"1.0\"} 1
app_wait_seconds_bucket{le=\"+Inf\"} 1
# HELP app_other Unknown kind.
# TYPE app_other untyped
app_other 7
";
        assert_eq!(to_prometheus_text(openmetrics), want);
        assert_eq!(to_prometheus_text(""), "");
        // A HELP without its TYPE stays as it was.
        assert_eq!(
            to_prometheus_text("# HELP a x\n# HELP b y\n# TYPE b gauge\nb 1\n"),
            "# HELP a x\n# HELP b y\n# TYPE b gauge\nb 1\n"
        );
    }
}
