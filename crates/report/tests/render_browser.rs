//! The report as a reader sees it: `report.html` opened in headless Chromium shows every
//! figure, loads nothing from elsewhere, and says what `report.md` says.
//!
//! The browser test needs Chromium at `/usr/bin/chromium` (Debian: `apt-get install -y
//! chromium`), or the path in `STAGEWISE_CHROMIUM`; it fails, saying so, when there is none.

use stagewise_report::plots::{draw_histogram, draw_line_chart, HistogramChart, LineChart, Series};
use stagewise_report::render::{Block, Report, Table};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long Chromium may take to load the page before the test gives up.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

const PARAGRAPH: &str = "Runs <compared> & ranked: 3 * 2 = 6 | seed_1 vs _seed_ [link](x) `code`";

fn sample_report(dir: &Path) -> Report {
    let line = LineChart {
        title: "Test accuracy against epoch".into(),
        x_label: "epoch".into(),
        y_label: "test accuracy".into(),
        series: vec![
            Series::line("a/run", [(1.0, 0.5), (2.0, 0.7), (3.0, 0.8)]),
            Series::line("b/run", [(1.0, 0.4), (2.0, 0.75)]),
        ],
        log_x: false,
    };
    let hist = HistogramChart {
        title: "Staleness <τ>".into(),
        x_label: "τ".into(),
        y_label: "pushes".into(),
        series: vec![("b/run".into(), vec![4, 2, 1])],
    };
    let figures = dir.join("figures");
    let f1 = draw_line_chart(&line, &figures.join("acc")).unwrap();
    let f2 = draw_histogram(&hist, &figures.join("staleness")).unwrap();
    Report {
        title: "Run report & <checks>".into(),
        blocks: vec![
            Block::Paragraph(PARAGRAPH.into()),
            Block::List(vec!["a/run: runs/a/run".into(), "- b_run *".into()]),
            Block::Heading(2, "Summary".into()),
            Block::Table(Table {
                header: vec!["run".into(), "final test acc".into(), "note".into()],
                rows: vec![
                    vec!["a/run".into(), "0.8000".into(), "<b>not bold</b>".into()],
                    vec!["b|run".into(), "0.7500".into(), "x & y \"q\"".into()],
                    vec!["c".into(), "-".into()],
                ],
            }),
            Block::Paragraph("Second paragraph,\nover two lines.".into()),
            Block::Heading(2, "Figures".into()),
            Block::Figure(f1),
            Block::Figure(f2),
        ],
    }
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("STAGEWISE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "this test opens the report in headless Chromium, and there is none at {}: install it \
         (Debian: `apt-get install -y chromium`) or set STAGEWISE_CHROMIUM to its path",
        path.display()
    );
    path
}

/// Appended to a copy of the page: once everything has loaded, writes each image's state
/// (`WxH` when it decoded, `broken` when not) into an element that `--dump-dom` prints.
const CHECK_SCRIPT: &str = r#"<script>
window.addEventListener('load', function () {
  var states = [];
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i];
    states.push(img.complete && img.naturalWidth > 0
      ? img.naturalWidth + 'x' + img.naturalHeight : 'broken');
  }
  var out = document.createElement('pre');
  out.id = 'image-check';
  out.textContent = states.length + ':' + states.join(',');
  document.body.appendChild(out);
});
</script>
"#;

/// Runs Chromium on `page` and returns the DOM it dumps, killing it after [`BROWSER_TIMEOUT`].
fn dump_dom(page: &Path, work: &Path) -> String {
    let dom_path = work.join("dom.html");
    let err_path = work.join("chromium.log");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=10000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            work.join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&dom_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("starting chromium");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {BROWSER_TIMEOUT:?}; its log:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    assert!(
        status.success() && !dom.is_empty(),
        "chromium failed ({status}); its log:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    dom
}

#[test]
fn every_image_of_the_html_report_loads_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report dir");
    let report = sample_report(&out);
    let (_md, html_path) = report.write(&out).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();

    // A copy elsewhere, away from the figure files: the page must not need them.
    let work = tempfile::tempdir().unwrap();
    let page = work.path().join("page.html");
    assert!(html.contains("</body>"));
    std::fs::write(
        &page,
        html.replacen("</body>", &format!("{CHECK_SCRIPT}</body>"), 1),
    )
    .unwrap();
    std::fs::remove_dir_all(out.join("figures")).unwrap();

    let dom = dump_dom(&page, work.path());
    let start = dom
        .find("<pre id=\"image-check\">")
        .map(|i| i + "<pre id=\"image-check\">".len())
        .unwrap_or_else(|| {
            panic!(
                "the check did not run; the DOM:\n{}",
                &dom[..dom.len().min(2000)]
            )
        });
    let result = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    assert_eq!(result, "2:960x600,960x600");
}

