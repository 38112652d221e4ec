//! The analysis of a finished grid of runs (methods × lr × seeds): the lr chosen per method,
//! its accuracies over seeds, paired tests against the best method with Holm's correction,
//! and a ranking at equal wall time. Pure functions over loaded runs; [`Comparison`] is what
//! `stagewise compare` writes as `summary.json`.
//!
//! The lr is chosen on the mean final validation accuracy when every run evaluated a
//! validation split ([`Selection::Validation`]); otherwise on the mean final test accuracy
//! ([`Selection::Test`]), which makes the reported test accuracies optimistic. The two are
//! never mixed.
//!
//! ```
//! use stagewise_core::record::{write_rows, EvalRow, RunKind, RunSummary, EVAL_FILE};
//! use stagewise_report::comparison::{compare, GridRun, Selection};
//! use stagewise_report::runs::RunRecord;
//!
//! let root = tempfile::tempdir().unwrap();
//! let mut grid = Vec::new();
//! for (method, acc) in [("qhm", 0.91), ("sgd", 0.89)] {
//!     for seed in 0..2u64 {
//!         let dir = root.path().join(format!("{method}-{seed}"));
//!         std::fs::create_dir(&dir).unwrap();
//!         let eval = EvalRow { update: 100, epoch: Some(1.0), elapsed_s: 10.0, loss: 0.3,
//!             accuracy: Some(acc + seed as f64 * 0.001), examples: 100,
//!             val_loss: Some(0.3), val_accuracy: Some(acc) };
//!         let mut summary = RunSummary::new(RunKind::Train, "mlp", method, serde_json::json!({}))
//!             .with_evals(std::slice::from_ref(&eval));
//!         summary.wall_seconds = 10.0;
//!         summary.save(&dir).unwrap();
//!         write_rows(&dir.join(EVAL_FILE), &[eval]).unwrap();
//!         let record = RunRecord::load(&dir).unwrap();
//!         grid.push(GridRun { method: method.into(), lr: 0.1, seed, workers: None, record });
//!     }
//! }
//! let c = compare(&grid).unwrap();
//! assert_eq!(c.selection, Selection::Validation);
//! assert_eq!(c.methods[c.best].method, "qhm");
//! assert_eq!(c.significance[0].method, "sgd");
//! assert!(c.sentences()[0].contains("validation accuracy"));
//! ```

use crate::runs::RunRecord;
use crate::stats::{self, PairedTest, SampleSummary, StatsError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Holm-adjusted p-values below this are called significant.
pub const ALPHA: f64 = 0.05;

/// One run of the grid, loaded, with the grid coordinates it was run at.
#[derive(Debug, Clone, PartialEq)]
pub struct GridRun {
    /// The method's name (an optimizer and its schedule, as the grid names it).
    pub method: String,
    /// The learning rate of this grid point.
    pub lr: f64,
    /// The seed.
    pub seed: u64,
    /// ASGD worker count; `None` for a centralized run.
    pub workers: Option<u32>,
    /// The run folder.
    pub record: RunRecord,
}

/// What the lr was chosen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The final validation accuracy: every run held out a validation split.
    Validation,
    /// The final test accuracy, because some run has no validation split: optimistic.
    Test,
}

/// One lr of a method's grid: final-evaluation accuracies over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrPoint {
    /// The learning rate.
    pub lr: f64,
    /// The seeds run, ascending.
    pub seeds: Vec<u64>,
    /// Final validation accuracy; `None` under [`Selection::Test`].
    pub val: Option<SampleSummary>,
    /// Final test accuracy.
    pub test: SampleSummary,
}

