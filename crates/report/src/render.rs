//! A report document, written as Markdown and as self-contained HTML with the same content.
//!
//! Text in blocks is plain text, not Markdown: the Markdown writer escapes what Markdown would
//! read as markup, and the HTML writer escapes what HTML would. Figures appear in Markdown as
//! an image link to the PNG (relative to the report's folder) and a link to the SVG; in HTML
//! both are embedded as `data:` URIs, so `report.html` can be mailed or archived alone.
//!
//! ```
//! use stagewise_report::render::{Block, Report, Table};
//! let report = Report {
//!     title: "Runs".into(),
//!     blocks: vec![
//!         Block::Paragraph("Two runs, one seed each.".into()),
//!         Block::Table(Table {
//!             header: vec!["run".into(), "final test acc".into()],
//!             rows: vec![vec!["a".into(), "0.91".into()], vec!["b".into(), "0.93".into()]],
//!         }),
//!     ],
//! };
//! let dir = tempfile::tempdir().unwrap();
//! let (md, html) = report.write(dir.path()).unwrap();
//! assert!(std::fs::read_to_string(md).unwrap().contains("| a | 0.91 |"));
//! assert!(std::fs::read_to_string(html).unwrap().contains("<td class=\"num\">0.93</td>"));
//! ```

use crate::plots::Figure;
use base64::Engine as _;
use stagewise_core::files::write_atomic;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

/// The Markdown file [`Report::write`] writes.
pub const MARKDOWN_FILE: &str = "report.md";
/// The HTML file [`Report::write`] writes.
pub const HTML_FILE: &str = "report.html";

/// A document: a title (level-1 heading) and blocks in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// The level-1 heading, and the HTML page's title.
    pub title: String,
    /// The content.
    pub blocks: Vec<Block>,
}

/// One piece of a [`Report`]; all text is plain text.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading of the given level (clamped to 1–6; the report's title is level 1, so
    /// sections use 2 and below).
    Heading(u8, String),
    /// A paragraph.
    Paragraph(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table.
    Table(Table),
    /// A chart, with its title as caption.
    Figure(Figure),
}

/// A table of text cells. Rows shorter than the widest are padded with empty cells; a column
/// whose cells are all numbers (or empty, or `-`) is right-aligned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// The cells, row by row.
    pub rows: Vec<Vec<String>>,
}

