//! Charts as PNG and SVG: line charts with a shaded band (a curve over seeds) and histograms.
//!
//! Everything is drawn with `plotters` and no system library: text in PNGs is rasterised from
//! DejaVu Sans, embedded in the crate (`assets/`, with its licence). SVGs name the font family
//! `sans-serif` and leave the text to the viewer.
//!
//! Bad data never panics: NaN and infinite values are skipped, an empty chart is drawn with a
//! "no data" note, and a single point or identical x values get a padded axis.
//!
//! ```
//! use stagewise_report::plots::{band_over_seeds, draw_line_chart, LineChart, Series};
//! let seeds = vec![vec![(1.0, 0.5), (2.0, 0.7)], vec![(1.0, 0.6), (2.0, 0.9)]];
//! let chart = LineChart {
//!     title: "Test accuracy".into(),
//!     x_label: "epoch".into(),
//!     y_label: "accuracy".into(),
//!     series: vec![Series { name: "qhm".into(), points: band_over_seeds(&seeds, None) }],
//!     log_x: false,
//! };
//! let dir = tempfile::tempdir().unwrap();
//! let figure = draw_line_chart(&chart, &dir.path().join("accuracy")).unwrap();
//! assert!(figure.png.ends_with("accuracy.png") && figure.svg.exists());
//! ```

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use stagewise_core::files::write_atomic;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Width of every chart, pixels (PNG) or user units (SVG).
pub const WIDTH: u32 = 960;
/// Height of every chart.
pub const HEIGHT: u32 = 600;

/// DejaVu Sans 2.37, unmodified (licence in `assets/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The family plotters asks for; the embedded font is registered under it.
pub(crate) const FAMILY: &str = "sans-serif";

/// One point of a curve: the mean at `x` and the band around it (`lo == hi == mean` for a
/// single run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Position on the x axis.
    pub x: f64,
    /// The line's value.
    pub mean: f64,
    /// Lower edge of the shaded band.
    pub lo: f64,
    /// Upper edge of the shaded band.
    pub hi: f64,
}

/// One named curve of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// The points, drawn in order of x.
    pub points: Vec<Band>,
}

impl Series {
    /// A curve without a band (one run): each `(x, y)` becomes `Band { x, mean: y, lo: y, hi: y }`.
    ///
    /// ```
    /// let s = stagewise_report::plots::Series::line("run", [(1.0, 0.5)]);
    /// assert_eq!((s.points[0].lo, s.points[0].hi), (0.5, 0.5));
    /// ```
    pub fn line(name: impl Into<String>, points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points: points
                .into_iter()
                .map(|(x, y)| Band {
                    x,
                    mean: y,
                    lo: y,
                    hi: y,
                })
                .collect(),
        }
    }
}

/// A line chart: one line per series, with its band shaded where `lo < hi`.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Drawn above the chart.
    pub title: String,
    /// Caption of the x axis.
    pub x_label: String,
    /// Caption of the y axis.
    pub y_label: String,
    /// The curves; each gets its own colour and legend entry.
    pub series: Vec<Series>,
    /// A logarithmic x axis (points with `x <= 0` are then skipped).
    pub log_x: bool,
}

/// A histogram of counts per bucket (bucket `i` at x = `i`); several series are drawn as
/// grouped bars.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramChart {
    /// Drawn above the chart.
    pub title: String,
    /// Caption of the x axis (the bucket).
    pub x_label: String,
    /// Caption of the y axis (the count).
    pub y_label: String,
    /// `(legend entry, count per bucket)`.
    pub series: Vec<(String, Vec<u64>)>,
}

/// A chart written to disk, in both formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The chart's title (the caption in a report).
    pub title: String,
    /// The raster version.
    pub png: PathBuf,
    /// The vector version.
    pub svg: PathBuf,
}