/// Every `src` and `href` of the page is a `data:` URI: nothing is fetched.
#[test]
fn the_html_report_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let html = sample_report(dir.path()).to_html().unwrap();
    for attr in ["src=\"", "href=\""] {
        let values: Vec<&str> = html
            .match_indices(attr)
            .map(|(i, _)| {
                let rest = &html[i + attr.len()..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect();
        assert_eq!(values.len(), 2, "{attr}");
        assert!(
            values.iter().all(|v| v.starts_with("data:image/")),
            "{attr}"
        );
    }
    assert!(!html.contains("<link") && !html.contains("url("));
    assert!(html.contains("<title>Run report &amp; &lt;checks&gt;</title>"));
}

/// Removes Markdown's backslash escapes.
fn md_unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(n)) if n.is_ascii_punctuation() => out.push(chars.next().unwrap()),
            _ => out.push(c),
        }
    }
    out
}

fn html_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The cells of a Markdown pipe-table row (escaped pipes kept in their cell).
fn md_cells(line: &str) -> Vec<String> {
    let inner = line
        .trim()
        .strip_prefix('|')
        .unwrap()
        .strip_suffix('|')
        .unwrap();
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cells.last_mut().unwrap().push(c);
                if let Some(n) = chars.next() {
                    cells.last_mut().unwrap().push(n);
                }
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.iter().map(|c| md_unescape(c.trim())).collect()
}

/// The text of every `<tag …>…</tag>` in `html`, in order, unescaped.
fn html_elements(html: &str, tag: &str) -> Vec<String> {
    html_elements_raw(html, tag)
        .iter()
        .map(|e| html_unescape(e))
        .collect()
}

/// The content of every `<tag …>…</tag>` in `html`, in order, as written.
fn html_elements_raw(html: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        if !after.starts_with('>') && !after.starts_with(' ') {
            rest = after;
            continue;
        }
        let body = &after[after.find('>').unwrap() + 1..];
        let end = body.find(&close).unwrap();
        found.push(body[..end].to_string());
        rest = &body[end..];
    }
    found
}

#[test]
fn markdown_and_html_hold_the_same_cells_paragraphs_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let report = sample_report(dir.path());
    let md = report.to_markdown(dir.path());
    let html = report.to_html().unwrap();

    // Table cells, row by row (the delimiter row left out), padded to the header's width.
    let md_rows: Vec<Vec<String>> = md
        .lines()
        .filter(|l| l.starts_with('|') && !l.contains("---"))
        .map(md_cells)
        .collect();
    let html_rows: Vec<Vec<String>> = html_elements_raw(&html, "tr")
        .iter()
        .map(|row| {
            let mut cells = html_elements(row, "th");
            cells.extend(html_elements(row, "td"));
            cells
        })
        .collect();
    let expected = [
        ["run", "final test acc", "note"],
        ["a/run", "0.8000", "<b>not bold</b>"],
        ["b|run", "0.7500", "x & y \"q\""],
        ["c", "-", ""],
    ];
    assert_eq!(md_rows, expected);
    assert_eq!(html_rows, expected);

    // Paragraphs: Markdown blocks that are no heading, list, table or figure.
    let md_paragraphs: Vec<String> = md
        .split("\n\n")
        .map(str::trim)
        .filter(|b| {
            !b.is_empty()
                && !["#", "|", "- ", "!["].iter().any(|m| b.starts_with(m))
                && !b.contains("([SVG](")
        })
        .map(md_unescape)
        .collect();
    let html_paragraphs = html_elements(&html, "p");
    let expected = [PARAGRAPH, "Second paragraph,\nover two lines."];
    assert_eq!(md_paragraphs, expected);
    assert_eq!(html_paragraphs, expected);

    // List items, headings and figure captions.
    let md_items: Vec<String> = md
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .map(md_unescape)
        .collect();
    assert_eq!(md_items, html_elements(&html, "li"));
    assert_eq!(md_items, ["a/run: runs/a/run", "- b_run *"]);
    let md_headings: Vec<String> = md
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(md_unescape)
        .collect();
    assert_eq!(md_headings, html_elements(&html, "h2"));
    assert!(md.starts_with("# Run report & \\<checks\\>\n"));
    assert_eq!(html_elements(&html, "h1"), ["Run report & <checks>"]);

    assert!(
        md.contains("![Test accuracy against epoch](figures/acc.png)"),
        "{md}"
    );
    assert!(md.contains("[SVG](figures/acc.svg)"), "{md}");
    assert!(
        md.contains("![Staleness \\<τ\\>](figures/staleness.png)"),
        "{md}"
    );
    let captions: Vec<String> = html_elements(&html, "figcaption")
        .iter()
        .map(|c| c[..c.find(" (<a").unwrap()].to_string())
        .collect();
    assert_eq!(captions, ["Test accuracy against epoch", "Staleness <τ>"]);
}
