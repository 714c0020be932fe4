//! Line charts as SVG files, drawn with `plotters`' SVG back end.
//!
//! A [`Figure`] is one SVG file of one or more [`Panel`]s side by side; a panel is a
//! chart of line series with linear or logarithmic axes, optional categorical tick
//! labels and optional vertical marks (the crash timeline's kill, detection and
//! re-replication). What goes into each figure is decided in `figures`; this module
//! only draws. Text is left to the SVG viewer's sans-serif font (no font files are
//! read), so drawing needs nothing but the data.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::Color as _;

/// Colours of the series, in the order [`Color`] names them (a colour-blind-friendly
/// palette).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // green
    RGBColor(204, 121, 167), // purple
    RGBColor(213, 94, 0),    // vermilion
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(110, 110, 110), // grey
    RGBColor(140, 100, 40),  // brown
];

/// A series' colour, by name so that one workload keeps its colour in every figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Color {
    Blue,
    Orange,
    Green,
    Purple,
    Vermilion,
    Sky,
    Grey,
    Brown,
}

impl Color {
    fn rgb(self) -> RGBColor {
        PALETTE[self as usize]
    }
}

/// How an axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    Linear,
    /// Logarithmic: every value on it must be above zero.
    Log,
}

/// One axis of a panel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    pub label: String,
    pub scale: Scale,
    /// Labels at given positions instead of numbers (e.g. `0 ms`, `10 ms` at 0, 1),
    /// for settings that are categories more than quantities.
    pub ticks: Vec<(f64, String)>,
    /// Shown range; derived from the data when `None`.
    pub range: Option<(f64, f64)>,
}

impl Axis {
    pub fn linear(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            scale: Scale::Linear,
            ticks: Vec::new(),
            range: None,
        }
    }

    pub fn log(label: impl Into<String>) -> Self {
        Self {
            scale: Scale::Log,
            ..Self::linear(label)
        }
    }

    /// A linear axis with one labelled position per category, at 0, 1, 2, …
    pub fn categories(label: impl Into<String>, names: &[String]) -> Self {
        Self {
            ticks: names
                .iter()
                .enumerate()
                .map(|(i, name)| (i as f64, name.clone()))
                .collect(),
            range: Some((-0.5, names.len() as f64 - 0.5)),
            ..Self::linear(label)
        }
    }

    pub fn with_range(mut self, low: f64, high: f64) -> Self {
        self.range = Some((low, high));
        self
    }

    /// The range to show `values` on: the given one, or the data's with some room
    /// (from 0 for a linear axis of values that are all positive).
    fn shown(&self, values: impl Iterator<Item = f64> + Clone) -> anyhow::Result<(f64, f64)> {
        if let Some(range) = self.range {
            return Ok(range);
        }
        let finite = values.filter(|v| v.is_finite());
        let usable: Vec<f64> = match self.scale {
            Scale::Linear => finite.collect(),
            Scale::Log => finite.filter(|v| *v > 0.0).collect(),
        };
        let (Some(low), Some(high)) = (
            usable.iter().copied().reduce(f64::min),
            usable.iter().copied().reduce(f64::max),
        ) else {
            bail!("no value to show on the axis {:?}", self.label);
        };
        Ok(match self.scale {
            Scale::Log => (low / 1.5, high * 1.5),
            Scale::Linear if low >= 0.0 => (0.0, if high > 0.0 { high * 1.1 } else { 1.0 }),
            Scale::Linear => {
                let room = ((high - low) * 0.05).max(1e-9);
                (low - room, high + room)
            }
        })
    }
}

/// How a series' line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    Solid,
    Dashed,
}

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// Its entry in the legend.
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: Color,
    pub line: Line,
    /// A dot at every point (for few points; a timeline has too many).
    pub markers: bool,
}

impl Series {
    pub fn new(label: impl Into<String>, color: Color, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
            color,
            line: Line::Solid,
            markers: true,
        }
    }

    pub fn dashed(mut self) -> Self {
        self.line = Line::Dashed;
        self
    }

    pub fn without_markers(mut self) -> Self {
        self.markers = false;
        self
    }
}

/// A vertical line across a panel at `x`, labelled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mark {
    pub x: f64,
    pub label: String,
    pub color: Color,
}

