//! Plans: TOML round trip, validation messages, unknown keys, layout and lookups.

use stagewise_core::optim::WeightDecay;
use stagewise_core::schedule::{
    Combine, OneCycleShape, Plan, PlanError, Schedule, Stage, StageSchedule,
};

const GOOD: &str = r#"
name = "demo"
description = "two stages and a tail"
weight_decay = 0.0005
weight_decay_type = "direct"

[[stages]]
epochs = 5
lr = 0.1
beta = 0.9
nu = 0.7
batch_size = 128

[[stages]]
epochs = 10
lr = 0.05
beta = 0.95
nu = 0.7
batch_size = 64
[stages.schedule]
kind = "cosine"
min_factor = 0.1

[[stages]]
steps = 300
lr = 0.025
beta = 0.97
nu = 0.7
batch_size = 32
[stages.schedule]
kind = "custom"
mode = "replace"
lr = { kind = "piecewise_constant", boundaries = [100, 200], values = [0.02, 0.01, 0.005] }
"#;

/// A valid one-stage plan with `line` replacing the stage's `key = ...` line (or appended).
fn one_stage_with(key: &str, line: &str) -> String {
    let base = [
        ("epochs", "epochs = 3"),
        ("lr", "lr = 0.1"),
        ("beta", "beta = 0.9"),
        ("nu", "nu = 0.7"),
        ("batch_size", "batch_size = 128"),
    ];
    let mut s = String::from(
        "[[stages]]\nepochs = 1\nlr = 0.1\nbeta = 0.9\nnu = 0.7\nbatch_size = 8\n\n[[stages]]\n",
    );
    let mut replaced = false;
    for (k, l) in base {
        if k == key {
            replaced = true;
            if !line.is_empty() {
                s += line;
                s += "\n";
            }
        } else {
            s += l;
            s += "\n";
        }
    }
    if !replaced {
        s += line;
        s += "\n";
    }
    s
}

fn err(text: &str) -> String {
    Plan::from_toml_str(text).unwrap_err().to_string()
}

#[test]
fn parses_and_round_trips() {
    let plan = Plan::from_toml_str(GOOD).unwrap();
    assert_eq!(plan.name.as_deref(), Some("demo"));
    assert_eq!(plan.weight_decay, 5e-4);
    assert_eq!(plan.weight_decay_type, WeightDecay::Direct);
    assert_eq!(plan.stages.len(), 3);
    assert_eq!(plan.stages[2].steps, Some(300));
    let text = plan.to_toml_string().unwrap();
    let back = Plan::from_toml_str(&text).unwrap();
    assert_eq!(back, plan);
    // JSON too.
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
}

#[test]
fn round_trip_of_every_schedule_kind() {
    let join = Schedule::Join {
        boundaries: vec![10],
        schedules: vec![
            Schedule::LinearWarmup {
                start: 0.1,
                end: 1.0,
                steps: 10,
            },
            Schedule::Cosine {
                base: 1.0,
                eta_min: 0.0,
                t_max: 90,
                restarts: true,
            },
        ],
    };
    let stages = vec![
        Stage::for_epochs(2, 0.1, 0.9, 0.7, 64).with_schedule(StageSchedule::Warmup {
            start_factor: 0.1,
            fraction: 0.5,
        }),
        Stage::for_steps(1000, 0.1, 0.9, 0.7, 64).with_schedule(StageSchedule::OneCycle(
            OneCycleShape {
                three_phase: true,
                ..Default::default()
            },
        )),
        Stage::for_steps(100, 0.1, 0.9, 0.7, 64).with_schedule(StageSchedule::Custom {
            mode: Combine::Multiply,
            lr: Some(join),
            momentum: Some(Schedule::constant(1.0)),
        }),
    ];
    let plan = Plan::new(stages);
    let text = plan.to_toml_string().unwrap();
    assert_eq!(Plan::from_toml_str(&text).unwrap(), plan, "{text}");
}

#[test]
fn save_and_load() {
    let plan = Plan::from_toml_str(GOOD).unwrap();
    let path = std::env::temp_dir().join(format!("stagewise-plan-{}.toml", std::process::id()));
    plan.save(&path).unwrap();
    assert_eq!(Plan::load(&path).unwrap(), plan);
    std::fs::remove_file(&path).unwrap();
    let e = Plan::load(&path).unwrap_err();
    assert!(matches!(e, PlanError::Io { .. }));
    assert!(e.to_string().contains("stagewise-plan-"));
}

