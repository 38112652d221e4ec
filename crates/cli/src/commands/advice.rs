//! Rendering the library's typed advice for the command at hand: a [`Note`]'s text as is, and
//! each [`Hint`] as that command's own option (or nothing, where the command has no option for
//! it). No code here reads the library's text.

use stagewise_core::schedule::fmt_num;
use stagewise_core::theory::{AdviceError, AsgdBatch, Hint, Note};
use stagewise_train::asgd_rule::RuleError;

/// The command whose options spell a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// `plan recommend`; `from_qhm`: the setting's momentum is `--beta` (else `--momentum`).
    PlanRecommend {
        /// `--from qhm`.
        from_qhm: bool,
    },
    /// `stagewise asgd`.
    Asgd,
    /// `stagewise ps serve`.
    PsServe,
    /// `stagewise ps worker`.
    PsWorker,
}

fn batch_rule_name(rule: AsgdBatch) -> &'static str {
    match rule {
        AsgdBatch::KeepRatio => "keep-ratio",
        AsgdBatch::KeepBatch => "keep-batch",
    }
}

/// `hint` as an option of `to`: "what: --option value", or `None` when `to` has no option
/// for it (e.g. `asgd` has no `--cap-fraction`).
pub fn hint_advice(hint: &Hint, to: Audience) -> Option<String> {
    let recommend = matches!(to, Audience::PlanRecommend { .. });
    Some(match *hint {
        Hint::SetNu { nu } => format!("set ν: --nu {}", fmt_num(nu)),
        Hint::AverageUpdates => match to {
            Audience::PlanRecommend { .. } => "averaged updates: --update averaged".into(),
            Audience::Asgd | Audience::PsServe => "averaged updates: --policy sync".into(),
            Audience::PsWorker => return None,
        },
        Hint::GiveHMax if recommend => {
            "give h_max: --h-max H or --estimate-from-model RUN_DIR|MODEL".into()
        }
        Hint::GiveHMax => "give h_max: --h-max H".into(),
        Hint::LowerCapFraction { current } if recommend => {
            format!(
                "a lower cap fraction: --cap-fraction below {}",
                fmt_num(current)
            )
        }
        Hint::UseBatchRule { rule } if recommend => {
            let what = match rule {
                AsgdBatch::KeepBatch => "keep b0 instead",
                AsgdBatch::KeepRatio => "lower b0 with α instead",
            };
            format!("{what}: --asgd-batch {}", batch_rule_name(rule))
        }
        Hint::LowerCapFraction { .. } | Hint::UseBatchRule { .. } => return None,
        Hint::LargerBatch { current } => format!("a larger b0: --batch above {current}"),
        Hint::FewerStages { current } => format!("fewer stages: --stages below {current}"),
        Hint::FewerWorkers { current } => format!("fewer workers: --workers below {current}"),
        Hint::LargerMomentum { current } => {
            let flag = match to {
                Audience::PlanRecommend { from_qhm: true } => "--beta",
                _ => "--momentum",
            };
            format!("a larger β: {flag} above {}", fmt_num(current))
        }
    })
}