/// Where a panel's legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Legend {
    UpperLeft,
    UpperRight,
    LowerRight,
}

/// One chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Panel {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
    pub legend: Legend,
    /// The top of a y range derived from the data is multiplied by this, to leave
    /// room for the legend above the lines (1: none).
    pub headroom: f64,
}

impl Panel {
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Self {
            title: title.into(),
            x,
            y,
            series: Vec::new(),
            marks: Vec::new(),
            legend: Legend::UpperLeft,
            headroom: 1.0,
        }
    }

    /// Adds `series` unless it has no point.
    pub fn push(&mut self, series: Series) {
        if !series.points.is_empty() {
            self.series.push(series);
        }
    }

    /// The highest y of any series (0 without any).
    pub fn max_y(&self) -> f64 {
        self.points().map(|(_, y)| y).fold(0.0, f64::max)
    }

    fn points(&self) -> impl Iterator<Item = (f64, f64)> + Clone + '_ {
        self.series.iter().flat_map(|s| s.points.iter().copied())
    }
}

/// One SVG file: panels side by side, each `panel_width` × `height` pixels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Figure {
    /// File name under the image directory, e.g. `storage-throughput.svg`.
    pub file: String,
    pub panels: Vec<Panel>,
    pub panel_width: u32,
    pub height: u32,
}

impl Figure {
    pub fn new(file: impl Into<String>, panels: Vec<Panel>) -> Self {
        Self {
            file: file.into(),
            panels,
            panel_width: 640,
            height: 420,
        }
    }

    /// True when no panel has anything to draw.
    pub fn is_empty(&self) -> bool {
        self.panels.iter().all(|panel| panel.series.is_empty())
    }

