//! PNG charts for the report, drawn with `plotters` into bitmaps.
//!
//! Text is rendered with the DejaVu Sans font compiled into the binary
//! (`container/fonts/`, Bitstream Vera licence, which allows redistribution), so a machine
//! without any system font draws the same labels. Two shapes are enough: lines over time
//! with the faults marked, and bars per setting.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

static FONT: &[u8] = include_bytes!("../../../fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();
const SIZE: (u32, u32) = (960, 440);

/// A chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {message}")]
pub struct PlotError {
    /// The PNG being drawn.
    pub(crate) path: String,
    /// What failed.
    pub(crate) message: String,
}

fn register_font() {
    REGISTER.call_once(|| {
        // The font is a constant of this crate; a failure here is a build mistake.
        let registered = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
        assert!(registered.is_ok(), "the embedded DejaVu Sans font must parse");
    });
}

/// One named line.
pub(crate) struct Line {
    /// Legend text.
    pub(crate) name: String,
    /// (x, y) points.
    pub(crate) points: Vec<(f64, f64)>,
}

/// Draws `lines` over `0..x_max` seconds with `y_range`, and a dashed vertical line with a
/// label at each of `marks`.
pub(crate) fn lines(
    path: &Path,
    title: &str,
    y_label: &str,
    x_max: f64,
    y_range: (f64, f64),
    lines: &[Line],
    marks: &[(f64, String)],
) -> Result<(), PlotError> {
    register_font();
    let error = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let (y_min, y_max) = y_range;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, y_min..y_max)
        .map_err(|e| error(&e))?;
    chart
        .configure_mesh()
        .x_desc("time since the workload started (s)")
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| error(&e))?;
    for (x, label) in marks {
        let style = BLACK.mix(0.35).stroke_width(1);
        let steps = 40;
        let dash: Vec<PathElement<(f64, f64)>> = (0..steps)
            .step_by(2)
            .map(|i| {
                let from = y_min + (y_max - y_min) * f64::from(i) / f64::from(steps);
                let to = y_min + (y_max - y_min) * f64::from(i + 1) / f64::from(steps);
                PathElement::new(vec![(*x, from), (*x, to)], style)
            })
            .collect();
        chart.draw_series(dash).map_err(|e| error(&e))?;
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                (*x, y_max),
                ("sans-serif", 13).into_font().color(&BLACK.mix(0.7)),
            )))
            .map_err(|e| error(&e))?;
    }
    for (index, line) in lines.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| error(&e))?
            .label(line.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(|e| error(&e))?;
    root.present().map_err(|e| error(&e))?;
    Ok(())
}

/// Draws one bar per entry (`None` is drawn as a hatched full-height bar labelled "none").
pub(crate) fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    entries: &[(String, Option<f64>)],
) -> Result<(), PlotError> {
    register_font();
    let error = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let highest = entries.iter().filter_map(|(_, v)| *v).fold(0.0, f64::max);
    let y_max = if highest > 0.0 { highest * 1.25 } else { 1.0 };
    let count = entries.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..count as f64, 0f64..y_max)
        .map_err(|e| error(&e))?;
    let labels: Vec<String> = entries.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(count * 2 + 1)
        .x_label_formatter(&|x| {
            let index = x.floor() as usize;
            if (x - index as f64 - 0.5).abs() < 0.01 {
                labels.get(index).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| error(&e))?;
    for (index, (_, value)) in entries.iter().enumerate() {
        let left = index as f64 + 0.2;
        let right = index as f64 + 0.8;
        let color = Palette99::pick(index).to_rgba();
        let (top, style, text) = match value {
            Some(v) => (*v, color.filled(), format!("{v:.1} s")),
            None => (y_max * 0.9, color.mix(0.25).filled(), "none".to_owned()),
        };
        chart
            .draw_series(std::iter::once(Rectangle::new([(left, 0.0), (right, top)], style)))
            .map_err(|e| error(&e))?;
        chart
            .draw_series(std::iter::once(Text::new(
                text,
                (left, top + y_max * 0.02),
                ("sans-serif", 14).into_font(),
            )))
            .map_err(|e| error(&e))?;
    }
    root.present().map_err(|e| error(&e))?;
    Ok(())
}