/// One method's results: its lr grid and, at the chosen lr, summaries over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// The method's name.
    pub method: String,
    /// ASGD worker count; `None` for centralized runs.
    pub workers: Option<u32>,
    /// Every lr run, ascending.
    pub lr_grid: Vec<LrPoint>,
    /// The lr with the highest mean final accuracy of the [`Selection`] (the smaller of equals).
    pub chosen_lr: f64,
    /// Final test accuracy at the chosen lr.
    pub final_test: SampleSummary,
    /// `(seed, final test accuracy)` at the chosen lr, by seed.
    pub per_seed: Vec<(u64, f64)>,
    /// Test accuracy at the evaluation with the best validation accuracy
    /// (`summary.best_val_eval`); under [`Selection::Test`], the best test accuracy
    /// (`summary.best_eval`).
    pub best_epoch_test: SampleSummary,
    /// Optimizer updates applied (`summary.updates`).
    pub steps: SampleSummary,
    /// Wall time of the runs, seconds (`summary.wall_seconds`).
    pub wall_seconds: SampleSummary,
}

/// A method against the best one, paired by seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Significance {
    /// The method compared.
    pub method: String,
    /// The best method's name.
    pub against: String,
    /// The test [`stats::paired_test`] chose for `n_pairs`.
    pub test: PairedTest,
    /// Seeds both methods have at their chosen lr.
    pub n_pairs: usize,
    /// Mean over those seeds of (method − best) final test accuracy.
    pub mean_difference: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Holm-adjusted over all the comparisons against the best.
    pub p_holm: f64,
    /// `p_holm` < [`ALPHA`].
    pub significant: bool,
}

/// Test accuracy when every method gets the same wall time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EqualTime {
    /// The smallest mean wall time of a method at its chosen lr.
    pub budget_seconds: f64,
    /// Per method, the test accuracy of each seed's last evaluation within the budget,
    /// summarized over seeds; `None` when some seed has no evaluation within it. Highest mean
    /// first, `None` last, input order among equals.
    pub ranking: Vec<(String, Option<SampleSummary>)>,
}

/// The analysis of a grid, written as `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// What the lr was chosen on, for every method alike.
    pub selection: Selection,
    /// Per method, in the order of first appearance in the grid.
    pub methods: Vec<MethodResult>,
    /// Index in `methods` of the highest mean final test accuracy (the first of equals).
    pub best: usize,
    /// Every other method against the best, in `methods` order; methods sharing fewer than 2
    /// seeds with the best are left out.
    pub significance: Vec<Significance>,
    /// The ranking at equal wall time.
    pub equal_time: EqualTime,
    /// The runs that diverged (`method lr LR seed SEED`), scored as chance accuracy.
    #[serde(default)]
    pub diverged: Vec<String>,
}

/// A run named by its grid coordinates and folder, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLabel {
    /// The method.
    pub method: String,
    /// The lr.
    pub lr: f64,
    /// The seed.
    pub seed: u64,
    /// The folder.
    pub dir: PathBuf,
}

impl fmt::Display for RunLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} lr {} seed {} ({})",
            self.method,
            self.lr,
            self.seed,
            self.dir.display()
        )
    }
}