    /// Draws the figure into `dir/<file>`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        if self.is_empty() {
            bail!("{}: nothing to draw", self.file);
        }
        let path = dir.join(&self.file);
        let panels: Vec<&Panel> = self
            .panels
            .iter()
            .filter(|p| !p.series.is_empty())
            .collect();
        let width = self.panel_width * panels.len() as u32;
        let backend = SVGBackend::new(&path, (width, self.height));
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let areas = root.split_evenly((1, panels.len()));
        for (area, panel) in areas.iter().zip(panels) {
            draw(area, panel).with_context(|| format!("cannot draw {:?}", panel.title))?;
        }
        root.present()
            .map_err(plot_error)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A plotters error as an `anyhow` one (plotters' errors borrow their back end's
/// error type, which is not `Sync` for every back end).
fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{error}")
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws one panel, choosing the coordinate types its scales need.
fn draw(area: &Area<'_>, panel: &Panel) -> anyhow::Result<()> {
    let x = panel.x.shown(panel.points().map(|(x, _)| x))?;
    let mut y = panel.y.shown(panel.points().map(|(_, y)| y))?;
    if panel.y.range.is_none() {
        y.1 *= panel.headroom;
        if panel.y.scale == Scale::Linear {
            // Room above the data for the marks' labels.
            y.1 *= 1.0 + 0.08 * panel.marks.len() as f64;
        }
    }
    let log = |(low, high): (f64, f64)| {
        let (labelled, grid) = log_ticks(low, high);
        (low..high)
            .log_scale()
            .with_key_points(labelled)
            .with_light_points(grid)
    };
    match (panel.x.scale, panel.y.scale) {
        (Scale::Linear, Scale::Linear) => draw_in(area, panel, x.0..x.1, y.0..y.1),
        (Scale::Linear, Scale::Log) => draw_in(area, panel, x.0..x.1, log(y)),
        (Scale::Log, Scale::Linear) => draw_in(area, panel, log(x), y.0..y.1),
        (Scale::Log, Scale::Log) => draw_in(area, panel, log(x), log(y)),
    }
}

/// Ticks of a logarithmic axis from `low` to `high`: the labelled ones (1, 2 and
/// 5 × 10ⁿ, or every whole mantissa when the range is too short for three of those)
/// and the grid lines (every whole mantissa).
fn log_ticks(low: f64, high: f64) -> (Vec<f64>, Vec<f64>) {
    let mut every = Vec::new();
    if low > 0.0 && high > low {
        let mut decade = 10f64.powf(low.log10().floor());
        while decade <= high {
            for mantissa in 1..=9 {
                let value = decade * f64::from(mantissa);
                if (low..=high).contains(&value) {
                    every.push((mantissa, value));
                }
            }
            decade *= 10.0;
        }
    }
    let grid: Vec<f64> = every.iter().map(|&(_, value)| value).collect();
    let round: Vec<f64> = every
        .iter()
        .filter(|(mantissa, _)| [1, 2, 5].contains(mantissa))
        .map(|&(_, value)| value)
        .collect();
    let labelled = if round.len() >= 3 {
        round
    } else {
        grid.clone()
    };
    (labelled, grid)
}

/// Draws one panel on the given coordinates.
fn draw_in<X, Y>(area: &Area<'_>, panel: &Panel, x: X, y: Y) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(plot_error)?;
    let x_format = |value: &f64| tick_label(&panel.x, *value);
    let y_format = |value: &f64| tick_label(&panel.y, *value);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(panel.x.label.as_str())
        .y_desc(panel.y.label.as_str())
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235));
    if panel.x.ticks.is_empty() {
        mesh.x_labels(8);
    } else {
        // Enough candidate positions that every category's integer is among them;
        // the formatter blanks the others.
        mesh.x_labels(4 * panel.x.ticks.len() + 1).disable_x_mesh();
    }
    mesh.draw().map_err(plot_error)?;

    let (y_low, y_high) = {
        let range = chart.y_range();
        (range.start, range.end)
    };
    for (index, mark) in panel.marks.iter().enumerate() {
        let color = mark.color.rgb();
        chart
            .draw_series(DashedLineSeries::new(
                [(mark.x, y_low), (mark.x, y_high)],
                6,
                4,
                color.stroke_width(2),
            ))
            .map_err(plot_error)?;
        // Labels stacked from the top, so that close marks do not overlap.
        let step = (y_high - y_low) * 0.065;
        let at = (mark.x, y_high - step * (index as f64 + 0.3));
        let font = ("sans-serif", 12).into_font().color(&color);
        chart
            .draw_series(std::iter::once(
                EmptyElement::at(at) + Text::new(mark.label.clone(), (4, 0), font),
            ))
            .map_err(plot_error)?;
    }

    for series in &panel.series {
        let color = series.color.rgb();
        let style = color.stroke_width(2);
        let points = series.points.iter().copied();
        let drawn = match series.line {
            Line::Solid => chart
                .draw_series(LineSeries::new(points, style))
                .map_err(plot_error)?,
            Line::Dashed => chart
                .draw_series(DashedLineSeries::new(points, 7, 4, style))
                .map_err(plot_error)?,
        };
        let drawn = drawn.label(series.label.as_str());
        match series.line {
            Line::Solid => drawn.legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            }),
            Line::Dashed => drawn.legend(move |(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 20, y)], 5, 3, color.stroke_width(2))
            }),
        };
        if series.markers {
            chart
                .draw_series(
                    series
                        .points
                        .iter()
                        .map(|&point| Circle::new(point, 3, color.filled())),
                )
                .map_err(plot_error)?;
        }
    }
    let position = match panel.legend {
        Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
        Legend::UpperRight => SeriesLabelPosition::UpperRight,
        Legend::LowerRight => SeriesLabelPosition::LowerRight,
    };
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// The label of a tick at `value`: the category there, or the number, short.
fn tick_label(axis: &Axis, value: f64) -> String {
    if axis.ticks.is_empty() {
        return short_number(value);
    }
    axis.ticks
        .iter()
        .find(|(at, _)| (at - value).abs() < 1e-6)
        .map(|(_, name)| name.clone())
        .unwrap_or_default()
}