#[test]
fn range_errors_name_stage_field_and_range() {
    let cases = [
        (
            "beta",
            "beta = 1.2",
            "stage 2: field 'beta' = 1.2 is out of range; allowed: 0 <= beta < 1",
        ),
        (
            "beta",
            "beta = -0.1",
            "stage 2: field 'beta' = -0.1 is out of range; allowed: 0 <= beta < 1",
        ),
        (
            "lr",
            "lr = 0.0",
            "stage 2: field 'lr' = 0 is out of range; allowed: finite lr > 0",
        ),
        (
            "lr",
            "lr = -1.0",
            "stage 2: field 'lr' = -1 is out of range; allowed: finite lr > 0",
        ),
        (
            "lr",
            "lr = inf",
            "stage 2: field 'lr' = inf is out of range; allowed: finite lr > 0",
        ),
        (
            "lr",
            "lr = nan",
            "stage 2: field 'lr' = NaN is out of range; allowed: finite lr > 0",
        ),
        (
            "nu",
            "nu = 1.5",
            "stage 2: field 'nu' = 1.5 is out of range; allowed: 0 <= nu <= 1",
        ),
        (
            "batch_size",
            "batch_size = 0",
            "stage 2: field 'batch_size' = 0 is out of range; allowed: integer batch_size >= 1",
        ),
        (
            "epochs",
            "epochs = 0",
            "stage 2: field 'epochs' = 0 is out of range; allowed: epochs >= 1",
        ),
        (
            "epochs",
            "steps = 0",
            "stage 2: field 'steps' = 0 is out of range; allowed: steps >= 1",
        ),
        (
            "epochs",
            "",
            "stage 2: exactly one of 'epochs' or 'steps' must be given (neither was given)",
        ),
        (
            "none",
            "steps = 10",
            "stage 2: exactly one of 'epochs' or 'steps' must be given (both were given)",
        ),
    ];
    for (key, line, want) in cases {
        assert_eq!(err(&one_stage_with(key, line)), want, "{key}: {line}");
    }
}

#[test]
fn schedule_errors_name_stage_and_schedule_field() {
    let with = |sched: &str| one_stage_with("none", &format!("[stages.schedule]\n{sched}"));
    let cases = [
        ("kind = \"cosine\"\nmin_factor = 2.0", "stage 2: field 'schedule.min_factor' = 2"),
        ("kind = \"warmup\"\nfraction = 0.0", "stage 2: field 'schedule.fraction' = 0"),
        ("kind = \"one_cycle\"\npct_start = 1.0", "stage 2: field 'schedule.pct_start' = 1"),
        ("kind = \"one_cycle\"\ndiv_factor = 0.5", "stage 2: field 'schedule.div_factor' = 0.5"),
        (
            "kind = \"one_cycle\"\nbase_momentum = 0.9\nmax_momentum = 0.8",
            "stage 2: field 'schedule.max_momentum' = 0.8",
        ),
        (
            "kind = \"custom\"\nlr = { kind = \"cosine\", base = 1.0, t_max = 0 }",
            "stage 2: field 'schedule.lr.t_max' = 0 is out of range; allowed: t_max >= 1",
        ),
        (
            "kind = \"custom\"\nmomentum = { kind = \"piecewise_constant\", boundaries = [3, 2], values = [1.0, 1.0, 1.0] }",
            "stage 2: field 'schedule.momentum.boundaries[1]' = 2",
        ),
        (
            "kind = \"custom\"\nlr = { kind = \"join\", boundaries = [3], schedules = [{ kind = \"constant\", value = 1.0 }] }",
            "stage 2: field 'schedule.lr.schedules'",
        ),
    ];
    for (sched, want) in cases {
        let e = err(&with(sched));
        assert!(e.starts_with(want), "{sched}\n got: {e}\nwant: {want}");
    }
}

#[test]
fn one_cycle_too_short_for_a_steps_stage_is_refused() {
    let text = "[[stages]]\nsteps = 3\nlr = 0.1\nbeta = 0.9\nnu = 0.7\nbatch_size = 8\n\
                [stages.schedule]\nkind = \"one_cycle\"\n";
    let e = err(text);
    assert!(e.starts_with("stage 1: field 'schedule.pct_start'"), "{e}");
}

#[test]
fn plan_level_errors() {
    assert!(matches!(
        Plan::from_toml_str("stages = []"),
        Err(PlanError::NoStages)
    ));
    assert!(matches!(
        Plan::from_toml_str("name = \"x\""),
        Err(PlanError::TomlParse(_))
    ));
    let e = err(&format!(
        "weight_decay = -1.0\n{}",
        one_stage_with("none", "")
    ));
    assert_eq!(
        e,
        "plan: field 'weight_decay' = -1 is out of range; allowed: finite weight_decay >= 0"
    );
    let e = err(&format!(
        "weight_decay_type = \"sideways\"\n{}",
        one_stage_with("none", "")
    ));
    assert!(e.contains("sideways"), "{e}");
}

