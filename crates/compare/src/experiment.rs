//! The experiment file: methods × learning rates × seeds on one dataset and one epoch budget
//! (docs/compare.md), checked in full before any run starts.
//!
//! ```
//! use stagewise_compare::Experiment;
//! let exp = Experiment::from_toml_str(r#"
//!     name = "demo"
//!     model = "mlp"
//!     epochs = 2
//!     seeds = [0, 1]
//!     [data]
//!     dataset = "synthetic"
//!     train_subset = 600
//!     test_subset = 200
//!     val_split = 100
//!     [[method]]
//!     name = "sgd-cosine"
//!     optimizer = "sgd"
//!     recipe = "cosine"
//!     lr = [0.05, 0.1]
//! "#, std::path::Path::new(".")).unwrap();
//! assert_eq!(exp.grid().unwrap().len(), 4); // 1 method × 2 lr × 2 seeds
//! ```

use serde::{Deserialize, Serialize};
use stagewise_core::optim::OptimizerKind;
use stagewise_core::schedule::{Plan, PlanError, Recipe, RecipeParams};
use stagewise_core::theory::AsgdRule;
use stagewise_ps::config::PolicyConfig;
use stagewise_train::model::ModelKind;
use stagewise_train::{DataConfig, DatasetKind};
use std::path::{Path, PathBuf};

/// Why an experiment file was refused; every message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Malformed TOML, an unknown key, an unknown optimizer or recipe, a wrong type.
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range or options contradict each other.
    #[error("{field}: {message}")]
    Field {
        /// The field, e.g. `method[2].lr`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A method's plan does not validate.
    #[error("{field}: {source}")]
    Plan {
        /// The method's field, e.g. `method[1].plan`.
        field: String,
        /// Why the plan was refused.
        source: Box<PlanError>,
    },
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> ExperimentError {
    ExperimentError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// The data every method trains and is evaluated on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentData {
    /// `fashion-mnist` (default) or `synthetic`.
    #[serde(default = "default_dataset")]
    pub dataset: DatasetKind,
    /// An explicit Fashion-MNIST folder.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Train on a stratified subset of this many images.
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Evaluate on a stratified subset of this many test images.
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// Training images held out for validation, on which the lr is chosen (the same images for
    /// every method and seed). Without it the lr is chosen on test accuracy, and the report
    /// says that this is optimistic.
    #[serde(default)]
    pub val_split: Option<usize>,
    /// Random crop and flip.
    #[serde(default)]
    pub augment: bool,
}

fn default_dataset() -> DatasetKind {
    DatasetKind::FashionMnist
}

impl Default for ExperimentData {
    fn default() -> Self {
        Self {
            dataset: default_dataset(),
            data_dir: None,
            train_subset: None,
            test_subset: None,
            val_split: None,
            augment: false,
        }
    }
}

impl ExperimentData {
    /// The runs' data configuration.
    pub fn config(&self) -> DataConfig {
        DataConfig {
            dataset: self.dataset,
            data_dir: self.data_dir.clone(),
            train_subset: self.train_subset,
            test_subset: self.test_subset,
            val_split: self.val_split,
            augment: self.augment,
            ..DataConfig::default()
        }
    }
}

/// What `--quick` changes: fewer epochs, a data subset, one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quick {
    /// The epoch budget.
    pub epochs: u64,
    /// Training subset.
    pub train_subset: usize,
    /// Test subset.
    pub test_subset: usize,
    /// Validation split (when the experiment has one).
    pub val_split: usize,
    /// The seeds (default: the experiment's first).
    pub seeds: Option<Vec<u64>>,
}

impl Default for Quick {
    /// 3 epochs on 6,000 training images (1,000 of them held out when the experiment
    /// validates) and 2,000 test images, one seed.
    fn default() -> Self {
        Self {
            epochs: 3,
            train_subset: 5000,
            test_subset: 2000,
            val_split: 1000,
            seeds: None,
        }
    }
}

