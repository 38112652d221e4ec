//! Charts on disk: both files written, the PNG decodes at the chart's size with text drawn from
//! the embedded font, the SVG parses and names every series; the band over seeds, by hand.

use stagewise_report::plots::{
    band_over_seeds, draw_histogram, draw_line_chart, series_colour, Band, HistogramChart,
    LineChart, PlotError, Series, HEIGHT, WIDTH,
};
use std::path::Path;

/// Decodes a PNG into (width, height, RGB bytes).
fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// The SVG, parsed (so well-formed), and the text of its `<text>` elements.
fn svg_texts(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert_eq!(doc.root_element().attribute("width"), Some("960"));
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect()
}

fn chart(series: Vec<Series>) -> LineChart {
    LineChart {
        title: "Test accuracy".into(),
        x_label: "epoch".into(),
        y_label: "accuracy".into(),
        series,
        log_x: false,
    }
}

fn banded(name: &str, offset: f64) -> Series {
    Series {
        name: name.into(),
        points: (0..10)
            .map(|i| {
                let m = offset + i as f64 * 0.05;
                Band {
                    x: i as f64,
                    mean: m,
                    lo: m - 0.02,
                    hi: m + 0.03,
                }
            })
            .collect(),
    }
}

#[test]
fn a_line_chart_is_written_as_png_and_svg_naming_every_series() {
    let dir = tempfile::tempdir().unwrap();
    let c = chart(vec![banded("qhm & <stagewise>", 0.3), banded("sgd", 0.2)]);
    let fig = draw_line_chart(&c, &dir.path().join("sub").join("acc")).unwrap();
    assert_eq!(fig.title, "Test accuracy");
    assert_eq!(fig.png, dir.path().join("sub/acc.png"));
    assert_eq!(fig.svg, dir.path().join("sub/acc.svg"));

    let (w, h, pixels) = decode(&fig.png);
    assert_eq!((w, h), (WIDTH, HEIGHT));
    // The lines are drawn in the series' colours, the bands in lighter shades of them.
    let has = |rgb: (u8, u8, u8)| pixels.chunks(3).any(|p| (p[0], p[1], p[2]) == rgb);
    for i in 0..2 {
        let c = series_colour(i);
        assert!(has((c.0, c.1, c.2)), "series {i} not drawn");
    }

    let texts = svg_texts(&fig.svg);
    for expected in [
        "Test accuracy",
        "epoch",
        "accuracy",
        "qhm & <stagewise>",
        "sgd",
    ] {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected} in {texts:?}"
        );
    }
    // The band is a filled polygon per series.
    let svg = std::fs::read_to_string(&fig.svg).unwrap();
    assert_eq!(svg.matches("<polygon").count(), 2);
}

#[test]
fn png_text_is_drawn_from_the_embedded_font() {
    // Two titles of the same length in different letters: if glyphs were missing (blank or
    // boxes), the title rows would come out the same.
    let dir = tempfile::tempdir().unwrap();
    let title_rows = |title: &str, stem: &str| {
        let mut c = chart(vec![banded("a", 0.1)]);
        c.title = title.into();
        let fig = draw_line_chart(&c, &dir.path().join(stem)).unwrap();
        let (w, _, pixels) = decode(&fig.png);
        pixels[..(w * 32 * 3) as usize].to_vec()
    };
    let a = title_rows("OOOOOOOO", "o");
    let b = title_rows("llllllll", "l");
    let dark = |rows: &[u8]| rows.chunks(3).filter(|p| p[0] < 128).count();
    // Both have ink; round letters hold far more of it than thin ones.
    assert!(dark(&b) > 20, "no title text drawn");
    assert!(dark(&a) > 2 * dark(&b), "{} vs {}", dark(&a), dark(&b));
    // Anti-aliased glyph edges: grey levels between black and white.
    let greys = a.chunks(3).filter(|p| p[0] > 40 && p[0] < 215).count();
    assert!(greys > 20);
}