/// Why a report could not be rendered or written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A figure's file could not be read (to embed it in the HTML).
    #[error("{path}: reading the figure failed: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing a report file failed.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Report {
    /// An empty report with a title.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            blocks: Vec::new(),
        }
    }

    /// Appends a block.
    pub fn push(&mut self, block: Block) -> &mut Self {
        self.blocks.push(block);
        self
    }

    /// The report as Markdown (CommonMark with GitHub's pipe tables), for a file in `dir`:
    /// figures link to their PNG and SVG by paths relative to `dir`.
    ///
    /// ```
    /// use stagewise_report::{plots::Figure, render::{Block, Report}};
    /// let mut r = Report::new("Runs");
    /// r.push(Block::Figure(Figure {
    ///     title: "Accuracy".into(),
    ///     png: "out/acc.png".into(),
    ///     svg: "out/acc.svg".into(),
    /// }));
    /// let md = r.to_markdown(std::path::Path::new("out"));
    /// assert!(md.contains("![Accuracy](acc.png)"));
    /// assert!(md.contains("[SVG](acc.svg)"));
    /// ```
    pub fn to_markdown(&self, dir: &Path) -> String {
        let mut out = format!("# {}\n", md_escape(&one_line(&self.title)));
        for block in &self.blocks {
            out.push('\n');
            match block {
                Block::Heading(level, text) => {
                    let hashes = "#".repeat(usize::from(clamp_level(*level)));
                    let _ = writeln!(out, "{hashes} {}", md_escape(&one_line(text)));
                }
                Block::Paragraph(text) => {
                    let lines: Vec<String> = paragraph_lines(text).map(md_escape).collect();
                    let _ = writeln!(out, "{}", lines.join("\n"));
                }
                Block::List(items) => {
                    for item in items {
                        let _ = writeln!(out, "- {}", md_escape(&one_line(item)));
                    }
                }
                Block::Table(table) => md_table(&mut out, table),
                Block::Figure(fig) => {
                    let title = md_escape_inline(&one_line(&fig.title));
                    let png = url_path(&relative_to(&fig.png, dir));
                    let svg = url_path(&relative_to(&fig.svg, dir));
                    let _ = writeln!(out, "![{title}]({png})\n\n{title} ([SVG]({svg}))");
                }
            }
        }
        out
    }

    /// The report as one self-contained HTML page: an inline stylesheet, the PNG of each figure
    /// embedded as a `data:image/png` URI and its SVG as a `data:image/svg+xml` download link,
    /// nothing loaded from elsewhere. Fails when a figure's file cannot be read.
    pub fn to_html(&self) -> Result<String, RenderError> {
        let mut out = String::new();
        let title = html_escape(&one_line(&self.title));
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n\
             <h1>{title}</h1>\n"
        );
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let l = clamp_level(*level);
                    let _ = writeln!(out, "<h{l}>{}</h{l}>", html_escape(&one_line(text)));
                }
                Block::Paragraph(text) => {
                    let lines: Vec<String> = paragraph_lines(text).map(html_escape).collect();
                    let _ = writeln!(out, "<p>{}</p>", lines.join("\n"));
                }
                Block::List(items) => {
                    out.push_str("<ul>\n");
                    for item in items {
                        let _ = writeln!(out, "<li>{}</li>", html_escape(&one_line(item)));
                    }
                    out.push_str("</ul>\n");
                }
                Block::Table(table) => html_table(&mut out, table),
                Block::Figure(fig) => html_figure(&mut out, fig)?,
            }
        }
        out.push_str("</main>\n</body>\n</html>\n");
        Ok(out)
    }

    /// Writes `dir/report.md` and `dir/report.html` (the folder created), each atomically, and
    /// returns their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), RenderError> {
        let md_path = dir.join(MARKDOWN_FILE);
        let html_path = dir.join(HTML_FILE);
        let html = self.to_html()?;
        let md = self.to_markdown(dir);
        write_atomic(&md_path, md.as_bytes()).map_err(|source| RenderError::Write {
            path: md_path.clone(),
            source,
        })?;
        write_atomic(&html_path, html.as_bytes()).map_err(|source| RenderError::Write {
            path: html_path.clone(),
            source,
        })?;
        Ok((md_path, html_path))
    }
}

