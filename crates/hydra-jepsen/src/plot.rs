//! The run as a picture: throughput, latency (p50 and p99) and availability per second, with
//! each fault window shaded and labelled. Plain SVG, written directly (three line charts do
//! not need a plotting library, and plotters' text needs font files this machine may lack).

use crate::history::{Fault, Kind, Op};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

const WIDTH: f64 = 1100.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;

fn color(kind: &str) -> &'static str {
    match kind {
        "partition" => "#f4a261",
        "kill" => "#e76f51",
        "pause" => "#8ecae6",
        _ => "#b5e48c",
    }
}

/// Per second: (ok ops, all completed ops, p50 ms, p99 ms).
fn per_second(ops: &[Op], seconds: usize) -> Vec<(f64, f64, f64, f64)> {
    let mut started: BTreeMap<u64, u64> = BTreeMap::new();
    let mut buckets: Vec<(u64, u64, Vec<f64>)> = vec![(0, 0, Vec::new()); seconds];
    for o in ops {
        if o.kind == Kind::Invoke {
            started.insert(o.process, o.time);
            continue;
        }
        let s = (o.time / 1_000_000_000) as usize;
        if s >= seconds {
            continue;
        }
        let b = &mut buckets[s];
        b.1 += 1;
        if o.kind == Kind::Ok {
            b.0 += 1;
        }
        if let Some(t) = started.remove(&o.process) {
            b.2.push(o.time.saturating_sub(t) as f64 / 1e6);
        }
    }
    buckets
        .into_iter()
        .map(|(ok, all, mut lat)| {
            lat.sort_by(f64::total_cmp);
            let q = |q: f64| {
                if lat.is_empty() {
                    0.0
                } else {
                    lat[((lat.len() - 1) as f64 * q).round() as usize]
                }
            };
            (ok as f64, all as f64, q(0.5), q(0.99))
        })
        .collect()
}

struct Panel<'a> {
    svg: &'a mut String,
    top: f64,
    seconds: f64,
    ymax: f64,
}

impl Panel<'_> {
    fn x(&self, s: f64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * s / self.seconds.max(1.0)
    }

    fn y(&self, v: f64) -> f64 {
        self.top + PANEL - PANEL * (v / self.ymax.max(1e-9)).min(1.0)
    }

    fn frame(&mut self, title: &str, unit: &str, faults: &[Fault]) {
        let (top, bottom) = (self.top, self.top + PANEL);
        for f in faults {
            let (a, b) = (self.x(f.start as f64 / 1e9), self.x(f.end as f64 / 1e9));
            let _ = write!(
                self.svg,
                r#"<rect x="{a:.1}" y="{top:.1}" width="{:.1}" height="{PANEL}" fill="{}" opacity="0.35"><title>{}</title></rect>"#,
                (b - a).max(1.0),
                color(&f.kind),
                xml(&f.description)
            );
        }
        let _ = write!(
            self.svg,
            r##"<rect x="{LEFT}" y="{top:.1}" width="{:.1}" height="{PANEL}" fill="none" stroke="#333"/>"##,
            WIDTH - LEFT - RIGHT
        );
        let _ = write!(
            self.svg,
            r#"<text x="{LEFT}" y="{:.1}" font-size="14" font-family="sans-serif">{}</text>"#,
            top - 8.0,
            xml(title)
        );
        for i in 0..=4 {
            let v = self.ymax * i as f64 / 4.0;
            let y = self.y(v);
            let _ = write!(
                self.svg,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" font-family="sans-serif">{} {unit}</text>"##,
                WIDTH - RIGHT,
                LEFT - 5.0,
                y + 4.0,
                short(v)
            );
        }
        let step = ((self.seconds / 10.0).ceil()).max(1.0);
        let mut s = 0.0;
        while s <= self.seconds {
            let _ = write!(
                self.svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" font-family="sans-serif">{s:.0}s</text>"#,
                self.x(s),
                bottom + 14.0
            );
            s += step;
        }
    }

    fn line(&mut self, points: &[f64], stroke: &str, label: &str, slot: usize) {
        let path: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", self.x(i as f64 + 0.5), self.y(*v)))
            .collect();
        let _ = write!(
            self.svg,
            r#"<polyline fill="none" stroke="{stroke}" stroke-width="1.5" points="{}"/>"#,
            path.join(" ")
        );
        let lx = WIDTH - RIGHT - 160.0 + slot as f64 * 80.0;
        let _ = write!(
            self.svg,
            r#"<line x1="{lx:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="11" font-family="sans-serif">{}</text>"#,
            lx + 15.0,
            self.top - 12.0,
            self.top - 12.0,
            lx + 18.0,
            self.top - 8.0,
            xml(label)
        );
    }
}

fn short(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes the SVG of a run of `seconds` seconds.
pub fn draw(path: &Path, ops: &[Op], faults: &[Fault], seconds: f64) -> Result<()> {
    // Whole seconds only: a last partial second would look like an outage.
    let n = seconds.floor().max(1.0) as usize;
    let data = per_second(ops, n);
    let height = TOP + 3.0 * (PANEL + GAP);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}"><rect width="100%" height="100%" fill="white"/>"#
    );
    let kinds: Vec<&str> = {
        let mut k: Vec<&str> = faults.iter().map(|f| f.kind.as_str()).collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    let mut lx = LEFT;
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="18" font-size="15" font-family="sans-serif" font-weight="bold">Hydra under faults: {} ops, {} faults</text>"#,
        ops.iter().filter(|o| o.kind != Kind::Invoke).count(),
        faults.len()
    );
    lx += 420.0;
    for k in kinds {
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="8" width="14" height="12" fill="{}" opacity="0.6"/><text x="{:.1}" y="18" font-size="12" font-family="sans-serif">{k}</text>"#,
            color(k),
            lx + 18.0
        );
        lx += 90.0;
    }
    let ok: Vec<f64> = data.iter().map(|d| d.0).collect();
    let p50: Vec<f64> = data.iter().map(|d| d.2).collect();
    let p99: Vec<f64> = data.iter().map(|d| d.3).collect();
    let avail: Vec<f64> = data
        .iter()
        .map(|d| if d.1 == 0.0 { 0.0 } else { d.0 / d.1 })
        .collect();
    let max_of = |v: &[f64]| v.iter().copied().fold(0.0, f64::max) * 1.1;
    let mut top = TOP + 20.0;
    {
        let mut p = Panel {
            svg: &mut svg,
            top,
            seconds: n as f64,
            ymax: max_of(&ok).max(1.0),
        };
        p.frame("throughput (ok operations per second)", "/s", faults);
        p.line(&ok, "#1d3557", "ok/s", 1);
    }
    top += PANEL + GAP;
    {
        let mut p = Panel {
            svg: &mut svg,
            top,
            seconds: n as f64,
            ymax: max_of(&p99).max(1.0),
        };
        p.frame("latency of completed operations", "ms", faults);
        p.line(&p50, "#457b9d", "p50", 0);
        p.line(&p99, "#e63946", "p99", 1);
    }
    top += PANEL + GAP;
    {
        let mut p = Panel {
            svg: &mut svg,
            top,
            seconds: n as f64,
            ymax: 1.0,
        };
        p.frame("availability (ok / completed)", "", faults);
        p.line(&avail, "#2a9d8f", "ok share", 1);
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)?;
    Ok(())
}