#[test]
fn many_series_get_distinct_colours() {
    let dir = tempfile::tempdir().unwrap();
    let series: Vec<Series> = (0..16)
        .map(|i| {
            Series::line(
                format!("run{i}"),
                (1..5).map(|x| (x as f64, (x * i) as f64)),
            )
        })
        .collect();
    let fig = draw_line_chart(&chart(series), &dir.path().join("many")).unwrap();
    let text = std::fs::read_to_string(&fig.svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let mut strokes: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
        .filter_map(|n| n.attribute("stroke"))
        .collect();
    assert_eq!(strokes.len(), 16);
    strokes.sort();
    strokes.dedup();
    assert_eq!(strokes.len(), 16, "{strokes:?}");
    let texts = svg_texts(&fig.svg);
    assert!((0..16).all(|i| texts.contains(&format!("run{i}"))));
}

#[test]
fn awkward_data_draws_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let nan = f64::NAN;
    let cases = [
        ("empty", vec![]),
        ("no_points", vec![Series::line("none", [])]),
        ("single", vec![Series::line("one", [(3.0, 0.5)])]),
        ("same_x", vec![Series::line("x", [(2.0, 0.1), (2.0, 0.9)])]),
        ("flat", vec![Series::line("flat", [(0.0, 1.0), (5.0, 1.0)])]),
        (
            "nan",
            vec![Series {
                name: "nan".into(),
                points: vec![
                    Band {
                        x: nan,
                        mean: 1.0,
                        lo: 1.0,
                        hi: 1.0,
                    },
                    Band {
                        x: 1.0,
                        mean: nan,
                        lo: 0.0,
                        hi: 2.0,
                    },
                    Band {
                        x: 2.0,
                        mean: 0.5,
                        lo: nan,
                        hi: f64::INFINITY,
                    },
                    Band {
                        x: 3.0,
                        mean: 0.6,
                        lo: 0.5,
                        hi: 0.7,
                    },
                ],
            }],
        ),
        (
            "all_nan",
            vec![Series::line("all", [(nan, nan), (1.0, nan)])],
        ),
    ];
    for (stem, series) in cases {
        let fig = draw_line_chart(&chart(series), &dir.path().join(stem))
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(decode(&fig.png).0, WIDTH, "{stem}");
        svg_texts(&fig.svg);
    }
    let texts = svg_texts(&dir.path().join("empty.svg"));
    assert!(texts.iter().any(|t| t == "no data"), "{texts:?}");

    let mut log = chart(vec![Series::line(
        "log",
        [(0.0, 1.0), (-1.0, 2.0), (10.0, 3.0)],
    )]);
    log.log_x = true;
    draw_line_chart(&log, &dir.path().join("log_single")).unwrap();
    log.series[0].points.clear();
    draw_line_chart(&log, &dir.path().join("log_empty")).unwrap();
}

#[test]
fn a_log_axis_spans_decades() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = chart(vec![Series::line(
        "lr",
        (0..=4).map(|k| (10f64.powi(k), k as f64)),
    )]);
    c.log_x = true;
    let fig = draw_line_chart(&c, &dir.path().join("log")).unwrap();
    let texts = svg_texts(&fig.svg);
    for tick in ["10", "100", "1000"] {
        assert!(texts.iter().any(|t| t == tick), "{tick} in {texts:?}");
    }
}

