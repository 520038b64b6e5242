//! The picture of a run: every transfer's latency over the time it was sent (one dot each,
//! failures on the top edge in red), the faults as shaded bands labelled with their kind, the
//! failure bound as a dashed line, leader changes as ticks on the time axis. Plain SVG: any
//! browser shows it, nothing to install.

use std::fmt::Write as _;

use super::FaultSpan;
use super::report::Outcome;
use super::watch::LeaderChange;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// What one picture shows.
pub struct Picture<'a> {
    /// Title line.
    pub title: String,
    /// Transfers.
    pub outcomes: &'a [Outcome],
    /// Faults.
    pub faults: &'a [FaultSpan],
    /// Leader changes.
    pub leader_changes: &'a [LeaderChange],
    /// The failure/downtime bound, seconds (a dashed line).
    pub bound: f64,
    /// Length of the run, seconds.
    pub end: f64,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A step for axis ticks giving about `n` ticks over `span`.
fn tick_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

impl Picture<'_> {
    /// The SVG document.
    pub fn svg(&self) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let end = self.end.max(1.0);
        let slowest = self
            .outcomes
            .iter()
            .filter_map(Outcome::latency)
            .fold(self.bound * 1.2, f64::max);
        let y_max = (slowest * 1.05).max(1.0);
        let x = |t: f64| LEFT + (t / end).clamp(0.0, 1.0) * plot_w;
        let y = |l: f64| TOP + plot_h - (l / y_max).clamp(0.0, 1.0) * plot_h;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{LEFT}" y="22" font-size="14">{}</text>"#,
            escape(&self.title)
        );
        // Faults: shaded bands, labelled at the top, alternating rows so neighbours stay legible.
        for (i, f) in self.faults.iter().enumerate() {
            let (a, b) = (x(f.start), x(f.end.max(f.start)));
            let _ = writeln!(
                svg,
                r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="#f4a261" fill-opacity="0.25"><title>{} {} {:.1}–{:.1} s</title></rect>"##,
                (b - a).max(1.0),
                escape(&f.kind),
                escape(&f.target),
                f.start,
                f.end
            );
            if self.faults.len() <= 40 {
                let _ = writeln!(
                    svg,
                    r##"<text x="{a:.1}" y="{:.1}" font-size="9" fill="#9c4a00">{}</text>"##,
                    TOP + 10.0 + 10.0 * (i % 3) as f64,
                    escape(&f.kind)
                );
            }
        }
        // Axes and grid.
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
        );
        let xs = tick_step(end, 10.0);
        let mut t = 0.0;
        while t <= end + 1e-9 {
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#333"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle">{4}</text>"##,
                x(t),
                TOP + plot_h,
                TOP + plot_h + 4.0,
                TOP + plot_h + 16.0,
                t
            );
            t += xs;
        }
        let ys = tick_step(y_max, 6.0);
        let mut l = 0.0;
        while l <= y_max + 1e-9 {
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{0:.1}" y1="{1:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
                LEFT + plot_w,
                y(l),
                LEFT - 6.0,
                y(l) + 4.0,
                l
            );
            l += ys;
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since start (request sent)</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 22.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">latency, s (sent → handled)</text>"#,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0
        );
        // The bound.
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{0:.1}" y1="{1:.1}" y2="{1:.1}" stroke="#c00" stroke-dasharray="5,4"/><text x="{2:.1}" y="{3:.1}" fill="#c00" text-anchor="end">bound {4} s</text>"##,
            LEFT + plot_w,
            y(self.bound),
            LEFT + plot_w - 4.0,
            y(self.bound) - 4.0,
            self.bound
        );
        // Leader changes: ticks under the axis.
        for c in self.leader_changes {
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#2a6f97" stroke-width="2"><title>operator {3} {4}: replica {5} leads</title></line>"##,
                x(c.at),
                TOP + plot_h + 18.0,
                TOP + plot_h + 26.0,
                c.operator,
                c.lane,
                c.replica
            );
        }
        // Transfers.
        for o in self.outcomes {
            match o.latency() {
                Some(lat) => {
                    let colour = if lat <= self.bound {
                        "#1d3557"
                    } else {
                        "#e63946"
                    };
                    let _ = writeln!(
                        svg,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{colour}"/>"#,
                        x(o.sent),
                        y(lat)
                    );
                }
                None => {
                    let _ = writeln!(
                        svg,
                        r##"<path d="M{:.1},{:.1} l3,6 l-6,0 z" fill="#e63946"/>"##,
                        x(o.sent),
                        TOP + 1.0
                    );
                }
            }
        }
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{:.1}" font-size="10" fill="#555">dots: transfers (red: over the bound; triangles: never handled) · bands: faults · blue ticks: leader changes</text>"##,
            HEIGHT - 6.0
        );
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(600.0, 10.0), 100.0);
        assert_eq!(tick_step(40.0, 6.0), 10.0);
        assert_eq!(tick_step(7.0, 6.0), 2.0);
    }

    #[test]
    fn the_picture_has_a_dot_per_transfer_and_a_band_per_fault() {
        let outcomes = vec![
            Outcome {
                sent: 1.0,
                lane: multibridge_contracts::Lane::MainToService,
                asset: super::super::load::Asset::Native,
                nonce: Some(0),
                mined: None,
                handled: Some(4.0),
                error: None,
            };
            3
        ];
        let faults = vec![FaultSpan {
            kind: "network-cut".into(),
            target: "operator-1-r1 <all>".into(),
            start: 2.0,
            end: 5.0,
        }];
        let svg = Picture {
            title: "t".into(),
            outcomes: &outcomes,
            faults: &faults,
            leader_changes: &[],
            bound: 30.0,
            end: 10.0,
        }
        .svg();
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("operator-1-r1 &lt;all&gt;"));
        assert!(svg.ends_with("</svg>\n"));
    }
}
