//! PNG figures drawn with `plotters` (its bitmap backend) in DejaVu Sans, which the `dejavu`
//! crate embeds, so every figure draws offline: line charts (figure 4.8's GELU/ReLU curves,
//! figure 5.12's loss curves with tokens seen on a top axis), bar charts and histograms,
//! heatmaps, and grids of titled panels.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, ensure, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// One curve: points `(xs[i], ys[i])` joined in order, named in the legend.
pub struct Series<'a> {
    pub xs: &'a [f64],
    pub ys: &'a [f64],
    pub color: [u8; 3],
    pub label: &'a str,
}

/// Matplotlib's "tab10" colours, for up to eight series.
pub const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

/// A second x axis along the top edge, linear in the bottom one: it reads `from` where the
/// data's smallest x is and `to` where its largest x is (figure 5.12's "Tokens seen").
pub struct TopAxis<'a> {
    pub label: &'a str,
    pub from: f64,
    pub to: f64,
}

/// A line chart and its labels.
pub struct Chart<'a> {
    pub series: Vec<Series<'a>>,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub top_axis: Option<TopAxis<'a>>,
    pub width: usize,
    pub height: usize,
}

/// One set of bars of a [`Bars`] chart: a value per category, in one colour.
pub struct BarSeries<'a> {
    pub values: &'a [f64],
    pub color: [u8; 3],
    pub label: &'a str,
}

/// A bar chart: for each category, one bar per series side by side (a histogram when the
/// categories are bins or token ids).
pub struct Bars<'a> {
    pub categories: Vec<String>,
    pub series: Vec<BarSeries<'a>>,
    pub x_label: &'a str,
    pub y_label: &'a str,
}

/// A matrix drawn as coloured cells (viridis, from the smallest value to the largest), row 0
/// at the top, with the values printed in the cells when `annotate` is set.
pub struct Heatmap<'a> {
    pub values: &'a [Vec<f64>],
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub annotate: bool,
    /// Names of the rows and of the columns, the same along both axes (the tokens of an
    /// attention matrix; the column names are written vertically). `None`: their indices,
    /// every `n / 8`-th when there are more than 24.
    pub tick_labels: Option<&'a [String]>,
}

/// Points coloured by a value (viridis), the value's two ends named in the legend (PCA
/// projections coloured by position).
pub struct Scatter<'a> {
    pub xs: &'a [f64],
    pub ys: &'a [f64],
    pub values: &'a [f64],
    /// What the colour shows ("position").
    pub value_label: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
}

/// The drawing surface every figure draws on.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Anything that can draw itself on part of a PNG.
pub trait Figure {
    fn draw(&self, area: &Area) -> Result<()>;
}

const FONT: &str = "sans-serif";
const TEXT: RGBColor = RGBColor(40, 40, 40);

/// Registers the bundled DejaVu Sans as plotters' "sans-serif" (once per process).
fn register_bundled_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let valid = register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok();
        assert!(valid, "the bundled DejaVu Sans parses");
    });
}

/// Text in the bundled font, `size` pixels high, in the text colour.
fn text(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&TEXT)
}

/// The series' legend at `position`, on a translucent white box.
fn draw_legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(text(15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(drawing_error)
}

fn color([r, g, b]: [u8; 3]) -> RGBColor {
    RGBColor(r, g, b)
}

fn drawing_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the figure: {error}")
}

/// The grid and axes of a chart with numbers on both axes: 6 ticks along x, `y_ticks` along y,
/// compact tick labels, the axes named.
fn draw_numeric_mesh<'a>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    x_label: &str,
    y_label: &str,
    y_ticks: usize,
) -> Result<()> {
    chart
        .configure_mesh()
        .x_labels(6)
        .y_labels(y_ticks)
        .x_label_formatter(&compact)
        .y_label_formatter(&compact)
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(text(15))
        .axis_desc_style(text(17))
        .light_line_style(WHITE)
        .draw()
        .map_err(drawing_error)
}

/// A range that shows every value with a 5 % margin (a unit margin around a single value).
fn padded(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 1.0 };
    lo - pad..hi + pad
}