/// Why a chart could not be drawn or written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing into the image failed.
    #[error("{path}: drawing the chart failed: {message}")]
    Draw {
        /// The file being drawn.
        path: PathBuf,
        /// What plotters reported.
        message: String,
    },
    /// Encoding the PNG failed.
    #[error("{path}: encoding the PNG failed: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: png::EncodingError,
    },
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Mean and range of several seeds' curves, point by point: `mean` is the arithmetic mean of
/// the seeds' values, `lo` and `hi` their minimum and maximum (the band shows the whole spread,
/// not a confidence interval; see [`crate::stats`] for those).
///
/// Each curve is a list of `(x, y)`; points with a non-finite x or y are skipped.
///
/// - `grid = None`: the curves share their x values (epochs); values are grouped by equal x
///   and every x any curve has gives a point, over the curves that have it. A curve that repeats
///   an x counts once there, with its last value.
/// - `grid = Some(xs)`: each curve is interpolated linearly onto `xs` (wall time differs per
///   seed). A grid point outside a curve's x range is left out for that curve, and one that no
///   curve covers gives no point.
///
/// The result is sorted by x.
///
/// ```
/// use stagewise_report::plots::{band_over_seeds, Band};
/// let a = vec![(0.0, 1.0), (2.0, 3.0)];
/// let b = vec![(0.0, 3.0), (4.0, 7.0)];
/// let on_grid = band_over_seeds(&[a, b], Some(&[1.0, 3.0]));
/// // At 1: a gives 2, b gives 4; at 3 only b covers it (6).
/// assert_eq!(on_grid[0], Band { x: 1.0, mean: 3.0, lo: 2.0, hi: 4.0 });
/// assert_eq!(on_grid[1], Band { x: 3.0, mean: 6.0, lo: 6.0, hi: 6.0 });
/// ```
pub fn band_over_seeds(curves: &[Vec<(f64, f64)>], grid: Option<&[f64]>) -> Vec<Band> {
    let curves: Vec<Vec<(f64, f64)>> = curves.iter().map(|c| clean_curve(c)).collect();
    let mut columns: Vec<(f64, Vec<f64>)> = Vec::new();
    match grid {
        None => {
            let mut xs: Vec<f64> = curves.iter().flatten().map(|&(x, _)| x).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            for x in xs {
                let ys = curves
                    .iter()
                    .filter_map(|c| c.iter().rev().find(|p| p.0 == x).map(|p| p.1))
                    .collect();
                columns.push((x, ys));
            }
        }
        Some(grid) => {
            let mut xs: Vec<f64> = grid.iter().copied().filter(|x| x.is_finite()).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            for x in xs {
                let ys = curves.iter().filter_map(|c| interpolate(c, x)).collect();
                columns.push((x, ys));
            }
        }
    }
    columns
        .into_iter()
        .filter(|(_, ys): &(f64, Vec<f64>)| !ys.is_empty())
        .map(|(x, ys)| Band {
            x,
            mean: ys.iter().sum::<f64>() / ys.len() as f64,
            lo: ys.iter().copied().fold(f64::INFINITY, f64::min),
            hi: ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
        .collect()
}

/// The finite points of a curve, sorted by x (stable: repeated x keep their order).
fn clean_curve(curve: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut c: Vec<(f64, f64)> = curve
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    c.sort_by(|a, b| a.0.total_cmp(&b.0));
    c
}

/// The value of a sorted, finite curve at `x` by linear interpolation; `None` outside its range.
fn interpolate(curve: &[(f64, f64)], x: f64) -> Option<f64> {
    let first = curve.first()?;
    let last = curve.last()?;
    if x < first.0 || x > last.0 {
        return None;
    }
    // The last point at or before x, then the first one after it.
    let i = curve.partition_point(|p| p.0 <= x) - 1;
    let (x0, y0) = curve[i];
    match curve.get(i + 1) {
        Some(&(x1, y1)) if x1 > x0 => Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0)),
        _ => Some(y0),
    }
}

/// The colour of series `index`: ten hand-picked, well separated colours, then hues spaced by
/// the golden angle, so that any number of series stay distinct. As `(red, green, blue)`.
///
/// ```
/// use stagewise_report::plots::series_colour;
/// let colours: std::collections::HashSet<_> = (0..50).map(series_colour).collect();
/// assert_eq!(colours.len(), 50);
/// ```
pub fn series_colour(index: usize) -> (u8, u8, u8) {
    const FIRST: [(u8, u8, u8); 10] = [
        (0, 90, 181),
        (220, 50, 32),
        (0, 150, 80),
        (230, 140, 0),
        (120, 60, 170),
        (0, 160, 190),
        (200, 60, 140),
        (110, 110, 110),
        (150, 100, 40),
        (100, 170, 0),
    ];
    if let Some(&rgb) = FIRST.get(index) {
        return rgb;
    }
    let hue = ((index - FIRST.len()) as f64 * 0.381_966 + 0.07).fract();
    let lightness = if index.is_multiple_of(2) { 0.38 } else { 0.5 };
    HSLColor(hue, 0.75, lightness).to_backend_color().rgb
}

