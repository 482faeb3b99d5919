//! The SVG bar chart of the report: one horizontal bar per "lower is better" ratio
//! (cutoff / peer, time or bytes), on a log scale, coloured by the row's verdict, with the
//! target marked. Drawn with `plotters` (SVG backend only).

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

/// One bar.
pub(crate) struct Bar {
    /// Row label (peer first, e.g. "vs Go: WithTimeout+cancel").
    pub(crate) label: String,
    /// cutoff / peer.
    pub(crate) value: f64,
    /// The target ratio, if the row has one.
    pub(crate) target: Option<f64>,
    /// "PASS", "MISS" or "-".
    pub(crate) verdict: &'static str,
}

const PASS: RGBColor = RGBColor(46, 125, 50);
const MISS: RGBColor = RGBColor(198, 40, 40);
const INFO: RGBColor = RGBColor(130, 130, 130);

/// Draw `bars` into an SVG file at `path`.
pub(crate) fn draw(path: &Path, title: &str, bars: &[Bar]) -> Result<(), Box<dyn Error>> {
    let n = bars.len().max(1);
    let (w, row_h, top, bottom, left) = (1100u32, 24u32, 50u32, 60u32, 520u32);
    let h = top + bottom + row_h * n as u32;
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    // Zero ratios (nothing allocated) have no place on a log scale: they get a label only.
    let lo = bars
        .iter()
        .map(|b| b.value)
        .chain(bars.iter().filter_map(|b| b.target))
        .filter(|v| *v > 0.0)
        .fold(1.0f64, f64::min)
        / 2.0;
    let hi = bars.iter().map(|b| b.value).fold(1.0f64, f64::max).max(1.0) * 2.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin_top(10)
        .margin_right(20)
        .x_label_area_size(bottom - 10)
        .y_label_area_size(left)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("cutoff / peer (log scale; lower is better; 1 = parity)")
        .x_label_formatter(&|v| format!("{v}x"))
        .draw()?;
    // Bars top to bottom in the given order.
    let y = |i: usize| (n - 1 - i) as f64;
    chart.draw_series(
        bars.iter()
            .enumerate()
            .filter(|(_, b)| b.value > 0.0)
            .map(|(i, b)| {
                let c = match b.verdict {
                    "PASS" => PASS,
                    "MISS" => MISS,
                    _ => INFO,
                };
                Rectangle::new(
                    [(lo, y(i) + 0.2), (b.value, y(i) + 0.8)],
                    c.mix(0.85).filled(),
                )
            }),
    )?;
    // Target ticks.
    chart.draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
        let t = b.target?;
        Some(PathElement::new(
            vec![(t, y(i) + 0.05), (t, y(i) + 0.95)],
            BLACK.stroke_width(2),
        ))
    }))?;
    // Parity line.
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, 0.0), (1.0, n as f64)],
        BLACK.mix(0.5).stroke_width(1),
    )))?;
    // Value labels right of each bar, row labels in the left margin.
    let font = ("sans-serif", 13).into_font();
    for (i, b) in bars.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(b.value.max(lo), y(i) + 0.5));
        let text = if b.value > 0.0 {
            format!("{:.2}x", b.value)
        } else {
            "0 (none)".to_string()
        };
        root.draw(&Text::new(text, (px + 4, py - 7), font.clone()))?;
        let (_, ly) = chart.backend_coord(&(lo, y(i) + 0.5));
        root.draw(&Text::new(b.label.clone(), (8, ly - 7), font.clone()))?;
    }
    // Legend.
    let legend = ("sans-serif", 12).into_font();
    let ly = h as i32 - 18;
    for (j, (c, t)) in [
        (PASS, "target met"),
        (MISS, "target missed"),
        (INFO, "no target"),
    ]
    .into_iter()
    .enumerate()
    {
        let x = 8 + 140 * j as i32;
        root.draw(&Rectangle::new([(x, ly - 5), (x + 14, ly + 7)], c.filled()))?;
        root.draw(&Text::new(t, (x + 20, ly - 5), legend.clone()))?;
    }
    root.draw(&Text::new(
        "black tick = target",
        (8 + 140 * 3, ly - 5),
        legend,
    ))?;
    root.present()?;
    Ok(())
}