#[test]
fn unknown_keys_are_refused() {
    // At the plan level, in a stage, in a within-stage schedule, in a nested schedule.
    let cases = [
        format!("nmae = \"typo\"\n{}", one_stage_with("none", "")),
        one_stage_with("none", "momentum = 0.9"),
        one_stage_with("none", "[stages.schedule]\nkind = \"cosine\"\nmin = 0.1"),
        one_stage_with("none", "[stages.schedule]\nkind = \"one_cycle\"\npct = 0.1"),
        one_stage_with(
            "none",
            "[stages.schedule]\nkind = \"custom\"\nlr = { kind = \"constant\", value = 1.0, extra = 2 }",
        ),
        one_stage_with("none", "[stages.schedule]\nkind = \"exponential\""),
    ];
    let needles = ["nmae", "momentum", "min", "pct", "extra", "exponential"];
    for (text, needle) in cases.iter().zip(needles) {
        let e = Plan::from_toml_str(text).unwrap_err();
        assert!(matches!(e, PlanError::TomlParse(_)), "{needle}: {e}");
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}

#[test]
fn parse_errors_keep_line_and_column() {
    let text = "[[stages]]\nepochs = 3\nlr = = 0.1\n";
    let e = err(text);
    assert!(e.contains("line 3"), "{e}");
    // Wrong types are parse errors too, with their position.
    let e = err(&one_stage_with("batch_size", "batch_size = 1.5"));
    assert!(e.contains("line 13") && e.contains("batch_size"), "{e}");
    let e = err(&one_stage_with("batch_size", "batch_size = -3"));
    assert!(e.contains("-3"), "{e}");
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "",
        "\0",
        "[[stages]]",
        "stages = 3",
        "[[stages]]\nepochs = 18446744073709551616",
        "[[stages]]\nepochs = 1\nlr = 1e400\nbeta = 0\nnu = 0\nbatch_size = 1",
        "[stages]\nepochs = 1",
        "name = 3\n[[stages]]",
        "{",
    ];
    for text in inputs {
        assert!(Plan::from_toml_str(text).is_err(), "{text:?}");
    }
}

#[test]
fn hyper_follows_layout_and_within_stage_schedules() {
    let plan = Plan::from_toml_str(GOOD).unwrap();
    let layout = plan.layout(1000).unwrap();
    let spans = layout.spans();
    // ceil(1000/128) = 8, ceil(1000/64) = 16, ceil(1000/32) = 32 steps per epoch.
    let spe: Vec<u64> = spans.iter().map(|s| s.steps_per_epoch).collect();
    assert_eq!(spe, [8, 16, 32]);
    let total: Vec<u64> = spans.iter().map(|s| s.total_steps).collect();
    assert_eq!(total, [40, 160, 300]);
    let epochs: Vec<u64> = spans.iter().map(|s| s.epochs).collect();
    assert_eq!(epochs, [5, 10, 10]); // 300 steps at 32 per epoch: 10 epochs, the last with 12
    assert_eq!(layout.steps_in_epoch(24), Some(12));
    assert_eq!(layout.total_steps(), 500);

    // Stage 1: constants.
    let h = layout.hyper_at_step(39).unwrap();
    assert_eq!((h.lr, h.beta, h.batch_size), (0.1, 0.9, 128));
    // Stage 2: cosine from 0.05 to 0.005 over 160 steps; its midpoint is at global step 120.
    let h = layout.hyper_at_step(40).unwrap();
    assert!((h.lr - 0.05).abs() < 1e-15);
    let h = layout.hyper_at_step(120).unwrap();
    assert!((h.lr - 0.05 * (0.1 + 0.9 * 0.5)).abs() < 1e-15, "{}", h.lr);
    assert_eq!(layout.hyper_at_position(5, 0), layout.hyper_at_step(40));
    // Stage 3: replaced by the piecewise schedule, relative to the stage start (global 200).
    assert_eq!(layout.hyper_at_step(299).unwrap().lr, 0.02);
    assert_eq!(layout.hyper_at_step(300).unwrap().lr, 0.01);
    assert_eq!(layout.hyper_at_step(499).unwrap().lr, 0.005);
    assert_eq!(layout.hyper_at_step(500), None);
    // The pure lookup gives the same thing.
    assert_eq!(plan.hyper_at(2, 100, 300), layout.hyper_at_step(300));
}

#[test]
fn display_shows_header_and_table() {
    let plan = Plan::from_toml_str(GOOD).unwrap();
    let shown = plan.to_string();
    assert!(
        shown.starts_with("plan: demo\ntwo stages and a tail\nweight decay: 5e-4 (direct)\n"),
        "{shown}"
    );
    assert!(shown.contains("300 st"));
    assert!(shown.contains("lr=piecewise(3 pieces)"));
}
