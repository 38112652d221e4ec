//! Reading a [`Spectrum`] (Hessian eigenvalues h_j and per-example gradient-noise eigenvalues
//! c_j) from a command-line specification or a file.
//!
//! Spectra estimated from a model ([`estimate`](super::estimate), `stagewise plan spectrum`)
//! and spectra from elsewhere come in through the same formats.
//!
//! Accepted specifications ([`parse_spectrum`]):
//!
//! - `isotropic:d=1000,h=1,c=1`: d identical directions (keys in any order, all three
//!   required; d ≤ 10 000 000);
//! - a path to a **JSON** file (name ending in `.json`), either the serde form of [`Spectrum`],
//!   `{"h": [1.0, 0.5], "c": [0.1, 0.2]}`, a list of pairs, `[{"h": 1.0, "c": 0.1}, …]`, or
//!   an estimate written by `stagewise plan spectrum` (a
//!   [`SpectrumEstimate`](super::estimate::SpectrumEstimate));
//! - a path to a **CSV** file (any other name): one direction per line, `h,c`; blank lines and
//!   lines starting with `#` are skipped, and a first line that is not numeric (a header such
//!   as `h,c`) is skipped too.
//!
//! Every h_j and c_j must be finite and > 0 (see [`Spectrum::validate`]).
//!
//! ```
//! use stagewise_core::theory::{parse_spectrum, spectrum_from_csv};
//! let s = parse_spectrum("isotropic:d=1000,h=1,c=0.5").unwrap();
//! assert_eq!((s.dim(), s.h[0], s.c[0]), (1000, 1.0, 0.5));
//! let s = spectrum_from_csv("h,c\n40,1\n1,1\n", "inline").unwrap();
//! assert_eq!(s.h, [40.0, 1.0]);
//! assert!(parse_spectrum("isotropic:d=10,h=-1,c=1").unwrap_err().to_string().contains("h"));
//! ```

use std::path::Path;

use serde::Deserialize;

use super::bound::Spectrum;
use super::estimate::SpectrumEstimate;
use super::explain::AdviceError;

/// Largest dimension accepted for an `isotropic:` specification.
pub const MAX_ISOTROPIC_DIM: usize = 10_000_000;

/// Parses a `--spectrum` value: `isotropic:d=…,h=…,c=…` or the path of a JSON/CSV file (see
/// the [module documentation](self)).
///
/// # Errors
/// [`AdviceError::Invalid`] naming the key for a malformed `isotropic:` specification,
/// [`AdviceError::SpectrumFile`] when the file cannot be read, [`AdviceError::SpectrumParse`]
/// when its content is malformed (with the line number for CSV), and the
/// [`Spectrum::validate`] errors for non-positive or mismatched entries.
pub fn parse_spectrum(spec: &str) -> Result<Spectrum, AdviceError> {
    if let Some(rest) = spec.strip_prefix("isotropic:") {
        return parse_isotropic(rest);
    }
    load_spectrum(Path::new(spec))
}

