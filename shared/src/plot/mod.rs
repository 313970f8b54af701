//! PNG line charts, drawn with a small rasteriser: figure 4.8's GELU/ReLU curves, figure
//! 5.12's loss curves (with tokens seen on a second axis), and later chapters' plots. White
//! background, grid, labelled ticks, axis labels, a legend, one coloured polyline per series;
//! text uses a built-in 5 x 7 bitmap font ([`font`]).

mod font;

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{ensure, Context, Result};

/// One curve: points `(xs[i], ys[i])` joined in order, named in the legend.
pub struct Series<'a> {
    pub xs: &'a [f64],
    pub ys: &'a [f64],
    pub color: [u8; 3],
    pub label: &'a str,
}

/// Colours for up to four series, from the common matplotlib palette.
pub const PALETTE: [[u8; 3]; 4] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];

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

const TEXT: [u8; 3] = [40, 40, 40];
const SCALE: i64 = 2;

struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = 3 * (y as usize * self.width + x as usize);
            self.pixels[i..i + 3].copy_from_slice(&color);
        }
    }

    /// A line `thickness` pixels wide (Bresenham, stamped with a square brush).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: [u8; 3], thickness: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for ox in 0..thickness {
                for oy in 0..thickness {
                    self.set(x + ox - thickness / 2, y + oy - thickness / 2, color);
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text with its top-left corner at `(x, y)`; `vertical` runs it upwards from `(x, y)`.
    fn text(&mut self, text: &str, (x, y): (i64, i64), vertical: bool) {
        for (i, c) in text.chars().enumerate() {
            let rows = font::glyph(c);
            let offset = i as i64 * (font::WIDTH + 1) * SCALE;
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..font::WIDTH {
                    if bits & (1 << (font::WIDTH - 1 - col)) == 0 {
                        continue;
                    }
                    for (dx, dy) in (0..SCALE).flat_map(|a| (0..SCALE).map(move |b| (a, b))) {
                        let (u, v) = ((offset + col * SCALE + dx), (row as i64 * SCALE + dy));
                        if vertical {
                            self.set(x + v, y - u, TEXT);
                        } else {
                            self.set(x + u, y + v, TEXT);
                        }
                    }
                }
            }
        }
    }
}

/// The pixel width of `text`.
fn text_width(text: &str) -> i64 {
    text.chars().count() as i64 * (font::WIDTH + 1) * SCALE - SCALE
}

const TEXT_HEIGHT: i64 = font::HEIGHT * SCALE;

/// About five round tick values (steps of 1, 2 or 5 times a power of ten) within `lo..=hi`.
fn ticks(lo: f64, hi: f64) -> (Vec<f64>, f64) {
    if !(hi > lo && lo.is_finite() && hi.is_finite()) {
        return (vec![lo], 1.0); // a single value (one evaluation, say)
    }
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    ((first..=last).map(|i| i as f64 * step).collect(), step)
}

/// A tick label with as many decimals as the step needs; steps of thousands as "k".
fn tick_label(value: f64, step: f64) -> String {
    if step >= 1000.0 && value != 0.0 {
        return tick_label(value / 1000.0, step / 1000.0) + "k";
    }
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()).min(12.0) as usize };
    format!("{value:.decimals$}")
}

