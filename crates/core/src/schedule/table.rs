//! A human-readable stage table for plans (also the plan's `Display`).

use std::fmt;

use super::plan::{Plan, StageLength};
use super::recipes::plural;

/// Formats a number compactly: up to 6 significant digits, scientific notation outside
/// `[1e-3, 1e6)`, trailing zeros trimmed.
pub fn fmt_num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return if x == 0.0 { "0".into() } else { x.to_string() };
    }
    let a = x.abs();
    if (1e-3..1e6).contains(&a) {
        let decimals = (5 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{x:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        let s = format!("{x:.5e}");
        match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        }
    }
}

/// Column alignment.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

impl Plan {
    /// The stage table: one row per stage with its length, lr α, β, ν, batch b, within-stage
    /// schedule and the invariants of the stagewise rule, α·T (T = the stage length in the unit
    /// it is written in), α/b and α·ν·β/(1−β).
    ///
    /// ```
    /// use stagewise_core::schedule::{Plan, Stage};
    /// let plan = Plan::new(vec![
    ///     Stage::for_epochs(5, 0.1, 0.9, 0.7, 128),
    ///     Stage::for_epochs(10, 0.05, 0.9473684210526316, 0.7, 64),
    /// ]);
    /// let t = plan.table();
    /// assert!(t.lines().nth(0).unwrap().starts_with("stage"));
    /// assert!(t.contains("0.947368"));
    /// ```
    pub fn table(&self) -> String {
        const HEADERS: [&str; 10] = [
            "stage",
            "length",
            "lr α",
            "β",
            "ν",
            "batch",
            "schedule",
            "α·T",
            "α/b",
            "α·ν·β/(1−β)",
        ];
        const ALIGN: [Align; 10] = [
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
        ];
        let rows: Vec<[String; 10]> = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let length = match s.length() {
                    Some(StageLength::Epochs(e)) => format!("{e} ep"),
                    Some(StageLength::Steps(n)) => format!("{n} st"),
                    None => "invalid".into(),
                };
                let t = s.length_value() as f64;
                let kappa = if s.beta < 1.0 {
                    s.lr * s.nu * s.beta / (1.0 - s.beta)
                } else {
                    f64::INFINITY
                };
                [
                    (i + 1).to_string(),
                    length,
                    fmt_num(s.lr),
                    fmt_num(s.beta),
                    fmt_num(s.nu),
                    s.batch_size.to_string(),
                    s.schedule
                        .as_ref()
                        .map_or_else(|| "-".into(), |x| x.summary()),
                    fmt_num(s.lr * t),
                    fmt_num(s.lr / s.batch_size as f64),
                    fmt_num(kappa),
                ]
            })
            .collect();
        let width = |c: usize| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain(std::iter::once(HEADERS[c].chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..HEADERS.len()).map(width).collect();
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .zip(ALIGN)
                .map(|((c, &w), a)| {
                    let pad = " ".repeat(w.saturating_sub(c.chars().count()));
                    match a {
                        Align::Left => format!("{c}{pad}"),
                        Align::Right => format!("{pad}{c}"),
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let mut out = Vec::with_capacity(rows.len() + 2);
        out.push(line(&HEADERS.map(String::from)));
        out.push(line(
            &widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>(),
        ));
        out.extend(rows.iter().map(|r| line(r)));
        out.join("\n") + "\n"
    }
}

fn stages(plan: &Plan) -> String {
    plural(plan.stages.len() as u64, "stage")
}

impl fmt::Display for Plan {
    /// A header (name, description, weight decay, totals) followed by [`Plan::table`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            writeln!(f, "plan: {name}")?;
        }
        if let Some(d) = &self.description {
            writeln!(f, "{d}")?;
        }
        if self.weight_decay != 0.0 {
            let kind = match self.weight_decay_type {
                crate::optim::WeightDecay::Grad => "grad",
                crate::optim::WeightDecay::Direct => "direct",
            };
            writeln!(f, "weight decay: {} ({kind})", fmt_num(self.weight_decay))?;
        }
        match self.total_epochs() {
            Some(e) => writeln!(f, "{}, {}", stages(self), plural(e, "epoch"))?,
            None => writeln!(f, "{} (T in the unit of each stage)", stages(self))?,
        }
        f.write_str(&self.table())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Stage, StageSchedule};

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(0.1), "0.1");
        assert_eq!(fmt_num(128.0), "128");
        assert_eq!(fmt_num(0.9473684210526316), "0.947368");
        assert_eq!(fmt_num(0.00078125), "7.8125e-4");
        assert_eq!(fmt_num(1e-4), "1e-4");
        assert_eq!(fmt_num(-2.5), "-2.5");
        assert_eq!(fmt_num(f64::INFINITY), "inf");
    }

    #[test]
    fn columns_align() {
        let plan = Plan::new(vec![
            Stage::for_epochs(2, 0.1, 0.9, 0.7, 128),
            Stage::for_steps(12345, 0.05, 0.95, 0.7, 64)
                .with_schedule(StageSchedule::Cosine { min_factor: 0.0 }),
        ]);
        let t = plan.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        // The right-aligned last column ends at the same character position on every line.
        let ends: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(ends.iter().all(|&e| e == ends[0]), "{t}");
        assert!(lines[2].contains(" 2 ep") && lines[3].contains("12345 st"));
        assert!(lines[3].contains("cosine(min 0)"));
        // α·ν·β/(1−β) of stage 1 = 0.1·0.7·9 = 0.63.
        assert!(lines[2].ends_with("0.63"), "{t}");
        let shown = plan.to_string();
        assert!(shown.starts_with("2 stages (T in the unit of each stage)\nstage"));
    }
}