fn parse_isotropic(rest: &str) -> Result<Spectrum, AdviceError> {
    let (mut d, mut h, mut c) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(AdviceError::invalid(
                "spectrum",
                part,
                "isotropic:d=<integer >= 1>,h=<number > 0>,c=<number > 0>",
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "d" => {
                let n: usize = value.parse().map_err(|_| {
                    AdviceError::invalid(
                        "spectrum.d",
                        value,
                        &format!("an integer in [1, {MAX_ISOTROPIC_DIM}]"),
                    )
                })?;
                if n == 0 || n > MAX_ISOTROPIC_DIM {
                    return Err(AdviceError::invalid(
                        "spectrum.d",
                        value,
                        &format!("an integer in [1, {MAX_ISOTROPIC_DIM}]"),
                    ));
                }
                d = Some(n);
            }
            "h" | "c" => {
                let x: f64 = value.parse().map_err(|_| {
                    AdviceError::invalid(&format!("spectrum.{key}"), value, "a number > 0")
                })?;
                if !(x.is_finite() && x > 0.0) {
                    return Err(AdviceError::invalid(
                        &format!("spectrum.{key}"),
                        value,
                        "a finite number > 0",
                    ));
                }
                if key == "h" {
                    h = Some(x);
                } else {
                    c = Some(x);
                }
            }
            other => {
                return Err(AdviceError::invalid(
                    "spectrum key",
                    other,
                    "one of d, h, c (isotropic:d=1000,h=1,c=1)",
                ))
            }
        }
    }
    let missing = |k: &str| {
        AdviceError::invalid(
            "spectrum",
            format!("isotropic:{rest}"),
            &format!("isotropic:d=<integer >= 1>,h=<number > 0>,c=<number > 0> ({k} is missing)"),
        )
    };
    let d = d.ok_or_else(|| missing("d"))?;
    let h = h.ok_or_else(|| missing("h"))?;
    let c = c.ok_or_else(|| missing("c"))?;
    Ok(Spectrum::isotropic(d, h, c)?)
}