/// How a method's runs are executed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asgd {
    /// Worker count M (>= 1).
    pub workers: usize,
    /// The staleness policy, e.g. `{ kind = "asgd" }` or `{ kind = "bounded", max_staleness = 4 }`.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Adapt the recipe to M workers (`theory`, docs/theory.md §4.2) or run it as given (`none`).
    #[serde(default)]
    pub rule: AsgdRule,
    /// The largest Hessian eigenvalue the rule uses; estimated at initialization when absent.
    #[serde(default)]
    pub h_max: Option<f64>,
    /// Evaluate every this many updates (always at the end).
    #[serde(default)]
    pub eval_every: Option<u64>,
}

/// One method: an optimizer driven by a recipe (with an lr grid) or by a plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// A unique name, used in the report and as the run folder's name.
    pub name: String,
    /// The optimizer (qhm, sgd, nesterov, adam, adamw, rmsprop, qhadam, sgd-schedulefree,
    /// adamw-schedulefree).
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// A recipe (exclusive with `plan`).
    #[serde(default)]
    pub recipe: Option<Recipe>,
    /// The recipe's other parameters (momentum, nu, batch, stages, drop, weight_decay,
    /// warm-up, …); `epochs` and `lr` come from the experiment and the grid.
    #[serde(default)]
    pub params: Option<RecipeParams>,
    /// A plan file, relative to the experiment file (exclusive with `recipe`); its length must
    /// be the experiment's epoch budget.
    #[serde(default)]
    pub plan: Option<PathBuf>,
    /// The grid of initial learning rates α0 (recipes only).
    #[serde(default)]
    pub lr: Vec<f64>,
    /// Another model than the experiment's.
    #[serde(default)]
    pub model: Option<ModelKind>,
    /// Run it asynchronously on an in-process parameter server.
    #[serde(default)]
    pub asgd: Option<Asgd>,
}

/// An experiment file (docs/compare.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The experiment's name (the report's title).
    pub name: String,
    /// The model every method trains (unless a method names its own).
    #[serde(default = "default_model")]
    pub model: ModelKind,
    /// The epoch budget of every method.
    pub epochs: u64,
    /// The seeds every method runs with.
    pub seeds: Vec<u64>,
    /// The data.
    #[serde(default)]
    pub data: ExperimentData,
    /// What `--quick` changes.
    #[serde(default)]
    pub quick: Quick,
    /// Evaluation batch size (does not change results).
    #[serde(default = "default_eval_batch")]
    pub eval_batch: usize,
    /// The methods.
    #[serde(default)]
    pub method: Vec<Method>,
    /// The folder plan paths are relative to (the experiment file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_model() -> ModelKind {
    ModelKind::Cnn
}

fn default_eval_batch() -> usize {
    1000
}

/// What one run of the grid trains.
#[derive(Debug, Clone, PartialEq)]
pub enum RunMode {
    /// `stagewise train`'s trainer.
    Train,
    /// `stagewise asgd`'s in-process parameter server.
    Asgd(Asgd),
}

/// One run of the grid: a method at one lr and one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// The method's name.
    pub method: String,
    /// The lr of the grid point (the plan's first α for plan methods).
    pub lr: f64,
    /// The seed.
    pub seed: u64,
    /// The architecture.
    pub model: ModelKind,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// The recipe and its parameters, when the method has one (the ASGD rule adapts it).
    pub recipe: Option<(Recipe, RecipeParams)>,
    /// The plan as built (before any ASGD rule).
    pub plan: Plan,
    /// Train or ASGD.
    pub mode: RunMode,
    /// The data.
    pub data: DataConfig,
    /// Evaluation batch size.
    pub eval_batch: usize,
}

impl RunSpec {
    /// The run folder's path inside the experiment's `runs/` folder:
    /// `METHOD/lr-LR/seed-SEED`.
    pub fn relative_dir(&self) -> PathBuf {
        PathBuf::from(&self.method)
            .join(format!("lr-{}", stagewise_core::schedule::fmt_num(self.lr)))
            .join(format!("seed-{}", self.seed))
    }

