//! A confusion matrix as a PNG: one cell per (true class, predicted class), shaded by the
//! fraction of the true class it holds, with the count written in it.

use crate::plots::{draw_error, encode_png, ensure_font, PlotError, FAMILY, HEIGHT, WIDTH};
use plotters::prelude::*;
use stagewise_core::files::write_atomic;
use std::path::Path;

/// Draws `confusion[true][predicted]` under `title` into the PNG `path` (written atomically).
///
/// # Errors
/// [`PlotError`] when drawing, encoding or writing fails; an empty or ragged matrix is drawn
/// as far as it goes, never a panic.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("confusion.png");
/// stagewise_report::confusion::draw_confusion(&[vec![5, 1], vec![0, 4]], "demo", &path).unwrap();
/// assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
/// ```
pub fn draw_confusion(confusion: &[Vec<u64>], title: &str, path: &Path) -> Result<(), PlotError> {
    ensure_font(path)?;
    let mut pixels = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        paint(&root, confusion, title).map_err(|e| draw_error(path, e))?;
        root.present().map_err(|e| draw_error(path, e))?;
    }
    let png = encode_png(&pixels, path)?;
    write_atomic(path, &png).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn paint<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    confusion: &[Vec<u64>],
    title: &str,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let font = |size| (FAMILY, size).into_font().color(&BLACK);
    root.draw(&Text::new(title.to_string(), (20, 12), font(22)))?;
    let n = confusion.len().max(1) as i32;
    let (left, top) = (200i32, 70i32);
    let cell = ((HEIGHT as i32 - top - 60) / n).max(1);
    for (t, row) in confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (p, &count) in row.iter().enumerate() {
            let share = if total > 0 {
                count as f64 / total as f64
            } else {
                0.0
            };
            let shade = (255.0 * (1.0 - share)).round() as u8;
            let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                RGBColor(shade, shade, 255).filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                RGBColor(200, 200, 200),
            ))?;
            let colour = if share > 0.5 { WHITE } else { BLACK };
            root.draw(&Text::new(
                count.to_string(),
                (x + 4, y + cell / 3),
                (FAMILY, 13).into_font().color(&colour),
            ))?;
        }
        let y = top + t as i32 * cell + cell / 3;
        root.draw(&Text::new(t.to_string(), (left - 24, y), font(15)))?;
        root.draw(&Text::new(
            format!("{t}"),
            (left + t as i32 * cell + cell / 3, top - 22),
            font(15),
        ))?;
    }
    root.draw(&Text::new("true class", (20, top + n * cell / 2), font(17)))?;
    root.draw(&Text::new(
        "predicted class",
        (left, top + n * cell + 12),
        font(17),
    ))?;
    Ok(())
}
