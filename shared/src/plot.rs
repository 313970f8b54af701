//! PNG line charts (figure 4.8's GELU/ReLU curves; later the loss curves), drawn with a
//! small rasteriser: white background, grid, axes through zero, one coloured polyline per
//! series. There is no text (no font is bundled): callers say which colour is which.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{ensure, Context, Result};

/// One curve: points `(xs[i], ys[i])` joined in order.
pub struct Series<'a> {
    pub xs: &'a [f64],
    pub ys: &'a [f64],
    pub color: [u8; 3],
}

/// Colours for up to four series, from the common matplotlib palette.
pub const PALETTE: [[u8; 3]; 4] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];

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
}

/// Writes the series as a `width x height` PNG at `path`.
pub fn line_chart(path: &Path, series: &[Series<'_>], width: usize, height: usize) -> Result<()> {
    ensure!(width >= 50 && height >= 50, "the chart must be at least 50 x 50 pixels");
    ensure!(series.iter().all(|s| s.xs.len() == s.ys.len() && !s.xs.is_empty()), "every series needs as many xs as ys");
    let points = || series.iter().flat_map(|s| s.xs.iter().zip(s.ys));
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (&x, &y) in points() {
        (x_min, x_max, y_min, y_max) = (x_min.min(x), x_max.max(x), y_min.min(y), y_max.max(y));
    }
    let pad = |lo: f64, hi: f64| if hi > lo { (hi - lo) * 0.05 } else { 1.0 };
    let (px, py) = (pad(x_min, x_max), pad(y_min, y_max));
    let (x_min, x_max, y_min, y_max) = (x_min - px, x_max + px, y_min - py, y_max + py);
    let margin = 20.0;
    let to_pixel = |x: f64, y: f64| -> (i64, i64) {
        let u = margin + (x - x_min) / (x_max - x_min) * (width as f64 - 2.0 * margin);
        let v = height as f64 - margin - (y - y_min) / (y_max - y_min) * (height as f64 - 2.0 * margin);
        (u.round() as i64, v.round() as i64)
    };
    let mut canvas = Canvas { width, height, pixels: vec![255; width * height * 3] };
    let (grid, axis) = ([225, 225, 225], [90, 90, 90]);
    for i in 0..=10 {
        let x = x_min + (x_max - x_min) * i as f64 / 10.0;
        let y = y_min + (y_max - y_min) * i as f64 / 10.0;
        canvas.line(to_pixel(x, y_min), to_pixel(x, y_max), grid, 1);
        canvas.line(to_pixel(x_min, y), to_pixel(x_max, y), grid, 1);
    }
    if (x_min..=x_max).contains(&0.0) {
        canvas.line(to_pixel(0.0, y_min), to_pixel(0.0, y_max), axis, 1);
    }
    if (y_min..=y_max).contains(&0.0) {
        canvas.line(to_pixel(x_min, 0.0), to_pixel(x_max, 0.0), axis, 1);
    }
    for s in series {
        let pixels: Vec<(i64, i64)> = s.xs.iter().zip(s.ys).map(|(&x, &y)| to_pixel(x, y)).collect();
        for pair in pixels.windows(2) {
            canvas.line(pair[0], pair[1], s.color, 3);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_the_curves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        let xs: Vec<f64> = (0..=20).map(|i| i as f64 / 10.0 - 1.0).collect();
        let ys: Vec<f64> = xs.iter().map(|x| x * x).collect();
        line_chart(&path, &[Series { xs: &xs, ys: &ys, color: PALETTE[0] }], 200, 100).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (200, 100));
        assert!(buf.chunks(3).any(|p| p == PALETTE[0]), "the curve's colour is drawn");
        assert!(line_chart(&path, &[Series { xs: &xs, ys: &ys[..3], color: PALETTE[0] }], 200, 100).is_err());
    }
}