    /// The ASGD worker count, `None` for centralized runs.
    pub fn workers(&self) -> Option<u32> {
        match &self.mode {
            RunMode::Train => None,
            RunMode::Asgd(a) => u32::try_from(a.workers).ok(),
        }
    }
}

impl Experiment {
    /// Reads and checks an experiment file; plan paths are relative to its folder.
    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, base)
    }

    /// Parses and checks an experiment; `base_dir` is where plan paths start.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self, ExperimentError> {
        let mut exp: Experiment = toml::from_str(text)?;
        exp.base_dir = base_dir.to_path_buf();
        exp.grid()?;
        Ok(exp)
    }

    /// The same experiment shrunk as `[quick]` says.
    pub fn quick(&self) -> Self {
        let q = &self.quick;
        let seeds = q
            .seeds
            .clone()
            .unwrap_or_else(|| self.seeds.iter().take(1).copied().collect());
        Self {
            name: format!("{} (quick)", self.name),
            epochs: q.epochs,
            seeds,
            data: ExperimentData {
                train_subset: Some(q.train_subset),
                test_subset: Some(q.test_subset),
                val_split: self.data.val_split.map(|_| q.val_split),
                ..self.data.clone()
            },
            ..self.clone()
        }
    }

    /// Every run, method by method, lr by lr, seed by seed; refuses an empty grid, repeated
    /// names, recipes and plans that do not validate, and plans longer or shorter than the
    /// budget.
    pub fn grid(&self) -> Result<Vec<RunSpec>, ExperimentError> {
        if self.method.is_empty() {
            return Err(field_error(
                "method",
                "the experiment has no methods; add at least one [[method]]",
            ));
        }
        if self.seeds.is_empty() {
            return Err(field_error("seeds", "give at least one seed"));
        }
        if let Some(s) = repeated(&self.seeds) {
            return Err(field_error("seeds", format!("seed {s} is given twice")));
        }
        if self.epochs == 0 {
            return Err(field_error("epochs", "0 is out of range; allowed: >= 1"));
        }
        if self.eval_batch == 0 {
            return Err(field_error(
                "eval_batch",
                "0 is out of range; allowed: >= 1",
            ));
        }
        let names: Vec<&str> = self.method.iter().map(|m| m.name.as_str()).collect();
        if let Some(n) = repeated(&names) {
            return Err(field_error(
                "method.name",
                format!("'{n}' names two methods"),
            ));
        }
        let mut runs = Vec::new();
        for (i, m) in self.method.iter().enumerate() {
            for (lr, recipe, plan) in self.method_plans(i, m)? {
                for &seed in &self.seeds {
                    runs.push(RunSpec {
                        method: m.name.clone(),
                        lr,
                        seed,
                        model: m.model.unwrap_or(self.model),
                        optimizer: m.optimizer,
                        recipe: recipe.clone(),
                        plan: plan.clone(),
                        mode: m.asgd.clone().map_or(RunMode::Train, RunMode::Asgd),
                        data: self.data.config(),
                        eval_batch: self.eval_batch,
                    });
                }
            }
        }
        Ok(runs)
    }

    /// The (lr, recipe, plan) points of method `i`.
    #[allow(clippy::type_complexity)]
    fn method_plans(
        &self,
        i: usize,
        m: &Method,
    ) -> Result<Vec<(f64, Option<(Recipe, RecipeParams)>, Plan)>, ExperimentError> {
        let field = |name: &str| format!("method[{}].{name}", i + 1);
        let name_ok = !m.name.is_empty()
            && m.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(field_error(
                field("name"),
                format!(
                    "'{}' is not allowed; use letters, digits, '-', '_' or '.' (it names a folder)",
                    m.name
                ),
            ));
        }
        if let Some(a) = &m.asgd {
            if a.workers == 0 || a.workers > 256 {
                return Err(field_error(
                    field("asgd.workers"),
                    format!("{} is out of range; allowed: 1 ..= 256", a.workers),
                ));
            }
            a.policy
                .validate()
                .map_err(|e| field_error(field("asgd.policy"), e.to_string()))?;
            if let PolicyConfig::Sync { workers } = a.policy {
                if workers != a.workers {
                    return Err(field_error(
                        field("asgd.policy.workers"),
                        format!("{workers} differs from asgd.workers = {}", a.workers),
                    ));
                }
            }
        }
        match (&m.recipe, &m.plan) {
            (Some(_), Some(_)) => Err(field_error(
                field("plan"),
                "give a recipe or a plan, not both",
            )),
            (None, None) => Err(field_error(
                field("recipe"),
                "give a recipe (with an lr grid) or a plan file",
            )),
            (None, Some(path)) => {
                if !m.lr.is_empty() || m.params.is_some() {
                    return Err(field_error(
                        field("lr"),
                        "a plan method takes its learning rates from the plan; leave lr and \
                         params out",
                    ));
                }
                let full = self.base_dir.join(path);
                let plan = Plan::load(&full).map_err(|source| ExperimentError::Plan {
                    field: field("plan"),
                    source: Box::new(source),
                })?;
                if plan.total_epochs() != Some(self.epochs) {
                    return Err(field_error(
                        field("plan"),
                        format!(
                            "{} lasts {} epochs; every method runs the experiment's budget, \
                             epochs = {}",
                            full.display(),
                            plan.total_epochs()
                                .map_or_else(|| "a number of steps, not".into(), |e| e.to_string()),
                            self.epochs
                        ),
                    ));
                }
                Ok(vec![(plan.stages[0].lr, None, plan)])
            }
            (Some(recipe), None) => {
                if m.lr.is_empty() {
                    return Err(field_error(
                        field("lr"),
                        "the lr grid is empty; give at least one learning rate",
                    ));
                }
                if let Some(lr) = repeated_f64(&m.lr) {
                    return Err(field_error(field("lr"), format!("{lr} is given twice")));
                }
                let base = m.params.clone().unwrap_or_default();
                if m.params.is_some() && base.epochs != RecipeParams::default().epochs {
                    return Err(field_error(
                        field("params.epochs"),
                        format!(
                            "every method runs the experiment's budget (epochs = {}); leave \
                             params.epochs out",
                            self.epochs
                        ),
                    ));
                }
                m.lr.iter()
                    .map(|&lr| {
                        let params = RecipeParams {
                            lr,
                            epochs: self.epochs,
                            ..base.clone()
                        };
                        let plan =
                            params
                                .build(*recipe)
                                .map_err(|source| ExperimentError::Plan {
                                    field: format!("{} (lr {lr})", field("recipe")),
                                    source: Box::new(source),
                                })?;
                        Ok((lr, Some((*recipe, params)), plan))
                    })
                    .collect()
            }
        }
    }
}

