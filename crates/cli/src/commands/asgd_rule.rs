//! The plan of `stagewise asgd`, `ps serve` and `ps worker`: the recipe adapted to M
//! asynchronous workers by the library's staleness rule (`--asgd-rule`, docs/theory.md §4.2;
//! [`stagewise_train::asgd_rule`]) when it applies, else as given. All three commands call
//! [`plan_for_workers`] with the same options, so a server and its workers follow one plan;
//! this module only renders the library's outcome.

use anyhow::Context;
use stagewise_core::optim::OptimizerKind;
use stagewise_core::schedule::{fmt_num, Plan};
use stagewise_core::theory::{
    AdaptedRecipe, AsgdRun, AsgdUpdate, HMaxSource, RuleOutcome, SkipReason,
};
use stagewise_data::Dataset;
use stagewise_train::asgd_rule::{apply_asgd_rule, InitialModel};
use stagewise_train::DataConfig;

use super::advice::{render_note, rule_error, Audience};
use super::options::{AsgdRuleArgs, ModelArgs, ServerArgs};

/// How a server configured by `server` applies the gradients of `workers` workers.
pub fn server_run(server: &ServerArgs, workers: usize) -> AsgdRun {
    AsgdRun {
        workers: u32::try_from(workers).unwrap_or(u32::MAX),
        update: if server.is_sync() {
            AsgdUpdate::Averaged
        } else {
            AsgdUpdate::PerPush
        },
        optimizer: server.optimizer_kind(),
    }
}

/// How a `ps worker`'s servers apply the gradients: averaged with `--sync`, per push otherwise.
/// A worker cannot see the servers' optimizer and takes it to be QHM: with `ps serve
/// --optimizer` other than qhm, give the workers `--asgd-rule none`.
pub fn worker_run(workers: usize, sync: bool) -> AsgdRun {
    AsgdRun {
        workers: u32::try_from(workers).unwrap_or(u32::MAX),
        update: if sync {
            AsgdUpdate::Averaged
        } else {
            AsgdUpdate::PerPush
        },
        optimizer: OptimizerKind::Qhm,
    }
}

/// The run's plan: the recipe adapted by the staleness rule when it applies, else as given.
/// Prints what the rule did on stderr (the rule line unless `quiet`; a note when the rule was
/// asked for but does not apply).
pub fn plan_for_workers(
    model: &ModelArgs,
    rule: &AsgdRuleArgs,
    run: AsgdRun,
    train: &Dataset,
    data: &DataConfig,
    to: Audience,
    quiet: bool,
) -> anyhow::Result<Plan> {
    let h_max = rule.h_max()?;
    let recipe = model.plan.recipe_params();
    let initial = InitialModel {
        kind: model.kind(),
        seed: model.seed(),
        train,
        data,
    };
    let announce = || {
        if !quiet {
            eprintln!(
                "asgd rule: estimating h_max of the initial {} (--h-max H skips this, \
                 --asgd-rule none keeps the recipe as given)...",
                model.kind()
            );
        }
    };
    let outcome = apply_asgd_rule(
        rule.rule(),
        recipe.as_ref().map(|(r, p)| (*r, p)),
        &run,
        h_max,
        &initial,
        announce,
    )
    .map_err(|e| rule_error(e, to))
    .context("adapting the recipe to asynchronous workers (--asgd-rule)")?;
    match outcome {
        RuleOutcome::Skipped { reason } => {
            if reason != SkipReason::Disabled && rule.asked() {
                eprintln!("note: --asgd-rule theory not applied: {reason}");
            }
            model.plan()
        }
        RuleOutcome::Applied(adapted) => {
            if !quiet {
                eprintln!("{}", render_applied(&adapted, to));
                if model.worker_batch.is_some() {
                    eprintln!(
                        "note: --worker-batch fixes every gradient's batch, so the rule's b0 = {} \
                         is not used and α/b is not kept",
                        adapted.params.batch
                    );
                }
            }
            Ok(adapted.params.build(adapted.recipe)?)
        }
    }
}

