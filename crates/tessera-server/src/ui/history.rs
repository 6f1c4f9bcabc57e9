//! The Usage history view (a feature's seats used and count over time, drawn as an SVG chart
//! on the server, with the over-use periods marked and a table as its text alternative) and the
//! Denial report (denials and overdraft use, filtered, with a CSV download), from the admin API's
//! `/api/v1/admin/usage-history`, `/api/v1/admin/denials` and `/api/v1/admin/denials.csv`.

use askama::Template;
use axum::extract::Query;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tessera_core::time::format_description::well_known::Rfc3339;
use tessera_core::time::{Duration, OffsetDateTime};
use tessera_wire::admin::{Status, UsageEvents, UsageHistory};

use super::{failed, render, render_status, urlencode, Base, Page, Send};
use crate::http::Shared;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/usage", get(usage))
        .route("/denials", get(denials))
        .route("/denials.csv", get(denials_csv))
}

/// The ranges the usage page offers: key, label, length.
const RANGES: &[(&str, &str, Duration)] = &[
    ("hour", "Last hour", Duration::hours(1)),
    ("day", "Last day", Duration::days(1)),
    ("week", "Last week", Duration::weeks(1)),
    ("90d", "Last 90 days", Duration::days(90)),
    ("year", "Last year", Duration::days(365)),
];

/// What the usage page takes from its query string.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct UsageQuery {
    /// The feature to chart (default: the first one served).
    #[serde(default)]
    pub feature: Option<String>,
    /// A key of [`RANGES`] (default: `day`).
    #[serde(default)]
    pub range: Option<String>,
}

/// One version's line in the summary under the chart.
pub(crate) struct SeriesSummary {
    /// The version.
    pub version: String,
    /// The legend colour's class (`s0`, `s1`, …).
    pub class: String,
    /// Periods recorded.
    pub periods: usize,
    /// The most used, and when (the first such period).
    pub peak: u64,
    /// When the peak was.
    pub peak_at: String,
    /// The count at the end of the range (none: uncounted).
    pub count: Option<u64>,
    /// Periods with more seats used than the count.
    pub over: usize,
}

/// A period with seats used beyond the count (a row of the over-use table).
pub(crate) struct OverUse {
    /// When (the period's start, as shown).
    pub at: String,
    /// The version.
    pub version: String,
    /// Seats used.
    pub used: u64,
    /// The count.
    pub count: u64,
}

#[derive(Template)]
#[template(path = "ui/usage.html")]
struct UsagePage {
    base: Base,
    features: Vec<String>,
    feature: Option<String>,
    range: String,
    ranges: Vec<(&'static str, &'static str)>,
    history: Option<UsageHistory>,
    chart: String,
    summary: Vec<SeriesSummary>,
    over: Vec<OverUse>,
    over_total: usize,
    cli: String,
    error: Option<String>,
}

/// The most over-use periods listed in the table (all are marked on the chart).
const OVER_LISTED: usize = 50;

async fn usage(page: Page, Query(q): Query<UsageQuery>) -> Response {
    let base = page.base("Usage history", "usage").await;
    let status = match page.api.get::<Status>("/api/v1/admin/status").await {
        Ok(s) => s,
        Err(e) => return failed(&page, e),
    };
    let mut features: Vec<String> = status.features.iter().map(|f| f.name.clone()).collect();
    features.sort();
    features.dedup();
    let range = q
        .range
        .as_deref()
        .filter(|r| RANGES.iter().any(|(k, _, _)| k == r))
        .unwrap_or("day")
        .to_string();
    let span = RANGES
        .iter()
        .find(|(k, _, _)| *k == range)
        .map_or(Duration::days(1), |r| r.2);
    let feature = q
        .feature
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .or_else(|| features.first().cloned());
    let now = status
        .server_time
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    let ranges = RANGES.iter().map(|(k, l, _)| (*k, *l)).collect();
    let mut t = UsagePage {
        base,
        features,
        feature: feature.clone(),
        range: range.clone(),
        ranges,
        history: None,
        chart: String::new(),
        summary: Vec::new(),
        over: Vec::new(),
        over_total: 0,
        cli: String::new(),
        error: None,
    };
    let Some(feature) = feature else {
        return render(&t, &t.base);
    };
    // up to the end of this minute, so that the minute sampled last is in
    let to = tessera_store::Resolution::Minute.start(now) + Duration::minutes(1);
    let from = to - span;
    let from_text = from.format(&Rfc3339).unwrap_or_default();
    let to_text = to.format(&Rfc3339).unwrap_or_default();
    t.cli = format!(
        "tessera server usage-history {} --since {}",
        shell_word(&feature),
        cli_since(&range)
    );
    let path = format!(
        "/api/v1/admin/usage-history?feature={}&from={}&to={}",
        urlencode(&feature),
        urlencode(&from_text),
        urlencode(&to_text)
    );
    match page.api.get::<UsageHistory>(&path).await {
        Ok(h) => {
            let (chart, summary, over, total) = chart(&h, from, to);
            t.chart = chart;
            t.summary = summary;
            t.over = over;
            t.over_total = total;
            t.history = Some(h);
            render(&t, &t.base)
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            t.error = Some(e.detail);
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &t, &t.base)
        }
        Err(e) => failed(&page, e),
    }
}

