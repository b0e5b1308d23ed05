//! Prometheus text exposition (format 0.0.4) without a metrics library: a histogram of fixed
//! buckets kept in atomics, and a writer that puts families, samples and histograms into the
//! text a scraper reads (<https://prometheus.io/docs/instrumenting/exposition_formats/>).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Buckets (seconds) for request latencies: a millisecond to ten seconds.
pub const REQUEST_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Buckets (seconds) for work that may take minutes (a clone of a large repository, a repack).
pub const LONG_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

/// Observations counted into fixed buckets; `observe` takes no lock.
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus one for `+Inf`; not cumulative (the writer adds them up).
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_us: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| s <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// What a family is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The text of one scrape, family after family.
#[derive(Default)]
pub struct Text(String);

impl Text {
    pub fn new() -> Text {
        Text::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) -> &mut Self {
        self.0.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.0, " {value}");
        self
    }

    /// A histogram's `_bucket` (cumulative, `le` last among the labels), `_sum` (seconds) and
    /// `_count` lines.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) -> &mut Self {
        let mut cumulative = 0;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = h.bounds.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".to_owned());
            let _ = write!(self.0, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.0, " {cumulative}");
        }
        let _ = write!(self.0, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.0, " {}", h.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = write!(self.0, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.0, " {cumulative}");
        self
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.0.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.0.push(',');
            }
            first = false;
            // Label values escape backslash, double quote and newline.
            let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(self.0, "{k}=\"{v}\"");
        }
        self.0.push('}');
    }

    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_histograms_are_written_in_the_text_format() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(5));
        let mut t = Text::new();
        t.family("x_total", "Things.\nMore", Kind::Counter).sample("x_total", &[("route", "/a\"b\\")], 3).sample("x_total", &[], 1);
        t.family("d_seconds", "Time.", Kind::Histogram).histogram("d_seconds", &[("kind", "k")], &h);
        assert_eq!(
            t.finish(),
            "# HELP x_total Things.\\nMore\n# TYPE x_total counter\nx_total{route=\"/a\\\"b\\\\\"} 3\nx_total 1\n\
             # HELP d_seconds Time.\n# TYPE d_seconds histogram\n\
             d_seconds_bucket{kind=\"k\",le=\"0.1\"} 1\nd_seconds_bucket{kind=\"k\",le=\"1\"} 2\nd_seconds_bucket{kind=\"k\",le=\"+Inf\"} 3\n\
             d_seconds_sum{kind=\"k\"} 5.55\nd_seconds_count{kind=\"k\"} 3\n"
        );
        assert_eq!(h.count(), 3);
    }
}