const STYLE: &str = "\
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1d1d1f; \
background: #fff; margin: 0; line-height: 1.45; }
main { max-width: 1000px; margin: 0 auto; padding: 1.5rem; }
h1, h2, h3 { line-height: 1.2; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #d0d0d5; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f2f2f5; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafc; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e5ea; }
figcaption { color: #555; font-size: 0.9rem; }
";

fn clamp_level(level: u8) -> u8 {
    level.clamp(1, 6)
}

/// Text on one line: line breaks become spaces.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The non-blank lines of a paragraph, trimmed (a blank line would end it in Markdown).
fn paragraph_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Escapes for HTML text and attribute values.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes what Markdown would read as markup in a line of plain text: emphasis, code, links,
/// HTML, entities, and (with `block_start`, for text that begins a line) heading, list and
/// quote markers. `_` inside a word is left alone (it is no emphasis there), so names such as
/// `seed_1` stay readable.
fn md_escape_with(text: &str, block_start: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    let word = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|c| c.is_alphanumeric())
    };
    let space_after = |i: usize| chars.get(i + 1).is_none_or(|c| c.is_whitespace());
    for (i, &c) in chars.iter().enumerate() {
        let escape = match c {
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '~' | '|' => true,
            '_' => !(word(i.checked_sub(1)) && word(Some(i + 1))),
            '&' => looks_like_entity(&chars[i + 1..]),
            '#' | '-' | '=' => block_start && i == 0,
            '+' => block_start && i == 0 && space_after(i),
            '.' | ')' => {
                block_start
                    && i > 0
                    && chars[..i].iter().all(char::is_ascii_digit)
                    && space_after(i)
            }
            '!' => chars.get(i + 1) == Some(&'['),
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// [`md_escape_with`] for text that begins a line.
fn md_escape(text: &str) -> String {
    md_escape_with(text, true)
}

/// [`md_escape_with`] for text inside a line (table cells, image titles).
fn md_escape_inline(text: &str) -> String {
    md_escape_with(text, false)
}

/// Whether text after an `&` would make it an entity reference (`&amp;`, `&#38;`).
fn looks_like_entity(rest: &[char]) -> bool {
    let name = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '#')
        .count();
    name > 0 && rest.get(name) == Some(&';')
}

/// The width of a table and whether each column is numeric.
fn table_shape(table: &Table) -> (usize, Vec<bool>) {
    let width = table
        .rows
        .iter()
        .map(Vec::len)
        .chain(std::iter::once(table.header.len()))
        .max()
        .unwrap_or(0);
    let numeric = (0..width)
        .map(|col| {
            let cells = table
                .rows
                .iter()
                .filter_map(|r| r.get(col))
                .map(|c| c.trim());
            let mut any = false;
            for cell in cells {
                if cell.is_empty() || cell == "-" {
                    continue;
                }
                if !is_number(cell) {
                    return false;
                }
                any = true;
            }
            any
        })
        .collect();
    (width, numeric)
}

fn is_number(cell: &str) -> bool {
    let cell = cell.strip_suffix('%').unwrap_or(cell).trim_end();
    cell.parse::<f64>().is_ok()
}

fn md_table(out: &mut String, table: &Table) {
    let (width, numeric) = table_shape(table);
    if width == 0 {
        return;
    }
    let row = |out: &mut String, cells: &[String]| {
        out.push('|');
        for col in 0..width {
            let cell = cells.get(col).map(|c| md_escape_inline(&one_line(c)));
            let _ = write!(out, " {} |", cell.unwrap_or_default());
        }
        out.push('\n');
    };
    row(out, &table.header);
    out.push('|');
    for &n in &numeric {
        out.push_str(if n { " ---: |" } else { " --- |" });
    }
    out.push('\n');
    for r in &table.rows {
        row(out, r);
    }
}

fn html_table(out: &mut String, table: &Table) {
    let (width, numeric) = table_shape(table);
    if width == 0 {
        return;
    }
    let row = |out: &mut String, cells: &[String], tag: &str| {
        out.push_str("<tr>");
        for (col, &num) in numeric.iter().enumerate() {
            let cell = cells.get(col).map(|c| html_escape(&one_line(c)));
            let class = if num { " class=\"num\"" } else { "" };
            let _ = write!(out, "<{tag}{class}>{}</{tag}>", cell.unwrap_or_default());
        }
        out.push_str("</tr>\n");
    };
    out.push_str("<table>\n<thead>\n");
    row(out, &table.header, "th");
    out.push_str("</thead>\n<tbody>\n");
    for r in &table.rows {
        row(out, r, "td");
    }
    out.push_str("</tbody>\n</table>\n");
}

fn html_figure(out: &mut String, fig: &Figure) -> Result<(), RenderError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| RenderError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let png = b64.encode(read(&fig.png)?);
    let svg = b64.encode(read(&fig.svg)?);
    let title = html_escape(&one_line(&fig.title));
    let svg_name = fig
        .svg
        .file_name()
        .map(|n| html_escape(&n.to_string_lossy()))
        .unwrap_or_else(|| "figure.svg".into());
    let _ = writeln!(
        out,
        "<figure>\n<img src=\"data:image/png;base64,{png}\" alt=\"{title}\">\n\
         <figcaption>{title} (<a download=\"{svg_name}\" \
         href=\"data:image/svg+xml;base64,{svg}\">SVG</a>)</figcaption>\n</figure>"
    );
    Ok(())
}

/// `path` relative to the folder `base`, by their components (both taken from the current
/// folder when relative; `.` and `..` resolved lexically). Returns `path` unchanged when the
/// two share no root.
fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let absolute = |p: &Path| {
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        let mut parts: Vec<Component<'_>> = Vec::new();
        for c in joined.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir if matches!(parts.last(), Some(Component::Normal(_))) => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        parts.into_iter().collect::<PathBuf>()
    };
    let (p, b) = (absolute(path), absolute(base));
    let (pc, bc): (Vec<_>, Vec<_>) = (p.components().collect(), b.components().collect());
    let common = pc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return path.to_path_buf();
    }
    let mut rel = PathBuf::new();
    for _ in common..bc.len() {
        rel.push("..");
    }
    for c in &pc[common..] {
        rel.push(c.as_os_str());
    }
    rel
}