/// `--since` of the CLI twin for a range key.
fn cli_since(range: &str) -> &'static str {
    match range {
        "hour" => "1h",
        "week" => "7d",
        "90d" => "90d",
        "year" => "365d",
        _ => "24h",
    }
}

/// A word for a shell command line shown to copy (quoted when it is not plain).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Escapes text for SVG/HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How a time is shown in a range of `span`: the time of day for a day or less, the date and time
/// for a week, the date beyond.
fn label(t: OffsetDateTime, span: Duration) -> String {
    let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
    if span <= Duration::days(1) {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else if span <= Duration::weeks(1) {
        format!("{m:02}-{d:02} {:02}:00", t.hour())
    } else {
        format!("{y}-{m:02}-{d:02}")
    }
}

/// The chart's size and margins.
const W: f64 = 760.0;
const H: f64 = 300.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;
/// The most over-use points drawn (beyond, the line's colour still shows it).
const OVER_DRAWN: usize = 1500;

/// The SVG chart of a history from `from` to `to` (used as a line per version, the count as a
/// dashed line, over-use periods as red dots), a summary per version, the over-use periods (at
/// most [`OVER_LISTED`]) and how many there were.
pub(crate) fn chart(
    h: &UsageHistory,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> (String, Vec<SeriesSummary>, Vec<OverUse>, usize) {
    let span = to - from;
    let parse = |t: &str| OffsetDateTime::parse(t, &Rfc3339).ok();
    let max = h
        .series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.used.max(p.count.unwrap_or(0)))
        .max()
        .unwrap_or(0)
        .max(1);
    // a round top for the y axis, with 4 steps
    let step = {
        let raw = (max as f64 * 1.1 / 4.0).ceil().max(1.0);
        let mag = 10f64.powf(raw.log10().floor());
        let n = [1.0, 2.0, 2.5, 5.0, 10.0]
            .into_iter()
            .map(|f| f * mag)
            .find(|v| *v >= raw)
            .unwrap_or(raw);
        n.ceil()
    };
    let top = step * 4.0;
    let secs = span.whole_seconds().max(1) as f64;
    let x =
        |t: OffsetDateTime| LEFT + (t - from).whole_seconds() as f64 / secs * (W - LEFT - RIGHT);
    let y = |v: u64| TOP + (H - TOP - BOTTOM) * (1.0 - v as f64 / top);
    let mut svg = String::with_capacity(16 * 1024);
    let mut summary = Vec::new();
    let mut over = Vec::new();
    let mut over_total = 0usize;
    let mut drawn = 0usize;
    let mut body = String::new();
    for (i, s) in h.series.iter().enumerate() {
        let class = format!("s{}", i % 4);
        let mut used_pts = String::new();
        let mut count_pts = String::new();
        let mut peak = (0u64, String::new());
        let mut over_here = 0usize;
        for p in &s.points {
            let Some(at) = parse(&p.at) else { continue };
            let px = x(at);
            used_pts.push_str(&format!("{px:.1},{:.1} ", y(p.used)));
            if let Some(c) = p.count {
                count_pts.push_str(&format!("{px:.1},{:.1} ", y(c)));
            }
            if p.used > peak.0 || peak.1.is_empty() {
                peak = (
                    p.used,
                    label(at, Duration::days(91)) + " " + &label(at, Duration::ZERO),
                );
            }
            if let Some(c) = p.count.filter(|c| p.used > *c) {
                over_here += 1;
                over_total += 1;
                if drawn < OVER_DRAWN {
                    drawn += 1;
                    body.push_str(&format!(
                        "<circle class=\"over\" cx=\"{px:.1}\" cy=\"{:.1}\" r=\"3.5\"/>",
                        y(p.used)
                    ));
                }
                if over.len() < OVER_LISTED {
                    over.push(OverUse {
                        at: p.at.clone(),
                        version: s.version.clone(),
                        used: p.used,
                        count: c,
                    });
                }
            }
        }
        if !count_pts.is_empty() {
            body.push_str(&format!(
                "<polyline class=\"count {class}\" points=\"{}\"/>",
                count_pts.trim_end()
            ));
        }
        body.push_str(&format!(
            "<polyline class=\"used {class}\" points=\"{}\"/>",
            used_pts.trim_end()
        ));
        summary.push(SeriesSummary {
            version: s.version.clone(),
            class,
            periods: s.points.len(),
            peak: peak.0,
            peak_at: peak.1,
            count: s.points.last().and_then(|p| p.count),
            over: over_here,
        });
    }
    let desc = if h.series.is_empty() {
        format!(
            "No use of {} was recorded from {} to {}.",
            h.feature,
            label(from, Duration::days(91)),
            label(to, Duration::days(91))
        )
    } else {
        let parts: Vec<String> = summary
            .iter()
            .map(|s| {
                format!(
                    "version {}: at most {} seats used ({}), count {}, {} period(s) over the count",
                    s.version,
                    s.peak,
                    s.peak_at,
                    s.count.map_or("uncounted".into(), |c| c.to_string()),
                    s.over
                )
            })
            .collect();
        format!(
            "Seats used of {} per {}: {}.",
            h.feature,
            h.resolution,
            parts.join("; ")
        )
    };
    svg.push_str(&format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-labelledby=\"chart-title chart-desc\">\
<title id=\"chart-title\">Usage history of {}</title><desc id=\"chart-desc\">{}</desc>",
        esc(&h.feature),
        esc(&desc)
    ));
    // the axes, with 4 steps up and 6 across
    for k in 0..=4 {
        let v = (step * f64::from(k)) as u64;
        let yy = y(v);
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        ));
    }
    for k in 0..=6 {
        let t = from + span * (f64::from(k) / 6.0);
        let xx = x(t);
        svg.push_str(&format!(
            "<line class=\"axis\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{}\" y2=\"{}\"/><text class=\"tick\" x=\"{xx:.1}\" y=\"{}\" text-anchor=\"{}\">{}</text>",
            H - BOTTOM,
            H - BOTTOM + 5.0,
            H - BOTTOM + 18.0,
            match k {
                0 => "start",
                6 => "end",
                _ => "middle",
            },
            esc(&label(t, span))
        ));
    }
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{}\"/><line class=\"axis\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>",
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM,
        H - BOTTOM
    ));
    svg.push_str(&format!(
        "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">time (UTC), per {}</text><text class=\"label\" x=\"12\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {})\">seats</text>",
        (LEFT + W - RIGHT) / 2.0,
        H - 6.0,
        esc(&h.resolution),
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0
    ));
    svg.push_str(&body);
    svg.push_str("</svg>");
    (svg, summary, over, over_total)
}