/// Why a grid could not be analysed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComparisonError {
    /// No runs at all.
    #[error("the grid has no runs")]
    EmptyGrid,
    /// An lr that is NaN or infinite.
    #[error("{run}: the lr is not a finite number")]
    BadLr {
        /// The run.
        run: RunLabel,
    },
    /// Some (lr, seed) of a method's grid has no run.
    #[error("method {method}: no run for {}", list_missing(.missing))]
    MissingRuns {
        /// The method.
        method: String,
        /// The (lr, seed) pairs without a run.
        missing: Vec<(f64, u64)>,
    },
    /// Two runs at the same grid point.
    #[error(
        "{run}: another run of the grid has the same method, lr and seed ({})",
        .other.display()
    )]
    DuplicateRun {
        /// The second run.
        run: RunLabel,
        /// The folder of the first.
        other: PathBuf,
    },
    /// A method whose runs differ in worker count.
    #[error(
        "method {method}: runs with different worker counts ({first:?} and {second:?}); \
         name them as different methods"
    )]
    MixedWorkers {
        /// The method.
        method: String,
        /// The first count seen.
        first: Option<u32>,
        /// Another.
        second: Option<u32>,
    },
    /// A run without evaluations.
    #[error(
        "{run}: the run has no evaluations (eval.csv is empty or summary.json has no final_eval)"
    )]
    NoEvaluations {
        /// The run.
        run: RunLabel,
    },
    /// An evaluation of summary.json without test accuracy.
    #[error("{run}: summary.json {field} has no test accuracy")]
    NoTestAccuracy {
        /// The run.
        run: RunLabel,
        /// `final_eval`, `best_eval` or `best_val_eval`.
        field: &'static str,
    },
    /// eval.csv has validation accuracies that summary.json lacks.
    #[error("{run}: eval.csv has validation accuracies but summary.json {field} has none")]
    NoValidationInSummary {
        /// The run.
        run: RunLabel,
        /// `final_eval` or `best_val_eval`.
        field: &'static str,
    },
    /// A statistic failed (a NaN in a summary, say).
    #[error("method {method}, {what}: {source}")]
    Stats {
        /// The method.
        method: String,
        /// What was being summarized.
        what: String,
        /// The cause.
        source: StatsError,
    },
}

fn list_missing(missing: &[(f64, u64)]) -> String {
    let items: Vec<String> = missing
        .iter()
        .map(|(lr, seed)| format!("lr {lr} seed {seed}"))
        .collect();
    items.join(", ")
}

/// The numbers of one run that the analysis uses, read from its summary.
struct RunFacts<'a> {
    run: &'a GridRun,
    final_test: f64,
    final_val: Option<f64>,
    best_epoch_test: f64,
}

/// Analyses a finished grid: see the [module documentation](self).
pub fn compare(runs: &[GridRun]) -> Result<Comparison, ComparisonError> {
    if runs.is_empty() {
        return Err(ComparisonError::EmptyGrid);
    }
    for run in runs {
        if !run.lr.is_finite() {
            return Err(ComparisonError::BadLr { run: label(run) });
        }
        let evaluated = !run.record.evals.is_empty() && run.record.summary.final_eval.is_some();
        if !evaluated && diverged_chance(run).is_none() {
            return Err(ComparisonError::NoEvaluations { run: label(run) });
        }
    }
    // A diverged run may have diverged before its first evaluation: it does not decide.
    let selection = if runs
        .iter()
        .filter(|r| diverged_chance(r).is_none())
        .all(|r| r.record.evals.iter().any(|e| e.val_accuracy.is_some()))
    {
        Selection::Validation
    } else {
        Selection::Test
    };
    let mut seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();

    let mut names: Vec<&str> = Vec::new();
    for run in runs {
        if !names.contains(&run.method.as_str()) {
            names.push(&run.method);
        }
    }
    let mut methods = Vec::with_capacity(names.len());
    let mut chosen_runs = Vec::with_capacity(names.len());
    for name in names {
        let own: Vec<&GridRun> = runs.iter().filter(|r| r.method == name).collect();
        let (result, at_chosen) = analyse_method(name, &own, &seeds, selection)?;
        methods.push(result);
        chosen_runs.push(at_chosen);
    }
    let best = methods.iter().enumerate().fold(0, |best, (i, m)| {
        if m.final_test.mean > methods[best].final_test.mean {
            i
        } else {
            best
        }
    });
    let significance = significance(&methods, best)?;
    let equal_time = equal_time(&methods, &chosen_runs)?;
    let diverged = runs
        .iter()
        .filter(|r| diverged_chance(r).is_some())
        .map(|r| {
            format!(
                "{} lr {} seed {}",
                r.method,
                stagewise_core::schedule::fmt_num(r.lr),
                r.seed
            )
        })
        .collect();
    Ok(Comparison {
        selection,
        methods,
        best,
        significance,
        equal_time,
        diverged,
    })
}