/// The hints `to` has options for, joined, or `None` if it has none.
pub fn hints_advice(hints: &[Hint], to: Audience) -> Option<String> {
    let parts: Vec<String> = hints.iter().filter_map(|h| hint_advice(h, to)).collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A note for `to`: its text, then its hints in parentheses.
pub fn render_note(note: &Note, to: Audience) -> String {
    match hints_advice(&note.hints, to) {
        Some(h) => format!("{} ({h})", note.text),
        None => note.text.clone(),
    }
}

/// An error of the library's advice, with its hints spelled for `to`.
pub fn advice_error(e: AdviceError, to: Audience) -> anyhow::Error {
    match hints_advice(e.hints(), to) {
        Some(h) => anyhow::anyhow!("{e} ({h})"),
        None => e.into(),
    }
}

/// An error of the staleness rule, with its hints spelled for `to`.
pub fn rule_error(e: RuleError, to: Audience) -> anyhow::Error {
    match e {
        RuleError::Adapt(e) => advice_error(e, to),
        e => e.into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One hint of each kind; the match fails to compile when a kind is added, so that it is
    /// added here too.
    pub(crate) fn every_hint() -> Vec<Hint> {
        let all = vec![
            Hint::SetNu { nu: 0.7 },
            Hint::AverageUpdates,
            Hint::GiveHMax,
            Hint::LowerCapFraction { current: 0.5 },
            Hint::UseBatchRule {
                rule: AsgdBatch::KeepBatch,
            },
            Hint::UseBatchRule {
                rule: AsgdBatch::KeepRatio,
            },
            Hint::LargerBatch { current: 128 },
            Hint::FewerStages { current: 4 },
            Hint::FewerWorkers { current: 16 },
            Hint::LargerMomentum { current: 0.9 },
        ];
        for h in &all {
            match h {
                Hint::SetNu { .. }
                | Hint::AverageUpdates
                | Hint::GiveHMax
                | Hint::LowerCapFraction { .. }
                | Hint::UseBatchRule { .. }
                | Hint::LargerBatch { .. }
                | Hint::FewerStages { .. }
                | Hint::FewerWorkers { .. }
                | Hint::LargerMomentum { .. } => {}
            }
        }
        all
    }

    /// The `--options` a text names, as clap ids (`--h-max` → `h_max`).
    pub(crate) fn flags_in(text: &str) -> Vec<String> {
        text.split(|c: char| c.is_whitespace() || "();,".contains(c))
            .filter_map(|w| w.strip_prefix("--"))
            .map(|f| {
                f.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                    .replace('-', "_")
            })
            .collect()
    }

    /// Every hint `to` renders names only options in `options` (the command's clap ids).
    pub(crate) fn assert_hints_use_options(to: Audience, options: &[String]) {
        for h in every_hint() {
            if let Some(text) = hint_advice(&h, to) {
                for flag in flags_in(&text) {
                    assert!(
                        options.contains(&flag),
                        "{to:?}: {h:?} suggests --{flag}, which is not an option: {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn flags_are_found_in_texts() {
        assert_eq!(
            flags_in("give h_max: --h-max H or --estimate-from-model RUN_DIR|MODEL"),
            ["h_max", "estimate_from_model"]
        );
        assert_eq!(
            flags_in("(a: --batch above 3; b: --stages below 2)"),
            ["batch", "stages"]
        );
        assert!(flags_in("α0 = 0.1 → 0.05").is_empty());
    }

    #[test]
    fn hints_render_per_command_and_are_left_out_where_there_is_no_option() {
        let cap = Hint::LowerCapFraction { current: 0.5 };
        let recommend = Audience::PlanRecommend { from_qhm: false };
        assert_eq!(
            hint_advice(&cap, recommend).unwrap(),
            "a lower cap fraction: --cap-fraction below 0.5"
        );
        assert_eq!(hint_advice(&cap, Audience::Asgd), None);
        let keep = Hint::UseBatchRule {
            rule: AsgdBatch::KeepBatch,
        };
        assert_eq!(hint_advice(&keep, Audience::PsServe), None);
        assert_eq!(
            hint_advice(&Hint::AverageUpdates, Audience::Asgd).unwrap(),
            "averaged updates: --policy sync"
        );
        let beta = Hint::LargerMomentum { current: 0.9 };
        let qhm = Audience::PlanRecommend { from_qhm: true };
        assert!(hint_advice(&beta, qhm)
            .unwrap()
            .contains("--beta above 0.9"));
        // A note whose only hint has no option is its text alone.
        let note = Note::new(stagewise_core::theory::Topic::BeyondStabilityLimit, "x").hint(cap);
        assert_eq!(render_note(&note, Audience::Asgd), "x");
        assert_eq!(
            render_note(&note, recommend),
            "x (a lower cap fraction: --cap-fraction below 0.5)"
        );
    }
}