/// What the denial report takes from its query string (the API's filters).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct DenialQuery {
    /// `overdraft` for the overdraft tab.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only this feature.
    #[serde(default)]
    pub feature: Option<String>,
    /// Only since: a date or an RFC 3339 time.
    #[serde(default)]
    pub since: Option<String>,
    /// At most this many.
    #[serde(default)]
    pub limit: Option<String>,
}

impl DenialQuery {
    fn overdraft(&self) -> bool {
        self.kind.as_deref() == Some("overdraft")
    }

    fn text(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }

    /// The query string of the API (and of the CSV link): the filters given.
    pub(crate) fn api(&self) -> String {
        let mut parts = vec![format!(
            "kind={}",
            if self.overdraft() {
                "overdraft"
            } else {
                "denial"
            }
        )];
        for (name, v) in [
            ("feature", &self.feature),
            ("since", &self.since),
            ("limit", &self.limit),
        ] {
            if let Some(v) = Self::text(v) {
                parts.push(format!("{name}={}", urlencode(v)));
            }
        }
        parts.join("&")
    }

    /// The CLI twin of this report.
    fn cli(&self) -> String {
        let mut c = String::from("tessera server denials");
        if self.overdraft() {
            c.push_str(" --overdraft");
        }
        for (name, v) in [
            ("feature", &self.feature),
            ("since", &self.since),
            ("limit", &self.limit),
        ] {
            if let Some(v) = Self::text(v) {
                c.push_str(&format!(" --{name} {}", shell_word(v)));
            }
        }
        c
    }
}

#[derive(Template)]
#[template(path = "ui/denials.html")]
struct DenialsPage {
    base: Base,
    query: DenialQuery,
    overdraft: bool,
    events: Option<UsageEvents>,
    error: Option<String>,
    csv: String,
    cli: String,
}

async fn denials(page: Page, Query(q): Query<DenialQuery>) -> Response {
    let overdraft = q.overdraft();
    let base = page
        .base(
            if overdraft {
                "Overdraft use"
            } else {
                "Denials"
            },
            "denials",
        )
        .await;
    let api = q.api();
    let mut t = DenialsPage {
        base,
        overdraft,
        events: None,
        error: None,
        csv: format!("/denials.csv?{api}"),
        cli: q.cli(),
        query: q,
    };
    match page
        .api
        .get::<UsageEvents>(&format!("/api/v1/admin/denials?{api}"))
        .await
    {
        Ok(events) => {
            t.events = Some(events);
            render(&t, &t.base)
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            t.error = Some(e.detail);
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &t, &t.base)
        }
        Err(e) => failed(&page, e),
    }
}

/// The CSV download: the API's answer passed on (with its file name), or the report with the
/// API's refusal.
async fn denials_csv(page: Page, Query(q): Query<DenialQuery>) -> Response {
    let path = format!("/api/v1/admin/denials.csv?{}", q.api());
    let r = page.api.raw(Method::GET, &path, Send::Empty, None).await;
    if r.status().is_success() {
        let (parts, body) = r.into_parts();
        let mut out = axum::body::Body::new(body).into_response();
        for h in [header::CONTENT_TYPE, header::CONTENT_DISPOSITION] {
            if let Some(v) = parts.headers.get(&h) {
                out.headers_mut().insert(h, v.clone());
            }
        }
        out.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return out;
    }
    // the report says what was wrong
    denials(page, Query(q)).await
}