/// A path as a URL path: `/`-separated, each component percent-encoded outside the unreserved
/// characters.
fn url_path(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .map(|c| {
            let s = c.as_os_str().to_string_lossy();
            let mut enc = String::new();
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    enc.push(char::from(b));
                } else {
                    let _ = write!(enc, "%{b:02X}");
                }
            }
            enc
        })
        .collect();
    let joined = parts.join("/");
    if path.has_root() && !joined.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escaping_keeps_words_and_defuses_markup() {
        assert_eq!(md_escape("seed_1 and cnn_qhm"), "seed_1 and cnn_qhm");
        assert_eq!(md_escape("_x_ *y* `z`"), "\\_x\\_ \\*y\\* \\`z\\`");
        assert_eq!(md_escape("<b> [l](u) a|b"), "\\<b\\> \\[l\\](u) a\\|b");
        assert_eq!(md_escape("# not a heading"), "\\# not a heading");
        assert_eq!(md_escape("1. not a list"), "1\\. not a list");
        assert_eq!(md_escape("AT&T &amp;"), "AT&T \\&amp;");
        assert_eq!(md_escape("0.5 - 0.25"), "0.5 - 0.25");
        assert_eq!(md_escape("- x"), "\\- x");
        assert_eq!(md_escape_inline("-"), "-");
    }

    #[test]
    fn html_escaping_covers_text_and_attributes() {
        assert_eq!(
            html_escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn figure_paths_are_relative_to_the_report_folder() {
        let base = Path::new("/r/out");
        assert_eq!(
            relative_to(Path::new("/r/out/acc.png"), base),
            Path::new("acc.png")
        );
        assert_eq!(
            relative_to(Path::new("/r/fig/./a.png"), base),
            Path::new("../fig/a.png")
        );
        assert_eq!(
            relative_to(Path::new("out/sub/../b.png"), Path::new("out")),
            Path::new("b.png")
        );
        assert_eq!(
            url_path(Path::new("my runs/a(1).png")),
            "my%20runs/a%281%29.png"
        );
    }

    #[test]
    fn tables_pad_short_rows_and_right_align_numbers() {
        let t = Table {
            header: vec!["run".into(), "acc".into()],
            rows: vec![vec!["a".into(), "0.5".into()], vec!["b|c".into()]],
        };
        let mut r = Report::new("T");
        r.push(Block::Table(t));
        let md = r.to_markdown(Path::new("."));
        assert!(
            md.contains("| run | acc |\n| --- | ---: |\n| a | 0.5 |\n| b\\|c |  |\n"),
            "{md}"
        );
        let html = r.to_html().unwrap();
        assert!(
            html.contains("<tr><td>b|c</td><td class=\"num\"></td></tr>"),
            "{html}"
        );
    }

    #[test]
    fn a_missing_figure_is_an_error_naming_the_file() {
        let mut r = Report::new("T");
        r.push(Block::Figure(Figure {
            title: "gone".into(),
            png: "/nonexistent/stagewise/gone.png".into(),
            svg: "/nonexistent/stagewise/gone.svg".into(),
        }));
        let err = r.to_html().unwrap_err();
        assert!(err.to_string().contains("gone.png"), "{err}");
    }
}