fn plot_colour(index: usize) -> RGBColor {
    let (r, g, b) = series_colour(index);
    RGBColor(r, g, b)
}

/// Draws `chart` into `stem.png` and `stem.svg` (folders created) and returns the [`Figure`].
///
/// Points are drawn in order of x; non-finite values (and `x <= 0` on a log axis) are skipped;
/// a band edge that is not finite falls back to the mean. Series with few points get markers
/// as well as the line, so a single point still shows.
///
/// ```
/// use stagewise_report::plots::{draw_line_chart, LineChart, Series};
/// let chart = LineChart {
///     title: "α".into(), x_label: "epoch".into(), y_label: "lr".into(),
///     series: vec![Series::line("run", [(0.0, 0.1), (5.0, 0.01), (f64::NAN, 1.0)])],
///     log_x: false,
/// };
/// let dir = tempfile::tempdir().unwrap();
/// let fig = draw_line_chart(&chart, &dir.path().join("lr")).unwrap();
/// assert!(std::fs::read_to_string(&fig.svg).unwrap().contains("run"));
/// ```
pub fn draw_line_chart(chart: &LineChart, stem: &Path) -> Result<Figure, PlotError> {
    let prepared = prepare_lines(chart);
    write_both(&Chart::Lines(chart, &prepared), stem)
}

/// Draws `chart` into `stem.png` and `stem.svg` (folders created) and returns the [`Figure`].
/// Bucket `i` of every series is drawn at x = `i`, the series side by side.
///
/// ```
/// use stagewise_report::plots::{draw_histogram, HistogramChart};
/// let chart = HistogramChart {
///     title: "Staleness".into(), x_label: "τ".into(), y_label: "pushes".into(),
///     series: vec![("asgd".into(), vec![5, 3, 1])],
/// };
/// let dir = tempfile::tempdir().unwrap();
/// let fig = draw_histogram(&chart, &dir.path().join("staleness")).unwrap();
/// assert!(fig.png.exists());
/// ```
pub fn draw_histogram(chart: &HistogramChart, stem: &Path) -> Result<Figure, PlotError> {
    write_both(&Chart::Bars(chart), stem)
}

/// What [`write_both`] draws.
enum Chart<'a> {
    Lines(&'a LineChart, &'a [Prepared]),
    Bars(&'a HistogramChart),
}

impl Chart<'_> {
    fn title(&self) -> &str {
        match self {
            Chart::Lines(c, _) => &c.title,
            Chart::Bars(c) => &c.title,
        }
    }

    fn names(&self) -> Vec<&str> {
        match self {
            Chart::Lines(c, _) => c.series.iter().map(|s| s.name.as_str()).collect(),
            Chart::Bars(c) => c.series.iter().map(|(n, _)| n.as_str()).collect(),
        }
    }
}

/// A series' drawable points: finite, sorted by x, band edges around the mean.
struct Prepared {
    points: Vec<Band>,
    banded: bool,
}

fn prepare_lines(chart: &LineChart) -> Vec<Prepared> {
    chart
        .series
        .iter()
        .map(|s| {
            let mut points: Vec<Band> = s
                .points
                .iter()
                .filter(|b| b.x.is_finite() && b.mean.is_finite() && (!chart.log_x || b.x > 0.0))
                .map(|b| {
                    let lo = if b.lo.is_finite() {
                        b.lo.min(b.mean)
                    } else {
                        b.mean
                    };
                    let hi = if b.hi.is_finite() {
                        b.hi.max(b.mean)
                    } else {
                        b.mean
                    };
                    Band { lo, hi, ..*b }
                })
                .collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            let banded = points.iter().any(|b| b.lo < b.hi);
            Prepared { points, banded }
        })
        .collect()
}

/// `stem` with `.ext` appended (not replacing what follows a dot in the name).
fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// The embedded font, registered with plotters once.
pub(crate) fn ensure_font(path: &Path) -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Draw {
            path: path.to_path_buf(),
            message: "the embedded font could not be loaded".into(),
        })
    }
}