impl Chart<'_> {
    /// Writes the chart as a `width x height` PNG at `path`.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let (width, height) = (self.width, self.height);
        ensure!(width >= 200 && height >= 150, "the chart must be at least 200 x 150 pixels");
        ensure!(!self.series.is_empty(), "a chart needs at least one series");
        ensure!(
            self.series.iter().all(|s| s.xs.len() == s.ys.len() && !s.xs.is_empty()),
            "every series needs as many xs as ys"
        );
        let points = || self.series.iter().flat_map(|s| s.xs.iter().zip(s.ys));
        let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (&x, &y) in points() {
            (x_min, x_max, y_min, y_max) = (x_min.min(x), x_max.max(x), y_min.min(y), y_max.max(y));
        }
        let (data_x_min, data_x_max) = (x_min, x_max);
        let pad = |lo: f64, hi: f64| if hi > lo { (hi - lo) * 0.05 } else { 1.0 };
        let (px, py) = (pad(x_min, x_max), pad(y_min, y_max));
        let (x_min, x_max, y_min, y_max) = (x_min - px, x_max + px, y_min - py, y_max + py);
        let gap = 6;
        let top = if self.top_axis.is_some() { 2 * TEXT_HEIGHT + 3 * gap } else { 2 * gap };
        let (left, bottom, right) = (TEXT_HEIGHT + text_width("-0.00") + 3 * gap, 2 * TEXT_HEIGHT + 3 * gap, 2 * gap);
        let (x0, x1) = (left, width as i64 - right);
        let (y0, y1) = (top, height as i64 - bottom);
        let to_pixel = |x: f64, y: f64| -> (i64, i64) {
            let u = x0 as f64 + (x - x_min) / (x_max - x_min) * (x1 - x0) as f64;
            let v = y1 as f64 - (y - y_min) / (y_max - y_min) * (y1 - y0) as f64;
            (u.round() as i64, v.round() as i64)
        };
        let mut canvas = Canvas { width, height, pixels: vec![255; width * height * 3] };
        let (grid, axis) = ([225, 225, 225], [90, 90, 90]);
        let (x_ticks, x_step) = ticks(x_min, x_max);
        let (y_ticks, y_step) = ticks(y_min, y_max);
        for &x in &x_ticks {
            let (u, _) = to_pixel(x, y_min);
            canvas.line((u, y0), (u, y1), grid, 1);
            let label = tick_label(x, x_step);
            canvas.text(&label, (u - text_width(&label) / 2, y1 + gap), false);
        }
        for &y in &y_ticks {
            let (_, v) = to_pixel(x_min, y);
            canvas.line((x0, v), (x1, v), grid, 1);
            let label = tick_label(y, y_step);
            canvas.text(&label, (x0 - gap - text_width(&label), v - TEXT_HEIGHT / 2), false);
        }
        for (a, b) in [((x0, y0), (x1, y0)), ((x0, y1), (x1, y1)), ((x0, y0), (x0, y1)), ((x1, y0), (x1, y1))] {
            canvas.line(a, b, axis, 1);
        }
        canvas.text(self.x_label, ((x0 + x1) / 2 - text_width(self.x_label) / 2, y1 + 2 * gap + TEXT_HEIGHT), false);
        canvas.text(self.y_label, (gap, (y0 + y1) / 2 + text_width(self.y_label) / 2), true);
        if let Some(top_axis) = &self.top_axis {
            let span = data_x_max - data_x_min;
            let to_top = |x: f64| {
                if span > 0.0 {
                    top_axis.from + (x - data_x_min) / span * (top_axis.to - top_axis.from)
                } else {
                    top_axis.from
                }
            };
            let (lo, hi) = (to_top(x_min), to_top(x_max));
            let (top_ticks, top_step) = ticks(lo.min(hi), lo.max(hi));
            for &t in &top_ticks {
                let x = if hi > lo { x_min + (t - lo) / (hi - lo) * (x_max - x_min) } else { data_x_min };
                let (u, _) = to_pixel(x, y_max);
                canvas.line((u, y0 - gap / 2), (u, y0), axis, 1);
                let label = tick_label(t, top_step);
                canvas.text(&label, (u - text_width(&label) / 2, y0 - gap - TEXT_HEIGHT), false);
            }
            canvas.text(top_axis.label, ((x0 + x1) / 2 - text_width(top_axis.label) / 2, gap), false);
        }
        for s in &self.series {
            let pixels: Vec<(i64, i64)> = s.xs.iter().zip(s.ys).map(|(&x, &y)| to_pixel(x, y)).collect();
            for pair in pixels.windows(2) {
                canvas.line(pair[0], pair[1], s.color, 3);
            }
        }
        // The legend, in the top corner (right or left) that the curves cross least.
        let legend_width = self.series.iter().map(|s| text_width(s.label)).max().unwrap_or(0) + 40;
        let legend_height = self.series.len() as i64 * (TEXT_HEIGHT + gap) + gap;
        let crossings = |left_edge: i64| {
            let inside = |(u, v): (f64, f64)| {
                u >= left_edge as f64 && u <= (left_edge + legend_width) as f64 && v <= (y0 + legend_height) as f64
            };
            // Points along every segment, not just its ends.
            self.series
                .iter()
                .flat_map(|s| {
                    s.xs.iter()
                        .zip(s.ys)
                        .map(|(&x, &y)| to_pixel(x, y))
                        .collect::<Vec<_>>()
                        .windows(2)
                        .map(|w| (w[0], w[1]))
                        .collect::<Vec<_>>()
                })
                .flat_map(|((u0, v0), (u1, v1))| {
                    (0..=16).map(move |k| {
                        let t = k as f64 / 16.0;
                        (u0 as f64 + t * (u1 - u0) as f64, v0 as f64 + t * (v1 - v0) as f64)
                    })
                })
                .filter(|&p| inside(p))
                .count()
        };
        let (right_x, left_x) = (x1 - gap - legend_width, x0 + gap);
        let legend_x = if crossings(left_x) < crossings(right_x) { left_x } else { right_x };
        for (i, s) in self.series.iter().enumerate() {
            let y = y0 + gap + i as i64 * (TEXT_HEIGHT + gap);
            let x = legend_x;
            canvas.line((x, y + TEXT_HEIGHT / 2), (x + 28, y + TEXT_HEIGHT / 2), s.color, 3);
            canvas.text(s.label, (x + 36, y), false);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&canvas.pixels)?;
        writer.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::BufReader::new(File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf)
    }

    #[test]
    fn writes_a_png_with_curves_text_and_a_top_axis() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
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
        assert!(plain.chunks(3).any(|p| p == TEXT), "labels are drawn");
        chart(&ys, true).unwrap();
        let (_, _, with_top) = read(&path);
        let text_pixels = |buf: &[u8]| buf.chunks(3).filter(|p| *p == TEXT).count();
        assert!(text_pixels(&with_top) > text_pixels(&plain), "the top axis adds its labels");
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
    fn ticks_are_round_and_labelled_with_the_needed_decimals() {
        assert_eq!(ticks(0.0, 10.0).0, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(tick_label(0.5, 0.5), "0.5");
        assert_eq!(tick_label(20000.0, 10000.0), "20k");
        assert_eq!(tick_label(5000.0, 5000.0), "5k");
        assert_eq!(tick_label(0.0, 5000.0), "0");
        assert_eq!(tick_label(3.0, 1.0), "3");
        for c in "0123456789.-Epochs Tokens seen Loss Training Validation GELU ReLU".chars() {
            assert!(c == ' ' || font::glyph(c) != [0; 7], "no glyph for {c:?}");
        }
    }
}