fn label(run: &GridRun) -> RunLabel {
    RunLabel {
        method: run.method.clone(),
        lr: run.lr,
        seed: run.seed,
        dir: run.record.dir.clone(),
    }
}

/// The key under a run summary's `details` that marks a run that diverged (the loss or a
/// gradient became NaN or infinite), with the accuracy it counts as: `{"chance_accuracy": …}`.
pub const DIVERGED_KEY: &str = "diverged";

/// The accuracy a diverged run counts as (chance), or `None` for a run that did not diverge.
pub fn diverged_chance(run: &GridRun) -> Option<f64> {
    run.record
        .summary
        .details
        .get(DIVERGED_KEY)?
        .get("chance_accuracy")?
        .as_f64()
}

fn facts(run: &GridRun, selection: Selection) -> Result<RunFacts<'_>, ComparisonError> {
    // A diverged run's model predicts no better than chance: it scores chance everywhere.
    if let Some(chance) = diverged_chance(run) {
        return Ok(RunFacts {
            run,
            final_test: chance,
            final_val: (selection == Selection::Validation).then_some(chance),
            best_epoch_test: chance,
        });
    }
    let summary = &run.record.summary;
    let no_test = |field| ComparisonError::NoTestAccuracy {
        run: label(run),
        field,
    };
    let no_val = |field| ComparisonError::NoValidationInSummary {
        run: label(run),
        field,
    };
    let final_eval = summary
        .final_eval
        .as_ref()
        .ok_or_else(|| ComparisonError::NoEvaluations { run: label(run) })?;
    let final_test = final_eval.accuracy.ok_or_else(|| no_test("final_eval"))?;
    let (final_val, best_epoch_test) = match selection {
        Selection::Validation => {
            let val = final_eval
                .val_accuracy
                .ok_or_else(|| no_val("final_eval"))?;
            let best = summary
                .best_val_eval
                .as_ref()
                .ok_or_else(|| no_val("best_val_eval"))?;
            (
                Some(val),
                best.accuracy.ok_or_else(|| no_test("best_val_eval"))?,
            )
        }
        Selection::Test => {
            let best = summary
                .best_eval
                .as_ref()
                .and_then(|e| e.accuracy)
                .ok_or_else(|| no_test("best_eval"))?;
            (None, best)
        }
    };
    Ok(RunFacts {
        run,
        final_test,
        final_val,
        best_epoch_test,
    })
}