/// A tick label: thousands as "k" (46k rather than 46000), otherwise up to three decimals.
fn compact(value: &f64) -> String {
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    };
    if value.abs() >= 1000.0 {
        trim(format!("{:.1}", value / 1000.0)) + "k"
    } else {
        let text = trim(format!("{value:.3}"));
        if text == "-0" {
            "0".into()
        } else {
            text
        }
    }
}

/// Writes `figure` as a `width x height` PNG at `path`, creating its folder.
pub fn write_png(figure: &dyn Figure, path: &Path, (width, height): (usize, usize)) -> Result<()> {
    write_with(path, (width, height), |area| figure.draw(area))
}

/// Writes `panels` as a grid of `columns` titled figures, each `panel_size` pixels.
pub fn write_grid(
    path: &Path,
    panels: &[(&str, &dyn Figure)],
    columns: usize,
    panel_size: (usize, usize),
) -> Result<()> {
    ensure!(!panels.is_empty() && columns > 0, "a grid needs at least one panel and one column");
    let rows = panels.len().div_ceil(columns);
    let size = (panel_size.0 * columns, panel_size.1 * rows);
    write_with(path, size, |area| {
        for (cell, (title, figure)) in area.split_evenly((rows, columns)).iter().zip(panels) {
            let inner = cell.titled(title, text(20)).map_err(drawing_error)?;
            figure.draw(&inner)?;
        }
        Ok(())
    })
}

fn write_with(path: &Path, (width, height): (usize, usize), draw: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    ensure!(width >= 200 && height >= 150, "a figure must be at least 200 x 150 pixels");
    register_bundled_font();
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let area = BitMapBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    area.fill(&WHITE).map_err(drawing_error)?;
    draw(&area)?;
    area.present().map_err(drawing_error).with_context(|| format!("writing {}", path.display()))
}

impl Chart<'_> {
    /// Writes the chart as a `width x height` PNG at `path`.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        write_png(self, path, (self.width, self.height))
    }

    /// The legend goes in the upper corner that the curves' upper half visits least.
    fn legend_position(&self, x: &std::ops::Range<f64>, y: &std::ops::Range<f64>) -> SeriesLabelPosition {
        let (mid_x, upper_y) = ((x.start + x.end) / 2.0, y.start + 0.6 * (y.end - y.start));
        let points = || self.series.iter().flat_map(|s| s.xs.iter().zip(s.ys)).filter(|(_, &y)| y > upper_y);
        let (left, right) =
            (points().filter(|(&x, _)| x < mid_x).count(), points().filter(|(&x, _)| x >= mid_x).count());
        if left < right {
            SeriesLabelPosition::UpperLeft
        } else {
            SeriesLabelPosition::UpperRight
        }
    }
}

impl Figure for Chart<'_> {
    fn draw(&self, area: &Area) -> Result<()> {
        ensure!(!self.series.is_empty(), "a chart needs at least one series");
        ensure!(
            self.series.iter().all(|s| s.xs.len() == s.ys.len() && !s.xs.is_empty()),
            "every series needs as many xs as ys"
        );
        // Points with a non-finite coordinate (a diverged loss, say) are left out.
        let finite = |s: &Series| {
            s.xs.iter()
                .copied()
                .zip(s.ys.iter().copied())
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect::<Vec<_>>()
        };
        let points: Vec<Vec<(f64, f64)>> = self.series.iter().map(finite).collect();
        ensure!(points.iter().any(|p| !p.is_empty()), "a chart needs at least one finite point");
        let xs = || points.iter().flatten().map(|p| p.0);
        let x_range = padded(xs());
        let y_range = padded(points.iter().flatten().map(|p| p.1));
        let mut builder = ChartBuilder::on(area);
        builder.margin(12).x_label_area_size(48).y_label_area_size(64);
        if self.top_axis.is_some() {
            builder.top_x_label_area_size(48);
        }
        // The top axis maps the data's x range linearly onto from..to (as a secondary
        // coordinate system, which must exist before the primary mesh claims the top edge).
        let (data_lo, data_hi) = xs().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let top_range = self.top_axis.as_ref().map_or(0.0..1.0, |top| {
            let scale = if data_hi > data_lo { (top.to - top.from) / (data_hi - data_lo) } else { 0.0 };
            let (lo, hi) = (top.from + (x_range.start - data_lo) * scale, top.from + (x_range.end - data_lo) * scale);
            if hi > lo {
                lo..hi
            } else {
                padded([lo].into_iter())
            }
        });
        let mut chart = builder
            .build_cartesian_2d(x_range.clone(), y_range.clone())
            .map_err(drawing_error)?
            .set_secondary_coord(top_range, y_range.clone());
        draw_numeric_mesh(&mut chart, self.x_label, self.y_label, 8)?;
        if let Some(top) = &self.top_axis {
            chart
                .configure_secondary_axes()
                .x_labels(5)
                .x_label_formatter(&compact)
                .x_desc(top.label)
                .label_style(text(15))
                .axis_desc_style(text(17))
                .draw()
                .map_err(drawing_error)?;
        }
        for (s, points) in self.series.iter().zip(points.iter()) {
            let style = color(s.color).stroke_width(3);
            // Few points (evaluations, lengths) are marked, so a lone point shows too.
            let marker = if points.len() <= 16 { 5 } else { 0 };
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style.filled()).point_size(marker))
                .map_err(drawing_error)?
                .label(s.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
        draw_legend(&mut chart, self.legend_position(&x_range, &y_range))?;
        Ok(())
    }
}