/// Reads a spectrum file: JSON if the name ends in `.json`, CSV otherwise.
///
/// # Errors
/// As [`parse_spectrum`].
pub fn load_spectrum(path: &Path) -> Result<Spectrum, AdviceError> {
    let text = std::fs::read_to_string(path).map_err(|e| AdviceError::SpectrumFile {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let name = path.display().to_string();
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        spectrum_from_json(&text, &name)
    } else {
        spectrum_from_csv(&text, &name)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonSpectrum {
    // First: an estimate has `h` and `c` too, and its bulk must not be dropped.
    Estimate(Box<SpectrumEstimate>),
    Lists { h: Vec<f64>, c: Vec<f64> },
    Pairs(Vec<Pair>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pair {
    h: f64,
    c: f64,
}

/// Parses the JSON forms `{"h": […], "c": […]}`, `[{"h": …, "c": …}, …]`, or a
/// [`SpectrumEstimate`] as written by `stagewise plan spectrum` (its top directions with
/// positive curvature plus its bulk, see [`SpectrumEstimate::spectrum`]); `source` names the
/// input in error messages.
///
/// # Errors
/// [`AdviceError::SpectrumParse`] for malformed JSON, and the [`Spectrum::validate`] errors.
pub fn spectrum_from_json(text: &str, source: &str) -> Result<Spectrum, AdviceError> {
    let parsed: JsonSpectrum =
        serde_json::from_str(text).map_err(|e| AdviceError::SpectrumParse {
            source_name: source.to_string(),
            message: format!(
                "{e}; expected {{\"h\": [..], \"c\": [..]}} or [{{\"h\": .., \"c\": ..}}, ..]"
            ),
        })?;
    let (h, c) = match parsed {
        JsonSpectrum::Estimate(e) => {
            return e.spectrum().map_err(|err| AdviceError::SpectrumParse {
                source_name: source.to_string(),
                message: err.to_string(),
            })
        }
        JsonSpectrum::Lists { h, c } => (h, c),
        JsonSpectrum::Pairs(p) => p.into_iter().map(|x| (x.h, x.c)).unzip(),
    };
    Ok(Spectrum::from_lists(h, c)?)
}

/// Parses CSV lines `h,c` (header line, blank lines and `#` comments skipped); `source` names
/// the input in error messages.
///
/// # Errors
/// [`AdviceError::SpectrumParse`] naming the line for a malformed line, and the
/// [`Spectrum::validate`] errors.
pub fn spectrum_from_csv(text: &str, source: &str) -> Result<Spectrum, AdviceError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let (mut h, mut c) = (Vec::new(), Vec::new());
    for (k, record) in reader.records().enumerate() {
        let bad = |message: String| AdviceError::SpectrumParse {
            source_name: source.to_string(),
            message,
        };
        let record = record.map_err(|e| bad(e.to_string()))?;
        let line = record.position().map_or(k as u64 + 1, |p| p.line());
        let nums: Option<Vec<f64>> = record.iter().map(|x| x.parse::<f64>().ok()).collect();
        match nums {
            Some(v) if v.len() == 2 => {
                h.push(v[0]);
                c.push(v[1]);
            }
            None if k == 0 => {} // header
            _ => {
                let found: Vec<&str> = record.iter().collect();
                return Err(bad(format!(
                    "line {line}: expected two numbers 'h,c', found '{}'",
                    found.join(",")
                )));
            }
        }
    }
    Ok(Spectrum::from_lists(h, c)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotropic_keys_and_errors() {
        let s = parse_spectrum("isotropic: c=2, d=3, h=0.5").unwrap();
        assert_eq!((s.dim(), s.h[2], s.c[0]), (3, 0.5, 2.0));
        for (spec, field) in [
            ("isotropic:d=0,h=1,c=1", "spectrum.d"),
            ("isotropic:d=x,h=1,c=1", "spectrum.d"),
            ("isotropic:d=3,h=0,c=1", "spectrum.h"),
            ("isotropic:d=3,h=1", "c is missing"),
            ("isotropic:d=3,h=1,c=1,e=2", "spectrum key"),
            ("isotropic:d=3;h=1", "spectrum"),
        ] {
            let e = parse_spectrum(spec).unwrap_err().to_string();
            assert!(e.contains(field), "{spec}: {e}");
        }
        let big = format!("isotropic:d={},h=1,c=1", MAX_ISOTROPIC_DIM + 1);
        assert!(parse_spectrum(&big).is_err());
    }

    #[test]
    fn json_and_csv_forms() {
        let a = spectrum_from_json(r#"{"h": [2, 1], "c": [0.1, 0.2]}"#, "x").unwrap();
        let b = spectrum_from_json(r#"[{"h": 2, "c": 0.1}, {"h": 1, "c": 0.2}]"#, "x").unwrap();
        assert_eq!(a, b);
        let c = spectrum_from_csv("# top eigenvalues\nh, c\n2,0.1\n\n1,0.2\n", "x").unwrap();
        assert_eq!(a, c);
        let e = spectrum_from_csv("h,c\n2,0.1\n1\n", "f.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.csv") && e.contains("line 3"), "{e}");
        let e = spectrum_from_json(r#"{"h": [1, 2], "c": [1]}"#, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("same length"), "{e}");
        let e = spectrum_from_csv("1,0\n", "x").unwrap_err().to_string();
        assert!(e.contains("spectrum.c[0]"), "{e}");
        assert!(spectrum_from_csv("", "x").is_err());
        let e = parse_spectrum("/nonexistent/spec.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/spec.csv"), "{e}");
    }

    #[test]
    fn an_estimate_file_expands_its_bulk_and_drops_negative_curvature() {
        let text = r#"{"dim": 6, "h": [9.0, -0.5], "c": [2.0, 1.0], "residuals": [0.1, 0.1],
            "trace_h": {"value": 12.0, "std_error": 1.0, "probes": 4}, "trace_c": 7.0,
            "bulk": {"count": 4, "h": 0.75, "c": 1.0}, "notes": ["test"]}"#;
        let s = spectrum_from_json(text, "est.json").unwrap();
        assert_eq!(s.h, [9.0, 0.75, 0.75, 0.75, 0.75]);
        assert_eq!(s.c, [2.0, 1.0, 1.0, 1.0, 1.0]);
        let none_left = r#"{"dim": 1, "h": [-1.0], "c": [1.0], "residuals": [0.0],
            "trace_h": null, "trace_c": 1.0, "bulk": null}"#;
        let e = spectrum_from_json(none_left, "neg.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("neg.json") && e.contains("positive curvature"),
            "{e}"
        );
    }
}