fn repeated<T: PartialEq + Copy>(xs: &[T]) -> Option<T> {
    xs.iter()
        .enumerate()
        .find(|(i, x)| xs[..*i].contains(x))
        .map(|(_, x)| *x)
}

fn repeated_f64(xs: &[f64]) -> Option<f64> {
    repeated(xs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        name = "t"
        model = "mlp"
        epochs = 3
        seeds = [0, 1]
        [data]
        dataset = "synthetic"
    "#;

    fn parse(extra: &str) -> Result<Experiment, ExperimentError> {
        Experiment::from_toml_str(&format!("{BASE}{extra}"), Path::new("."))
    }

    #[test]
    fn the_grid_is_methods_by_lrs_by_seeds_with_the_budget() {
        let exp = parse(
            r#"
            [[method]]
            name = "a"
            recipe = "stagewise"
            lr = [0.1, 0.2]
            params = { stages = 3, momentum = 0.8 }
            [[method]]
            name = "b"
            optimizer = "adamw"
            recipe = "cosine"
            lr = [0.001]
            asgd = { workers = 2, policy = { kind = "staleness_aware" }, rule = "none" }
            "#,
        )
        .unwrap();
        let grid = exp.grid().unwrap();
        assert_eq!(grid.len(), 6);
        assert!(grid.iter().all(|r| r.plan.total_epochs() == Some(3)));
        assert_eq!(grid[0].plan.stages[0].beta, 0.8);
        assert_eq!(grid[2].lr, 0.2);
        assert_eq!(grid[5].workers(), Some(2));
        assert_eq!(grid[5].relative_dir(), PathBuf::from("b/lr-0.001/seed-1"));
        let quick = exp.quick();
        assert_eq!((quick.epochs, quick.seeds.clone()), (3, vec![0]));
        assert_eq!(quick.grid().unwrap().len(), 3);
    }

    #[test]
    fn bad_experiments_fail_at_once_naming_the_field() {
        let cases = [
            ("", "method: the experiment has no methods"),
            (
                "[[method]]\nname = \"a\"\nrecipe = \"cosine\"\nlr = []\n",
                "method[1].lr: the lr grid is empty",
            ),
            (
                "[[method]]\nname = \"a\"\nrecipe = \"cosine\"\nlr = [0.1]\nlrr = 1\n",
                "unknown field `lrr`",
            ),
            (
                "[[method]]\nname = \"a\"\nrecipe = \"cosinus\"\nlr = [0.1]\n",
                "unknown variant `cosinus`",
            ),
            (
                "[[method]]\nname = \"a\"\noptimizer = \"lion\"\nrecipe = \"cosine\"\nlr = [0.1]\n",
                "lion",
            ),
            (
                "[[method]]\nname = \"a\"\nrecipe = \"stagewise\"\nlr = [0.1]\nparams = { stages = 5 }\n",
                "method[1].recipe (lr 0.1)",
            ),
            (
                "[[method]]\nname = \"a\"\nrecipe = \"cosine\"\nlr = [-1.0]\n",
                "method[1].recipe (lr -1)",
            ),
            (
                "[[method]]\nname = \"a\"\nrecipe = \"cosine\"\nlr = [0.1]\n[[method]]\nname = \"a\"\nrecipe = \"cosine\"\nlr = [0.1]\n",
                "'a' names two methods",
            ),
            (
                "[[method]]\nname = \"a\"\nplan = \"missing.toml\"\n",
                "method[1].plan",
            ),
            (
                "[[method]]\nname = \"a b\"\nrecipe = \"cosine\"\nlr = [0.1]\n",
                "method[1].name",
            ),
            (
                "[[method]]\nname = \"a\"\nrecipe = \"cosine\"\nlr = [0.1]\nparams = { epochs = 9 }\n",
                "method[1].params.epochs",
            ),
            (
                "[[method]]\nname = \"a\"\nrecipe = \"cosine\"\nlr = [0.1]\nasgd = { workers = 0 }\n",
                "method[1].asgd.workers",
            ),
        ];
        for (extra, wanted) in cases {
            let e = parse(extra).unwrap_err().to_string();
            assert!(e.contains(wanted), "{extra:?}: {e}");
        }
    }

    #[test]
    fn a_plan_method_must_last_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let plan = "[[stages]]\nepochs = 2\nlr = 0.1\nbeta = 0.9\nnu = 0.7\nbatch_size = 64\n";
        std::fs::write(dir.path().join("p.toml"), plan).unwrap();
        let text = format!("{BASE}[[method]]\nname = \"p\"\nplan = \"p.toml\"\n");
        let e = Experiment::from_toml_str(&text, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lasts 2 epochs") && e.contains("epochs = 3"),
            "{e}"
        );
        std::fs::write(dir.path().join("p.toml"), plan.replace("= 2", "= 3")).unwrap();
        let exp = Experiment::from_toml_str(&text, dir.path()).unwrap();
        assert_eq!(exp.grid().unwrap()[0].lr, 0.1);
    }
}