/// The rule line and its reasons and warnings, for `to`.
pub fn render_applied(a: &AdaptedRecipe, to: Audience) -> String {
    let (before, after) = (&a.before, &a.params);
    let mut s = format!(
        "asgd rule (docs/theory.md §4.2, --asgd-rule theory; h_max = {} {}): α0 {} → {}, \
         β0 {} → {}, b0 {} → {} per worker",
        fmt_num(a.h_max),
        match a.h_max_source {
            HMaxSource::Given => "given",
            HMaxSource::InitialModel => "at initialization",
        },
        fmt_num(before.lr),
        fmt_num(after.lr),
        fmt_num(before.momentum),
        fmt_num(after.momentum),
        before.batch,
        after.batch
    );
    for n in a.reasons.iter().chain(&a.warnings) {
        s.push_str("\n  - ");
        s.push_str(&render_note(n, to));
    }
    match to {
        Audience::PsServe => s.push_str(&format!(
            "\n  - the workers must follow the same plan: give `ps worker` the same options \
             (with --h-max {} it skips its own estimate)",
            fmt_num(a.h_max)
        )),
        Audience::PsWorker => s.push_str(
            "\n  - the servers must follow the same plan: give `ps serve` the same options",
        ),
        Audience::Asgd | Audience::PlanRecommend { .. } => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::advice::tests::{assert_hints_use_options, flags_in};
    use super::super::asgd::AsgdArgs;
    use super::super::options::option_names;
    use super::super::ps::{ServeArgs, WorkerArgs};
    use super::*;
    use stagewise_core::schedule::{Recipe, RecipeParams};
    use stagewise_core::theory::adapt_recipe;

    #[test]
    fn asgd_and_ps_hints_name_only_their_own_options() {
        assert_hints_use_options(Audience::Asgd, &option_names::<AsgdArgs>());
        assert_hints_use_options(Audience::PsServe, &option_names::<ServeArgs>());
        assert_hints_use_options(Audience::PsWorker, &option_names::<WorkerArgs>());
    }

    #[test]
    fn the_rule_line_names_only_options_of_the_command() {
        // The cases of the library's rule that carry hints: the cap binding (keep-ratio), an
        // error, and a warning (16 workers exceed β0 = 0.9 on their own).
        let p = RecipeParams {
            epochs: 6,
            ..RecipeParams::default()
        };
        let mut texts = Vec::new();
        for (to, names) in [
            (Audience::Asgd, option_names::<AsgdArgs>()),
            (Audience::PsServe, option_names::<ServeArgs>()),
            (Audience::PsWorker, option_names::<WorkerArgs>()),
        ] {
            for (m, h) in [(4, 2.97), (16, 0.01)] {
                let a = adapt_recipe(Recipe::Stagewise, &p, m, h, HMaxSource::Given).unwrap();
                texts.push((to, render_applied(&a, to), names.clone()));
            }
            let e = adapt_recipe(Recipe::Stagewise, &p, 64, 30.0, HMaxSource::Given).unwrap_err();
            let e = format!("{:#}", super::super::advice::advice_error(e, to));
            assert!(
                e.contains("--stages below 3") && !e.contains("keep-batch"),
                "{e}"
            );
            texts.push((to, e, names));
        }
        for (to, text, names) in texts {
            for flag in flags_in(&text) {
                assert!(names.contains(&flag), "{to:?} suggests --{flag}: {text}");
            }
        }
    }

    #[test]
    fn the_rule_line_is_the_same_for_asgd_and_ps_serve() {
        let p = RecipeParams::default();
        let a = adapt_recipe(Recipe::Stagewise, &p, 4, 2.97, HMaxSource::InitialModel).unwrap();
        let asgd = render_applied(&a, Audience::Asgd);
        let serve = render_applied(&a, Audience::PsServe);
        assert!(
            asgd.starts_with(
                "asgd rule (docs/theory.md §4.2, --asgd-rule theory; h_max = 2.97 at \
                 initialization): α0 0.5 → 0.0742188, β0 0.9 → 0.6, b0 256 → 38 per worker"
            ),
            "{asgd}"
        );
        assert!(serve.starts_with(&asgd), "{serve}");
    }
}
