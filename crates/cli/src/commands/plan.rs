//! `stagewise plan`: show multistage plans, from a TOML file or built from a recipe.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use stagewise_core::schedule::{Plan, Recipe, RecipeParams};

/// Arguments of `stagewise plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(subcommand)]
    command: PlanCommand,
}

#[derive(Subcommand, Debug)]
enum PlanCommand {
    /// Print a plan's stage table (or the plan as TOML/JSON), from a file or a recipe.
    ///
    /// Examples: `stagewise plan show plan.toml`;
    /// `stagewise plan show --recipe stagewise --lr 0.1 --momentum 0.9 --batch 128 --epochs 30
    /// --stages 4 --drop 2 --toml > plan.toml`.
    Show(ShowArgs),
}

/// Arguments of `stagewise plan show`.
#[derive(Args, Debug)]
struct ShowArgs {
    /// Plan file (TOML) to show. Give either FILE or --recipe.
    #[arg(
        value_name = "FILE",
        required_unless_present = "recipe",
        conflicts_with_all = ["recipe", "lr", "momentum", "nu", "batch", "epochs", "stages", "drop"]
    )]
    file: Option<PathBuf>,

    /// Build the plan from a recipe: step, stagewise, cosine, onecycle or constant.
    #[arg(long, value_name = "NAME")]
    recipe: Option<Recipe>,

    /// Recipe: initial learning rate α0 (normalized QHM) [default: 0.1].
    #[arg(long, requires = "recipe")]
    lr: Option<f64>,

    /// Recipe: initial momentum β0, in [0, 1) [default: 0.9].
    #[arg(long, requires = "recipe")]
    momentum: Option<f64>,

    /// Recipe: immediate discount ν, in [0, 1], fixed across stages [default: 0.7].
    #[arg(long, requires = "recipe")]
    nu: Option<f64>,

    /// Recipe: initial batch size b0 [default: 128].
    #[arg(long, requires = "recipe")]
    batch: Option<u64>,

    /// Recipe: total number of epochs [default: 30].
    #[arg(long, requires = "recipe")]
    epochs: Option<u64>,

    /// Recipe: number of stages, for step and stagewise [default: 4].
    #[arg(long, requires = "recipe")]
    stages: Option<usize>,

    /// Recipe: drop factor r >= 1, for step and stagewise [default: 2].
    #[arg(long, requires = "recipe")]
    drop: Option<f64>,

    /// Print the plan as TOML (to save it as a plan file) instead of the table.
    #[arg(long, conflicts_with = "json")]
    toml: bool,

    /// Print the plan as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    /// Recipe parameters: the defaults of [`RecipeParams`], overridden by the options given.
    fn recipe_params(&self) -> RecipeParams {
        let d = RecipeParams::default();
        RecipeParams {
            lr: self.lr.unwrap_or(d.lr),
            momentum: self.momentum.unwrap_or(d.momentum),
            nu: self.nu.unwrap_or(d.nu),
            batch: self.batch.unwrap_or(d.batch),
            epochs: self.epochs.unwrap_or(d.epochs),
            stages: self.stages.unwrap_or(d.stages),
            drop: self.drop.unwrap_or(d.drop),
        }
    }

    fn plan(&self) -> anyhow::Result<Plan> {
        match (&self.file, self.recipe) {
            (_, Some(recipe)) => recipe
                .build(&self.recipe_params())
                .with_context(|| format!("building the '{recipe}' recipe")),
            (Some(path), None) => {
                Plan::load(path).with_context(|| format!("loading plan {}", path.display()))
            }
            (None, None) => anyhow::bail!("give a plan FILE or --recipe NAME"),
        }
    }
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    if args.toml {
        print!("{}", plan.to_toml_string()?);
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{plan}");
    }
    Ok(())
}

/// Runs `stagewise plan`.
pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    match args.command {
        PlanCommand::Show(a) => show(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: PlanCommand,
    }

    fn parse(args: &[&str]) -> Result<ShowArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("plan").chain(args.iter().copied()))?;
        match cli.command {
            PlanCommand::Show(a) => Ok(a),
        }
    }

    #[test]
    fn recipe_options_override_defaults() {
        let a = parse(&[
            "show",
            "--recipe",
            "stagewise",
            "--batch",
            "256",
            "--drop",
            "4",
        ])
        .unwrap();
        let p = a.recipe_params();
        assert_eq!((p.batch, p.drop, p.lr, p.stages), (256, 4.0, 0.1, 4));
        let plan = a.plan().unwrap();
        assert_eq!(plan.stages[1].batch_size, 64);
    }

    #[test]
    fn bad_combinations_are_refused() {
        assert!(parse(&["show"]).is_err());
        assert!(parse(&["show", "plan.toml", "--recipe", "step"]).is_err());
        assert!(parse(&["show", "plan.toml", "--lr", "0.1"]).is_err());
        assert!(parse(&["show", "--recipe", "step", "--toml", "--json"]).is_err());
        let e = parse(&["show", "--recipe", "exponential"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("exponential"), "{e}");
    }

    #[test]
    fn batch_below_one_is_an_error_not_a_panic() {
        let a = parse(&[
            "show",
            "--recipe",
            "stagewise",
            "--batch",
            "4",
            "--stages",
            "6",
            "--epochs",
            "60",
        ])
        .unwrap();
        let e = format!("{:#}", a.plan().unwrap_err());
        assert!(e.contains("below 1"), "{e}");
    }
}