/// A number in few characters: `950`, `12k`, `1.5k`, `2.5M`, `0.25`.
pub(crate) fn short_number(value: f64) -> String {
    let magnitude = value.abs();
    let (scaled, suffix) = if magnitude >= 1e6 {
        (value / 1e6, "M")
    } else if magnitude >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = if scaled.abs() >= 100.0 || scaled.fract().abs() < 1e-9 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers_use_k_and_m_and_drop_zeros() {
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(950.0), "950");
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(12_000.0), "12k");
        assert_eq!(short_number(125_000.0), "125k");
        assert_eq!(short_number(2_500_000.0), "2.5M");
        assert_eq!(short_number(-3000.0), "-3k");
    }

    #[test]
    fn ranges_come_from_the_data_unless_given() {
        let values = [2.0, 40.0, 10.0];
        let linear = Axis::linear("x").shown(values.iter().copied()).unwrap();
        assert_eq!(linear, (0.0, 44.0));
        let log = Axis::log("x").shown([0.0, 3.0, 30.0].into_iter()).unwrap();
        assert_eq!(log, (2.0, 45.0));
        let given = Axis::linear("x").with_range(-1.0, 1.0);
        assert_eq!(given.shown(values.iter().copied()).unwrap(), (-1.0, 1.0));
        assert!(Axis::log("x").shown([0.0].into_iter()).is_err());
    }

    #[test]
    fn category_ticks_label_their_positions_only() {
        let axis = Axis::categories("delay", &["0 ms".to_string(), "100 ms".to_string()]);
        assert_eq!(axis.range, Some((-0.5, 1.5)));
        assert_eq!(tick_label(&axis, 1.0), "100 ms");
        assert_eq!(tick_label(&axis, 0.5), "");
        assert_eq!(tick_label(&Axis::linear("x"), 2000.0), "2k");
    }

    #[test]
    fn log_axes_label_one_two_five_unless_the_range_is_short() {
        let (labelled, grid) = log_ticks(60.0, 1350.0);
        assert_eq!(labelled, vec![100.0, 200.0, 500.0, 1000.0]);
        assert_eq!(grid.first(), Some(&60.0));
        assert_eq!(grid.len(), 4 + 9 + 1);
        let (labelled, _) = log_ticks(15_000.0, 45_000.0);
        assert_eq!(labelled, vec![20_000.0, 30_000.0, 40_000.0]);
        assert_eq!(log_ticks(0.0, 10.0), (Vec::new(), Vec::new()));
    }

    fn sample_figure() -> Figure {
        let mut linear = Panel::new("throughput", Axis::log("in flight"), Axis::linear("ops/s"));
        linear.push(Series::new(
            "read <&> write",
            Color::Blue,
            vec![(1.0, 100.0), (4.0, 300.0), (16.0, 350.0)],
        ));
        linear.push(Series::new("ping", Color::Grey, vec![(1.0, 120.0), (16.0, 400.0)]).dashed());
        linear.push(Series::new("empty", Color::Green, Vec::new()));
        let mut timeline = Panel::new("timeline", Axis::linear("s"), Axis::linear("ops"));
        timeline.push(
            Series::new(
                "ok",
                Color::Green,
                vec![(0.0, 50.0), (0.1, 10.0), (0.2, 48.0)],
            )
            .without_markers(),
        );
        timeline.marks.push(Mark {
            x: 0.05,
            label: "kill s2".to_string(),
            color: Color::Vermilion,
        });
        let mut categories = Panel::new(
            "settings",
            Axis::categories("delay", &["0 ms".to_string(), "100 ms".to_string()]),
            Axis::log("ops/s"),
        );
        categories.legend = Legend::LowerRight;
        categories.push(Series::new(
            "write",
            Color::Orange,
            vec![(0.0, 900.0), (1.0, 90.0)],
        ));
        Figure::new("sample.svg", vec![linear, timeline, categories])
    }

    #[test]
    fn a_figure_is_written_as_svg_with_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let figure = sample_figure();
        assert_eq!(
            figure.panels[0].series.len(),
            2,
            "empty series are left out"
        );
        figure.write(dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("sample.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("width=\"1920\""), "three panels of 640 pixels");
        for text in [
            "throughput",
            "read &lt;&amp;&gt; write",
            "kill s2",
            "100 ms",
            "ops/s",
        ] {
            assert!(svg.contains(text), "no {text:?} in the SVG");
        }
        assert!(svg.contains("<polyline"), "no line drawn");
    }

    #[test]
    fn an_empty_figure_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let figure = Figure::new(
            "empty.svg",
            vec![Panel::new("t", Axis::linear("x"), Axis::linear("y"))],
        );
        assert!(figure.is_empty());
        assert!(figure.write(dir.path()).is_err());
        assert!(!dir.path().join("empty.svg").exists());
    }
}