/// One method's lr grid and its results at the chosen lr, with the runs there (by seed).
fn analyse_method<'a>(
    name: &str,
    own: &[&'a GridRun],
    seeds: &[u64],
    selection: Selection,
) -> Result<(MethodResult, Vec<&'a GridRun>), ComparisonError> {
    let workers = own[0].workers;
    if let Some(other) = own.iter().find(|r| r.workers != workers) {
        return Err(ComparisonError::MixedWorkers {
            method: name.to_string(),
            first: workers,
            second: other.workers,
        });
    }
    let mut lrs: Vec<f64> = own.iter().map(|r| r.lr).collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup();
    // cells[lr][seed]: the run at that grid point.
    let mut cells: Vec<Vec<Option<&GridRun>>> = vec![vec![None; seeds.len()]; lrs.len()];
    for &run in own {
        let i = lrs.iter().position(|&lr| lr == run.lr).unwrap_or(0);
        let j = seeds.iter().position(|&s| s == run.seed).unwrap_or(0);
        if let Some(first) = cells[i][j] {
            return Err(ComparisonError::DuplicateRun {
                run: label(run),
                other: first.record.dir.clone(),
            });
        }
        cells[i][j] = Some(run);
    }
    let missing: Vec<(f64, u64)> = lrs
        .iter()
        .zip(&cells)
        .flat_map(|(&lr, row)| {
            seeds
                .iter()
                .zip(row)
                .filter(|(_, cell)| cell.is_none())
                .map(move |(&seed, _)| (lr, seed))
        })
        .collect();
    if !missing.is_empty() {
        return Err(ComparisonError::MissingRuns {
            method: name.to_string(),
            missing,
        });
    }
    let summarize = |what: String, xs: &[f64]| {
        stats::summarize(xs).map_err(|source| ComparisonError::Stats {
            method: name.to_string(),
            what,
            source,
        })
    };
    let mut lr_grid = Vec::with_capacity(lrs.len());
    let mut grid_facts = Vec::with_capacity(lrs.len());
    for (&lr, row) in lrs.iter().zip(&cells) {
        let row_facts = row
            .iter()
            .flatten()
            .map(|run| facts(run, selection))
            .collect::<Result<Vec<_>, _>>()?;
        let tests: Vec<f64> = row_facts.iter().map(|f| f.final_test).collect();
        let vals: Vec<f64> = row_facts.iter().filter_map(|f| f.final_val).collect();
        lr_grid.push(LrPoint {
            lr,
            seeds: seeds.to_vec(),
            val: match selection {
                Selection::Validation => Some(summarize(
                    format!("lr {lr} final validation accuracy"),
                    &vals,
                )?),
                Selection::Test => None,
            },
            test: summarize(format!("lr {lr} final test accuracy"), &tests)?,
        });
        grid_facts.push(row_facts);
    }
    let score = |p: &LrPoint| p.val.as_ref().map_or(p.test.mean, |v| v.mean);
    let chosen = (1..lr_grid.len()).fold(0, |best, i| {
        if score(&lr_grid[i]) > score(&lr_grid[best]) {
            i
        } else {
            best
        }
    });
    let at = &grid_facts[chosen];
    let chosen_lr = lrs[chosen];
    let column = |what: &str, f: &dyn Fn(&RunFacts) -> f64| {
        let xs: Vec<f64> = at.iter().map(f).collect();
        summarize(format!("lr {chosen_lr} {what}"), &xs)
    };
    let result = MethodResult {
        method: name.to_string(),
        workers,
        chosen_lr,
        final_test: lr_grid[chosen].test,
        per_seed: at.iter().map(|f| (f.run.seed, f.final_test)).collect(),
        best_epoch_test: column("best-epoch test accuracy", &|f| f.best_epoch_test)?,
        steps: column("updates", &|f| f.run.record.summary.updates as f64)?,
        wall_seconds: column("wall seconds", &|f| f.run.record.summary.wall_seconds)?,
        lr_grid,
    };
    Ok((result, at.iter().map(|f| f.run).collect()))
}

/// Every method but the best against the best, paired by seed, Holm-adjusted together.
fn significance(
    methods: &[MethodResult],
    best: usize,
) -> Result<Vec<Significance>, ComparisonError> {
    let reference = &methods[best];
    let mut out = Vec::new();
    for (i, m) in methods.iter().enumerate() {
        if i == best {
            continue;
        }
        let (a, b): (Vec<f64>, Vec<f64>) = m
            .per_seed
            .iter()
            .filter_map(|&(seed, acc)| {
                let other = reference.per_seed.iter().find(|(s, _)| *s == seed)?;
                Some((acc, other.1))
            })
            .unzip();
        if a.len() < 2 {
            continue;
        }
        let stats_error = |source| ComparisonError::Stats {
            method: m.method.clone(),
            what: format!("paired test against {}", reference.method),
            source,
        };
        let result = stats::paired_test(&a, &b).map_err(stats_error)?;
        let differences: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        let mean_difference = stats::summarize(&differences).map_err(stats_error)?.mean;
        out.push(Significance {
            method: m.method.clone(),
            against: reference.method.clone(),
            test: result.test,
            n_pairs: a.len(),
            mean_difference,
            p_value: result.p_value,
            p_holm: result.p_value,
            significant: false,
        });
    }
    let p: Vec<f64> = out.iter().map(|s| s.p_value).collect();
    let adjusted = stats::holm(&p).map_err(|source| ComparisonError::Stats {
        method: reference.method.clone(),
        what: "Holm's correction".to_string(),
        source,
    })?;
    for (s, p_holm) in out.iter_mut().zip(adjusted) {
        s.p_holm = p_holm;
        s.significant = p_holm < ALPHA;
    }
    Ok(out)
}