pub(crate) fn draw_error<E: std::error::Error + Send + Sync>(
    path: &Path,
    e: DrawingAreaErrorKind<E>,
) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Renders `chart` into a PNG and an SVG beside `stem`, then writes both atomically.
fn write_both(chart: &Chart<'_>, stem: &Path) -> Result<Figure, PlotError> {
    let png_path = with_suffix(stem, "png");
    let svg_path = with_suffix(stem, "svg");
    ensure_font(&png_path)?;

    let mut pixels = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        paint(&root, chart).map_err(|e| draw_error(&png_path, e))?;
        root.present().map_err(|e| draw_error(&png_path, e))?;
    }
    let png = encode_png(&pixels, &png_path)?;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        paint(&root, chart).map_err(|e| draw_error(&svg_path, e))?;
        root.present().map_err(|e| draw_error(&svg_path, e))?;
    }

    write_atomic(&png_path, &png).map_err(|source| PlotError::Io {
        path: png_path.clone(),
        source,
    })?;
    write_atomic(&svg_path, svg.as_bytes()).map_err(|source| PlotError::Io {
        path: svg_path.clone(),
        source,
    })?;
    Ok(Figure {
        title: chart.title().to_string(),
        png: png_path,
        svg: svg_path,
    })
}

pub(crate) fn encode_png(pixels: &[u8], path: &Path) -> Result<Vec<u8>, PlotError> {
    let encode_error = |source| PlotError::Encode {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(encode_error)?;
    writer.write_image_data(pixels).map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    Ok(out)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Title on top, the legend panel on the right (when there are names), the chart in the rest.
fn paint<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart<'_>) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let body = if chart.title().is_empty() {
        root.clone()
    } else {
        root.titled(chart.title(), (FAMILY, 24).into_font().color(&BLACK))?
    };
    let names = chart.names();
    let legend_font = TextStyle::from((FAMILY, 15).into_font());
    let labels: Vec<String> = names
        .iter()
        .map(|n| fit_text(&body, n, &legend_font, LEGEND_TEXT_MAX))
        .collect();
    let text_width = labels
        .iter()
        .filter_map(|l| body.estimate_text_size(l, &legend_font).ok())
        .map(|(w, _)| w)
        .max();
    let plot = match text_width {
        Some(w) => {
            let (width, _) = body.dim_in_pixel();
            let legend_width = (w + LEGEND_SWATCH + 24).min(width / 2);
            let (plot, legend) = body.split_horizontally(width - legend_width);
            draw_legend(&legend, &labels, &legend_font)?;
            plot
        }
        None => body,
    };
    match chart {
        Chart::Lines(c, prepared) => draw_lines(&plot, c, prepared),
        Chart::Bars(c) => draw_bars(&plot, c),
    }
}

/// Widest legend text, pixels; longer names are cut with an ellipsis.
const LEGEND_TEXT_MAX: u32 = 260;
/// Space before a legend text: the colour swatch and a gap.
const LEGEND_SWATCH: u32 = 34;