impl Figure for Bars<'_> {
    fn draw(&self, area: &Area) -> Result<()> {
        let n = self.categories.len() as i32;
        ensure!(n > 0 && !self.series.is_empty(), "a bar chart needs categories and at least one series");
        ensure!(
            self.series.iter().all(|s| s.values.len() == self.categories.len()),
            "every bar series needs one value per category"
        );
        // In half-bar units: each category holds its bars plus one bar's gap, its label at
        // the centre.
        let groups = self.series.len() as i32;
        let slot = 2 * (groups + 1);
        let top = self.series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max);
        let y_max = if top > 0.0 { top * 1.45 } else { 1.0 }; // room for the legend
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0..n * slot, 0.0..y_max)
            .map_err(drawing_error)?;
        let label = |x: &i32| {
            let centre = x - (groups + 1);
            if centre >= 0 && centre % slot == 0 {
                self.categories[(centre / slot) as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels((n * slot + 1) as usize)
            .x_label_formatter(&label)
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .label_style(text(14))
            .axis_desc_style(text(17))
            .light_line_style(WHITE)
            .draw()
            .map_err(drawing_error)?;
        for (g, s) in self.series.iter().enumerate() {
            let fill = color(s.color).filled();
            let bars = s.values.iter().enumerate().map(move |(c, &v)| {
                let left = c as i32 * slot + 1 + 2 * g as i32;
                Rectangle::new([(left, 0.0), (left + 2, v)], fill)
            });
            chart
                .draw_series(bars)
                .map_err(drawing_error)?
                .label(s.label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], fill));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}

impl Figure for Heatmap<'_> {
    fn draw(&self, area: &Area) -> Result<()> {
        let rows = self.values.len() as i32;
        let cols = self.values.first().map_or(0, Vec::len) as i32;
        ensure!(rows > 0 && cols > 0, "a heatmap needs at least one cell");
        ensure!(self.values.iter().all(|row| row.len() == cols as usize), "every heatmap row needs the same length");
        let finite = || self.values.iter().flatten().copied().filter(|v| v.is_finite());
        let lo = finite().fold(f64::MAX, f64::min);
        let hi = finite().fold(f64::MIN, f64::max).max(lo + f64::EPSILON);
        if let Some(names) = self.tick_labels {
            ensure!(
                names.len() == rows as usize && names.len() == cols as usize,
                "a heatmap's tick labels name every row and column"
            );
        }
        // Room for the longest name (vertical along the x axis).
        let name_room = self.tick_labels.map_or(0, |names| names.iter().map(|n| n.chars().count()).max().unwrap_or(0));
        let label_room = (48 + 7 * name_room as u32).min(160);
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(label_room)
            .y_label_area_size(label_room)
            .build_cartesian_2d((0..cols - 1).into_segmented(), (0..rows - 1).into_segmented()) // n + 1 segments for 0..n
            .map_err(drawing_error)?;
        // Row 0 at the top (plotters counts y upwards); labels at the cells' centres.
        let label = |value: &SegmentValue<i32>, flip: bool, n: i32| {
            let SegmentValue::CenterOf(i) = *value else { return String::new() };
            let index = if flip { rows - 1 - i } else { i };
            match self.tick_labels {
                Some(names) => names[index as usize].clone(),
                None if n <= 24 || index % (n / 8) == 0 => index.to_string(),
                None => String::new(),
            }
        };
        let col_label = |v: &SegmentValue<i32>| label(v, false, cols);
        let row_label = |v: &SegmentValue<i32>| label(v, true, rows);
        let column_style =
            if self.tick_labels.is_some() { text(13).transform(FontTransform::Rotate90) } else { text(13) };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(cols as usize)
            .y_labels(rows as usize)
            .x_label_formatter(&col_label)
            .y_label_formatter(&row_label)
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .label_style(text(13))
            .x_label_style(column_style)
            .axis_desc_style(text(17))
            .draw()
            .map_err(drawing_error)?;
        let cells = (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c)));
        chart
            .draw_series(cells.clone().map(|(r, c)| {
                let v = self.values[r as usize][c as usize];
                let fill =
                    if v.is_finite() { ViridisRGB::get_color_normalized(v, lo, hi) } else { RGBColor(230, 230, 230) };
                let y = rows - 1 - r;
                let corners = [
                    (SegmentValue::Exact(c), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(c + 1), SegmentValue::Exact(y + 1)),
                ];
                Rectangle::new(corners, fill.filled())
            }))
            .map_err(drawing_error)?;
        if self.annotate {
            let size = (area.dim_in_pixel().0 as i32 / (4 * cols)).clamp(8, 16);
            let centred = Pos::new(HPos::Center, VPos::Center);
            chart
                .draw_series(cells.map(|(r, c)| {
                    let v = self.values[r as usize][c as usize];
                    let ink = if v.is_finite() && (v - lo) / (hi - lo) > 0.6 { BLACK } else { WHITE };
                    let ink = if v.is_finite() { ink } else { TEXT };
                    let text = if v.is_finite() { format!("{v:.2}") } else { "X".to_string() };
                    let at = (SegmentValue::CenterOf(c), SegmentValue::CenterOf(rows - 1 - r));
                    Text::new(text, at, (FONT, size).into_font().color(&ink).pos(centred))
                }))
                .map_err(drawing_error)?;
        }
        Ok(())
    }
}