/// Test accuracy of each method's runs at the chosen lr at the smallest mean wall time.
fn equal_time(
    methods: &[MethodResult],
    chosen_runs: &[Vec<&GridRun>],
) -> Result<EqualTime, ComparisonError> {
    let budget = methods
        .iter()
        .map(|m| m.wall_seconds.mean)
        .fold(f64::INFINITY, f64::min);
    let mut ranking = Vec::with_capacity(methods.len());
    for (m, runs) in methods.iter().zip(chosen_runs) {
        let within: Option<Vec<f64>> = runs
            .iter()
            .map(|run| {
                run.record
                    .evals
                    .iter()
                    .filter(|e| e.elapsed_s <= budget)
                    .filter_map(|e| e.accuracy)
                    .next_back()
            })
            .collect();
        let summary = match within {
            Some(xs) => Some(
                stats::summarize(&xs).map_err(|source| ComparisonError::Stats {
                    method: m.method.clone(),
                    what: format!("test accuracy within {budget} s"),
                    source,
                })?,
            ),
            None => None,
        };
        ranking.push((m.method.clone(), summary));
    }
    ranking.sort_by(|(_, a), (_, b)| match (a, b) {
        (Some(a), Some(b)) => b.mean.total_cmp(&a.mean),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    Ok(EqualTime {
        budget_seconds: budget,
        ranking,
    })
}

impl Comparison {
    /// The findings in plain words, for the report: the selection rule, the best method, each
    /// other method against it, lrs chosen at the edge of their grid, and the equal-time
    /// ranking.
    ///
    /// ```
    /// # use stagewise_report::comparison::*;
    /// # use stagewise_report::stats::{summarize, PairedTest};
    /// let s = |xs: &[f64]| summarize(xs).unwrap();
    /// let method = |name: &str, acc: &[f64]| MethodResult {
    ///     method: name.into(), workers: None, lr_grid: vec![], chosen_lr: 0.1,
    ///     final_test: s(acc), per_seed: acc.iter().map(|&a| (0, a)).collect(),
    ///     best_epoch_test: s(acc), steps: s(&[100.0]), wall_seconds: s(&[10.0]) };
    /// let c = Comparison {
    ///     selection: Selection::Validation,
    ///     methods: vec![method("qhm", &[0.90, 0.91, 0.92]), method("sgd", &[0.89, 0.90, 0.90])],
    ///     best: 0,
    ///     significance: vec![Significance { method: "sgd".into(), against: "qhm".into(),
    ///         test: PairedTest::Wilcoxon, n_pairs: 3, mean_difference: -0.0133, p_value: 0.25,
    ///         p_holm: 0.25, significant: false }],
    ///     equal_time: EqualTime { budget_seconds: 10.0, ranking: vec![] },
    ///     diverged: vec!["sgd lr 1 seed 0".into()],
    /// };
    /// let text = c.sentences().join(" ");
    /// assert!(text.contains("qhm (0.9100 ± 0.0100) is the best"), "{text}");
    /// assert!(text.contains("with 3 seeds the smallest possible p is 0.25"), "{text}");
    /// assert!(text.contains("1 run diverged"), "{text}");
    /// ```
    pub fn sentences(&self) -> Vec<String> {
        let mut out = vec![match self.selection {
            Selection::Validation => "The lr was chosen on validation accuracy; test accuracy \
                                      was not looked at to choose it."
                .to_string(),
            Selection::Test => "Not every run held out a validation split, so the lr was \
                                chosen on test accuracy: the test accuracies at the chosen lr \
                                (and the best-epoch ones) are optimistic."
                .to_string(),
        }];
        if !self.diverged.is_empty() {
            out.push(format!(
                "{} {} diverged (the loss or a gradient became NaN or infinite) and {} as chance \
                 accuracy: {}.",
                self.diverged.len(),
                plural(self.diverged.len(), "run"),
                if self.diverged.len() == 1 {
                    "counts"
                } else {
                    "count"
                },
                self.diverged.join(", ")
            ));
        }
        let Some(best) = self.methods.get(self.best) else {
            return out;
        };
        out.push(format!(
            "{} ({}) is the best (final test accuracy, mean ± sd over {} {}, at lr {}).",
            best.method,
            mean_sd(&best.final_test),
            best.final_test.n,
            plural(best.final_test.n, "seed"),
            best.chosen_lr
        ));
        for (i, m) in self.methods.iter().enumerate() {
            if i == self.best {
                continue;
            }
            let Some(s) = self.significance.iter().find(|s| s.method == m.method) else {
                out.push(format!(
                    "{} ({}) is {:.4} lower than {}; with fewer than 2 seeds in common no test \
                     is possible.",
                    m.method,
                    mean_sd(&m.final_test),
                    best.final_test.mean - m.final_test.mean,
                    best.method
                ));
                continue;
            };
            let gap = if s.mean_difference < 0.0 {
                format!("{:.4} lower", -s.mean_difference)
            } else if s.mean_difference > 0.0 {
                format!("{:.4} higher", s.mean_difference)
            } else {
                "equal on average".to_string()
            };
            let mut detail = format!(
                "{}, n = {}, Holm-adjusted {}",
                s.test.name(),
                s.n_pairs,
                p_phrase(s.p_holm)
            );
            if s.test == PairedTest::Wilcoxon && !s.significant {
                detail += &format!(
                    "; with {} seeds the smallest possible p is {}",
                    s.n_pairs,
                    stats::wilcoxon_min_p(s.n_pairs)
                );
            }
            out.push(format!(
                "{} ({}) is {}, {} ({}).",
                m.method,
                mean_sd(&m.final_test),
                gap,
                if s.significant {
                    "significant"
                } else {
                    "not significant"
                },
                detail
            ));
        }
        for m in &self.methods {
            if m.lr_grid.len() < 2 {
                continue;
            }
            let first = m.lr_grid.first().map(|p| p.lr);
            let last = m.lr_grid.last().map(|p| p.lr);
            let edge = if Some(m.chosen_lr) == first {
                "smallest"
            } else if Some(m.chosen_lr) == last {
                "largest"
            } else {
                continue;
            };
            out.push(format!(
                "{}'s chosen lr {} is the {edge} of its grid: the best lr may lie outside it.",
                m.method, m.chosen_lr
            ));
        }
        if !self.equal_time.ranking.is_empty() {
            let items: Vec<String> = self
                .equal_time
                .ranking
                .iter()
                .map(|(name, s)| match s {
                    Some(s) => format!("{name} {}", mean_sd(s)),
                    None => format!("{name} (no evaluation within the budget in every seed)"),
                })
                .collect();
            out.push(format!(
                "At equal wall time ({:.1} s, the smallest mean wall time of a method) the test \
                 accuracy ranks: {}.",
                self.equal_time.budget_seconds,
                items.join(", ")
            ));
        }
        out
    }
}

fn mean_sd(s: &SampleSummary) -> String {
    format!("{:.4} ± {:.4}", s.mean, s.std)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// "p = " with two significant digits, "p < 0.001" below that.
fn p_phrase(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_string()
    } else if p < 0.01 {
        format!("p = {p:.4}")
    } else if p < 0.1 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_print_with_two_significant_digits() {
        assert_eq!(p_phrase(0.75), "p = 0.75");
        assert_eq!(p_phrase(0.0123), "p = 0.012");
        assert_eq!(p_phrase(0.00456), "p = 0.0046");
        assert_eq!(p_phrase(0.0001), "p < 0.001");
        assert_eq!(p_phrase(1.0), "p = 1.00");
    }
}