#[test]
fn a_histogram_groups_the_bars_of_each_series() {
    let dir = tempfile::tempdir().unwrap();
    let h = HistogramChart {
        title: "Staleness".into(),
        x_label: "τ".into(),
        y_label: "pushes".into(),
        series: vec![
            ("w4".into(), vec![10, 5, 0, 1]),
            ("w8".into(), vec![2, 8, 6]),
        ],
    };
    let fig = draw_histogram(&h, &dir.path().join("hist")).unwrap();
    let (w, hgt, _) = decode(&fig.png);
    assert_eq!((w, hgt), (WIDTH, HEIGHT));
    let text = std::fs::read_to_string(&fig.svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let fill = |i: usize| {
        let c = series_colour(i);
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    };
    let rects = |i: usize| {
        doc.descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(&fill(i)))
            .count()
    };
    // Non-empty buckets, plus the legend swatch.
    assert_eq!(rects(0), 3 + 1);
    assert_eq!(rects(1), 3 + 1);
    let texts = svg_texts(&fig.svg);
    assert!(texts.contains(&"w4".to_string()) && texts.contains(&"w8".to_string()));

    let empty = HistogramChart {
        series: vec![],
        ..h.clone()
    };
    draw_histogram(&empty, &dir.path().join("empty_hist")).unwrap();
    let zeros = HistogramChart {
        series: vec![("z".into(), vec![0, 0])],
        ..h
    };
    draw_histogram(&zeros, &dir.path().join("zero_hist")).unwrap();
}

#[test]
fn a_stem_keeps_its_dots_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fig = draw_line_chart(&chart(vec![]), &dir.path().join("run.v2")).unwrap();
    assert!(fig.png.ends_with("run.v2.png") && fig.png.exists());

    // A file where the folder should be.
    std::fs::write(dir.path().join("blocker"), b"x").unwrap();
    let err = draw_line_chart(&chart(vec![]), &dir.path().join("blocker").join("c")).unwrap_err();
    assert!(matches!(err, PlotError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("blocker/c.png"), "{err}");
}

fn band(x: f64, mean: f64, lo: f64, hi: f64) -> Band {
    Band { x, mean, lo, hi }
}

#[test]
fn the_band_over_shared_epochs_is_mean_min_and_max() {
    let curves = vec![
        vec![(1.0, 0.5), (2.0, 0.7), (3.0, 0.9)],
        vec![(1.0, 0.3), (2.0, 0.6)],
        vec![(2.0, 0.8), (1.0, 0.4), (f64::NAN, 1.0), (3.0, f64::NAN)],
    ];
    let b = band_over_seeds(&curves, None);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].x, 1.0);
    assert!((b[0].mean - 0.4).abs() < 1e-12);
    assert_eq!((b[0].lo, b[0].hi), (0.3, 0.5));
    assert!((b[1].mean - 0.7).abs() < 1e-12);
    assert_eq!((b[1].lo, b[1].hi), (0.6, 0.8));
    // Only the first seed reached epoch 3 (the third's value there is NaN).
    assert_eq!(b[2], band(3.0, 0.9, 0.9, 0.9));
    // A repeated epoch counts once, with its last value.
    let repeated = band_over_seeds(&[vec![(1.0, 0.2), (1.0, 0.4)], vec![(1.0, 0.6)]], None);
    assert_eq!(repeated, [band(1.0, 0.5, 0.4, 0.6)]);
}

#[test]
fn the_band_on_a_wall_time_grid_interpolates_each_seed() {
    let fast = vec![(0.0, 0.0), (10.0, 1.0)];
    let slow = vec![(0.0, 0.0), (20.0, 1.0), (30.0, 0.5)];
    let b = band_over_seeds(&[fast, slow], Some(&[5.0, 10.0, 25.0, 40.0, -1.0]));
    // At 5: 0.5 and 0.25. At 10: 1 and 0.5. At 25: only the slow seed, 0.75. 40 and -1: none.
    assert_eq!(
        b,
        [
            band(5.0, 0.375, 0.25, 0.5),
            band(10.0, 0.75, 0.5, 1.0),
            band(25.0, 0.75, 0.75, 0.75),
        ]
    );
    // A single-point curve covers exactly its x; identical x in a curve take the later value.
    let b = band_over_seeds(
        &[vec![(2.0, 0.3)], vec![(1.0, 0.0), (2.0, 0.1), (2.0, 0.5)]],
        Some(&[2.0]),
    );
    assert_eq!(b, [band(2.0, 0.4, 0.3, 0.5)]);
    assert!(band_over_seeds(&[], Some(&[1.0])).is_empty());
    assert!(band_over_seeds(&[vec![]], None).is_empty());
}