impl Figure for Scatter<'_> {
    fn draw(&self, area: &Area) -> Result<()> {
        let n = self.xs.len();
        ensure!(n > 0 && self.ys.len() == n && self.values.len() == n, "a scatter needs as many xs, ys and values");
        let (lo, hi) = self.values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let hi = hi.max(lo + f64::EPSILON);
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(padded(self.xs.iter().copied()), padded(self.ys.iter().copied()))
            .map_err(drawing_error)?;
        draw_numeric_mesh(&mut chart, self.x_label, self.y_label, 6)?;
        let points = (0..n).map(|i| {
            Circle::new((self.xs[i], self.ys[i]), 4, ViridisRGB::get_color_normalized(self.values[i], lo, hi).filled())
        });
        chart.draw_series(points).map_err(drawing_error)?;
        // The legend names the colours of the two ends of the value range.
        for end in [lo, hi] {
            let fill = ViridisRGB::get_color_normalized(end, lo, hi).filled();
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(drawing_error)?
                .label(format!("{} {}", self.value_label, compact(&end)))
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, fill));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn read(path: &Path) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::BufReader::new(File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf)
    }

    /// Dark grey-ish pixels: text and axes (antialiased text mixes with the white).
    fn ink(buf: &[u8]) -> usize {
        buf.chunks(3)
            .filter(|p| p.iter().all(|&v| v < 120) && p.iter().max().unwrap() - p.iter().min().unwrap() < 20)
            .count()
    }

    #[test]
    fn writes_a_line_chart_with_curves_text_and_a_top_axis() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/chart.png");
        let xs: Vec<f64> = (0..=20).map(|i| i as f64 / 10.0 - 1.0).collect();
        let ys: Vec<f64> = xs.iter().map(|x| x * x).collect();
        let chart = |ys: &[f64], top: bool| {
            Chart {
                series: vec![Series { xs: &xs, ys, color: PALETTE[0], label: "Loss" }],
                x_label: "Epochs",
                y_label: "Loss",
                top_axis: top.then_some(TopAxis { label: "Tokens seen", from: 0.0, to: 46080.0 }),
                width: 400,
                height: 300,
            }
            .write_png(&path)
        };
        chart(&ys, false).unwrap();
        let (w, h, plain) = read(&path);
        assert_eq!((w, h), (400, 300));
        assert!(plain.chunks(3).any(|p| p == PALETTE[0]), "the curve's colour is drawn");
        assert!(ink(&plain) > 200, "labels are drawn");
        chart(&ys, true).unwrap();
        let (_, _, with_top) = read(&path);
        assert!(ink(&with_top) > ink(&plain), "the top axis adds its labels");
        assert!(chart(&ys[..3], false).is_err());
        // A single point (one evaluation) still makes a chart.
        Chart {
            series: vec![Series { xs: &[0.0], ys: &[2.5], color: PALETTE[0], label: "Loss" }],
            x_label: "Epochs",
            y_label: "Loss",
            top_axis: Some(TopAxis { label: "Tokens seen", from: 512.0, to: 512.0 }),
            width: 400,
            height: 300,
        }
        .write_png(&path)
        .unwrap();
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(compact(&46080.0), "46.1k");
        assert_eq!(compact(&5000.0), "5k");
        assert_eq!(compact(&0.25), "0.25");
        assert_eq!(compact(&-0.0001), "0");
        assert_eq!(compact(&3.0), "3");
    }

    #[test]
    fn draws_bars_heatmaps_and_grids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let bars = Bars {
            categories: (0..4).map(|i| format!("t{i}")).collect(),
            series: vec![
                BarSeries { values: &[0.1, 0.2, 0.3, 0.4], color: PALETTE[1], label: "sampled" },
                BarSeries { values: &[0.15, 0.2, 0.25, 0.4], color: PALETTE[2], label: "target" },
            ],
            x_label: "token",
            y_label: "share",
        };
        let values = vec![vec![1.0, f64::NEG_INFINITY], vec![0.4, 0.6]];
        let tokens = ["The".to_string(), "cat".to_string()];
        let heatmap =
            Heatmap { values: &values, x_label: "key", y_label: "query", annotate: true, tick_labels: Some(&tokens) };
        let (xs, ys) = ([0.0, 1.0, 2.0], [1.0, -1.0, 0.5]);
        let scatter =
            Scatter { xs: &xs, ys: &ys, values: &xs, value_label: "position", x_label: "PC 1", y_label: "PC 2" };
        write_grid(&path, &[("bars", &bars), ("weights", &heatmap), ("pca", &scatter)], 3, (320, 240)).unwrap();
        let (w, h, pixels) = read(&path);
        assert_eq!((w, h), (960, 240));
        assert!(pixels.chunks(3).any(|p| p == PALETTE[1]) && pixels.chunks(3).any(|p| p == PALETTE[2]));
        let top_cell = ViridisRGB::get_color_normalized(1.0, 0.4, 1.0);
        assert!(pixels.chunks(3).any(|p| p == [top_cell.0, top_cell.1, top_cell.2]), "the largest cell is yellow");
        let ragged = vec![vec![1.0], vec![1.0, 2.0]];
        let bad = Heatmap { values: &ragged, x_label: "", y_label: "", annotate: false, tick_labels: None };
        assert!(write_png(&bad, &path, (300, 200)).is_err());
        let unnamed = Heatmap { tick_labels: Some(&tokens[..1]), ..heatmap };
        assert!(write_png(&unnamed, &path, (300, 200)).is_err(), "a label for every row");
        let scatter = Scatter { values: &xs[..2], ..scatter };
        assert!(write_png(&scatter, &path, (300, 200)).is_err(), "a value for every point");
        let short = Bars {
            categories: vec!["a".into()],
            series: vec![BarSeries { values: &[], color: PALETTE[0], label: "" }],
            x_label: "",
            y_label: "",
        };
        assert!(write_png(&short, &path, (300, 200)).is_err());
    }
}