/// `text`, shortened with "…" until it is at most `max` pixels wide.
fn fit_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    font: &TextStyle<'_>,
    max: u32,
) -> String {
    let fits = |t: &str| {
        area.estimate_text_size(t, font)
            .map(|(w, _)| w <= max)
            .unwrap_or(true)
    };
    if fits(text) {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut n = chars.len();
    while n > 0 {
        n -= 1;
        let candidate: String = chars[..n].iter().chain(std::iter::once(&'…')).collect();
        if fits(&candidate) {
            return candidate;
        }
    }
    "…".to_string()
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &[String],
    font: &TextStyle<'_>,
) -> DrawResult<DB> {
    const TOP: i32 = 24;
    const ROW: i32 = 22;
    let (_, height) = area.dim_in_pixel();
    let rows = ((height as i32 - TOP - ROW) / ROW).max(1) as usize;
    for (i, label) in labels.iter().enumerate() {
        let y = TOP + ROW * i as i32;
        if i + 1 == rows && labels.len() > rows {
            let more = format!("… {} more", labels.len() - i);
            area.draw(&Text::new(
                more,
                (6 + LEGEND_SWATCH as i32, y - 8),
                font.clone(),
            ))?;
            break;
        }
        let colour = plot_colour(i);
        area.draw(&Rectangle::new([(6, y - 5), (28, y + 5)], colour.filled()))?;
        area.draw(&Text::new(
            label.clone(),
            (6 + LEGEND_SWATCH as i32, y - 8),
            font.clone(),
        ))?;
    }
    Ok(())
}

/// A tick label: few significant digits, scientific for very large or small magnitudes.
fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            String::new()
        };
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let decimals = (4 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The drawn range of values from `lo` to `hi`: padded a little, widened when they are equal,
/// a default when there are none.
fn padded(lo: f64, hi: f64, log: bool, pad: f64) -> Range<f64> {
    if !(lo.is_finite() && hi.is_finite()) || lo > hi {
        return if log { 1.0..10.0 } else { 0.0..1.0 };
    }
    if log {
        let (lo, hi) = if lo == hi {
            (lo / 2.0, hi * 2.0)
        } else {
            (lo, hi)
        };
        let f = (hi / lo).powf(pad);
        return lo / f..hi * f;
    }
    let width = hi - lo;
    if width == 0.0 {
        let d = if lo == 0.0 { 0.5 } else { lo.abs() * 0.05 };
        return lo - d..hi + d;
    }
    if !width.is_finite() {
        return lo..hi;
    }
    lo - width * pad..hi + width * pad
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &LineChart,
    prepared: &[Prepared],
) -> DrawResult<DB> {
    let all = || prepared.iter().flat_map(|p| p.points.iter());
    let x_lo = all().map(|b| b.x).fold(f64::INFINITY, f64::min);
    let x_hi = all().map(|b| b.x).fold(f64::NEG_INFINITY, f64::max);
    let y_lo = all().map(|b| b.lo).fold(f64::INFINITY, f64::min);
    let y_hi = all().map(|b| b.hi).fold(f64::NEG_INFINITY, f64::max);
    let y = padded(y_lo, y_hi, false, 0.05);
    if chart.log_x {
        let x = padded(x_lo, x_hi, true, 0.02);
        plot_lines(area, chart, prepared, x.log_scale(), y)
    } else {
        plot_lines(area, chart, prepared, padded(x_lo, x_hi, false, 0.02), y)
    }
}

/// Series with at most this many points get a marker at each.
const MARKERS_UP_TO: usize = 25;

fn plot_lines<DB, X>(
    area: &DrawingArea<DB, Shift>,
    chart: &LineChart,
    prepared: &[Prepared],
    x: X,
    y: Range<f64>,
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let mut ctx = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    ctx.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(246, 246, 246))
        .draw()?;
    for (i, p) in prepared.iter().enumerate() {
        let colour = plot_colour(i);
        if p.banded {
            let outline: Vec<(f64, f64)> = p
                .points
                .iter()
                .map(|b| (b.x, b.hi))
                .chain(p.points.iter().rev().map(|b| (b.x, b.lo)))
                .collect();
            ctx.draw_series(std::iter::once(Polygon::new(
                outline,
                colour.mix(0.18).filled(),
            )))?;
        }
        ctx.draw_series(LineSeries::new(
            p.points.iter().map(|b| (b.x, b.mean)),
            colour.stroke_width(2),
        ))?;
        if p.points.len() <= MARKERS_UP_TO {
            ctx.draw_series(
                p.points
                    .iter()
                    .map(|b| Circle::new((b.x, b.mean), 3, colour.filled())),
            )?;
        }
    }
    if prepared.iter().all(|p| p.points.is_empty()) {
        no_data(area)?;
    }
    Ok(())
}

/// A "no data" note in the middle of `area`.
fn no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FAMILY, 20).into_font())
        .color(&RGBColor(120, 120, 120))
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
    area.draw(&Text::new("no data", (w as i32 / 2, h as i32 / 2), style))
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &HistogramChart,
) -> DrawResult<DB> {
    let buckets = chart.series.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let top = chart
        .series
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .max()
        .unwrap_or(0);
    let x = -0.5..(buckets.max(1) as f64 - 0.5);
    let y = 0.0..(top as f64 * 1.08).max(1.0);
    let mut ctx = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    ctx.configure_mesh()
        .disable_x_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_labels(buckets.clamp(1, 20))
        .x_label_formatter(&|v| {
            let r = v.round();
            if (v - r).abs() < 1e-6 && r >= 0.0 {
                format!("{}", r as u64)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| tick(*v))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(246, 246, 246))
        .draw()?;
    let groups = chart.series.len().max(1) as f64;
    let width = 0.8 / groups;
    for (j, (_, counts)) in chart.series.iter().enumerate() {
        let colour = plot_colour(j);
        ctx.draw_series(
            counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| {
                    let left = i as f64 - 0.4 + j as f64 * width;
                    Rectangle::new([(left, 0.0), (left + width, c as f64)], colour.filled())
                }),
        )?;
    }
    if buckets == 0 {
        no_data(area)?;
    }
    Ok(())
}
