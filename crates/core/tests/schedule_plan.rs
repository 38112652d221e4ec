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
    assert_eq!((h.qhm.lr, h.qhm.beta, h.batch_size), (0.1, 0.9, 128));
    // Stage 2: cosine from 0.05 to 0.005 over 160 steps; its midpoint is at global step 120.
    let h = layout.hyper_at_step(40).unwrap();
    assert!((h.qhm.lr - 0.05).abs() < 1e-15);
    let h = layout.hyper_at_step(120).unwrap();
    assert!(
        (h.qhm.lr - 0.05 * (0.1 + 0.9 * 0.5)).abs() < 1e-15,
        "{}",
        h.qhm.lr
    );
    assert_eq!(layout.hyper_at_position(5, 0), layout.hyper_at_step(40));
    // Stage 3: replaced by the piecewise schedule, relative to the stage start (global 200).
    assert_eq!(layout.hyper_at_step(299).unwrap().qhm.lr, 0.02);
    assert_eq!(layout.hyper_at_step(300).unwrap().qhm.lr, 0.01);
    assert_eq!(layout.hyper_at_step(499).unwrap().qhm.lr, 0.005);
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

/// Two stages; the second carries `schedule` (TOML lines of its `[stages.schedule]` table) and
/// lasts `length` (`epochs = 3` or `steps = 300`).
fn with_schedule(length: &str, schedule: &str) -> String {
    format!(
        "[[stages]]\nepochs = 1\nlr = 0.1\nbeta = 0.9\nnu = 0.7\nbatch_size = 8\n\n\
         [[stages]]\n{length}\nlr = 0.1\nbeta = 0.9\nnu = 0.7\nbatch_size = 8\n\
         [stages.schedule]\n{schedule}\n"
    )
}

#[test]
fn custom_schedules_are_checked_at_every_step() {
    // β·1.0 = 0.9 until step 50, then β·1.2 = 1.08 ≥ 1: refused at step 50 of stage 2.
    let beta_up = "kind = \"custom\"\nmomentum = { kind = \"piecewise_constant\", boundaries = \
                   [50], values = [1.0, 1.2] }";
    let e = err(&with_schedule("epochs = 3", beta_up));
    assert!(
        e.starts_with(
            "stage 2: field 'schedule.momentum' sets beta = 1.08 at step 50 of the stage"
        ),
        "{e}"
    );
    assert!(e.contains("0 <= beta < 1 at every step"), "{e}");
    match Plan::from_toml_str(&with_schedule("epochs = 3", beta_up)).unwrap_err() {
        PlanError::ScheduleValue {
            stage: 2, step: 50, ..
        } => {}
        other => panic!("{other:?}"),
    }
    // A linear ramp of the lr factor from 1 to −1 over 100 steps crosses 0 after step 50
    // (0 itself is allowed); found by bisection, in a stage given in steps too.
    let lr_down = "kind = \"custom\"\nlr = { kind = \"linear_warmup\", start = 1.0, end = -1.0, \
                   steps = 100 }";
    for length in ["epochs = 3", "steps = 300"] {
        let e = err(&with_schedule(length, lr_down));
        assert!(
            e.contains("'schedule.lr' sets lr = -0.002") && e.contains("at step 51"),
            "{e}"
        );
    }
    // ... but a stage in steps that ends before the crossing is fine.
    assert!(Plan::from_toml_str(&with_schedule("steps = 51", lr_down)).is_ok());
    // A replaced β that reaches 1 inside a join, after a cosine: the step is exact.
    let join = "kind = \"custom\"\nmode = \"replace\"\nmomentum = { kind = \"join\", boundaries = \
                [20], schedules = [{ kind = \"constant\", value = 0.9 }, { kind = \
                \"linear_warmup\", start = 0.9, end = 1.1, steps = 10 }] }";
    let e = err(&with_schedule("epochs = 3", join));
    assert!(e.contains("sets beta = 1 at step 25 of the stage"), "{e}");
    // Finite parameters whose arithmetic overflows (base − eta_min = inf) are refused too.
    let huge = "kind = \"custom\"\nlr = { kind = \"cosine\", base = 1.7e308, eta_min = -1.7e308, \
                t_max = 10 }";
    let e = err(&with_schedule("steps = 300", huge));
    assert!(
        e.contains("sets lr = inf at step 0") && e.contains("a finite lr >= 0"),
        "{e}"
    );
    // A schedule that stays in range is accepted.
    let fine = "kind = \"custom\"\nmomentum = { kind = \"cosine\", base = 1.0, eta_min = 0.5, \
                t_max = 40, restarts = true }";
    assert!(Plan::from_toml_str(&with_schedule("epochs = 3", fine)).is_ok());
}

#[test]
fn custom_schedule_after_a_warm_up_counts_steps_from_the_stage_or_the_warm_up() {
    let then = "[stages.schedule.then]\nkind = \"custom\"\nmomentum = { kind = \
                \"piecewise_constant\", boundaries = [7], values = [1.0, 1.5] }";
    let steps = format!("kind = \"warmup_then\"\nwarmup_steps = 10\n{then}");
    let e = err(&with_schedule("steps = 300", &steps));
    assert!(
        e.contains("'schedule.then.momentum' sets beta = 1.35 at step 17 of the stage"),
        "{e}"
    );
    let epochs = format!("kind = \"warmup_then\"\nwarmup_epochs = 1\n{then}");
    let e = err(&with_schedule("epochs = 3", &epochs));
    assert!(e.contains("at step 7 after the warm-up"), "{e}");
}

#[test]
fn warm_up_schedules_round_trip_and_are_checked() {
    let text = with_schedule(
        "epochs = 3",
        "kind = \"warmup_then\"\nstart_factor = 0.1\nwarmup_epochs = 1\n\
         [stages.schedule.then]\nkind = \"wsd\"\ncooldown_fraction = 0.25\nshape = \"linear\"",
    );
    let plan = Plan::from_toml_str(&text).unwrap();
    let back = Plan::from_toml_str(&plan.to_toml_string().unwrap()).unwrap();
    assert_eq!(back, plan);
    let shown = plan.to_string();
    assert!(
        shown.contains("warmup(0.1→1, 1 ep) then wsd(cooldown 0.25 linear, min 0)"),
        "{shown}"
    );
    // 80 examples, b = 8: 10 steps per epoch; stage 2 = 30 steps, warm-up 10, then 20 of wsd
    // with a 5-step linear cooldown.
    let l = plan.layout(80).unwrap();
    let lr = |t: u64| l.hyper_at_step(10 + t).unwrap().qhm.lr;
    assert!((lr(0) - 0.01).abs() < 1e-15 && (lr(5) - 0.055).abs() < 1e-15);
    assert_eq!((lr(10), lr(24)), (0.1, 0.1));
    assert!((lr(25) - 0.1).abs() < 1e-15 && (lr(27) - 0.06).abs() < 1e-15);
    let cases = [
        (
            with_schedule("epochs = 3", "kind = \"warmup_then\"\nwarmup_epochs = 3"),
            "stage 2: field 'schedule.warmup_epochs' = 3 is out of range; allowed: \
             warmup_epochs < 3",
        ),
        (
            with_schedule("steps = 30", "kind = \"warmup_then\"\nwarmup_steps = 30"),
            "stage 2: field 'schedule.warmup_steps' = 30 is out of range; allowed: \
             warmup_steps < 30",
        ),
        (
            with_schedule("steps = 30", "kind = \"warmup_then\"\nwarmup_epochs = 1"),
            "stage 2: field 'schedule.warmup_epochs' = 1 is out of range; allowed: \
             warmup_epochs only in a stage given in epochs",
        ),
        (
            with_schedule(
                "steps = 30",
                "kind = \"warmup_then\"\nwarmup_steps = 3\nwarmup_epochs = 1",
            ),
            "field 'schedule.warmup_epochs' = 1 is out of range; allowed: exactly one of",
        ),
        (
            with_schedule("steps = 30", "kind = \"warmup_then\""),
            "field 'schedule.warmup_steps' = none is out of range; allowed: exactly one of",
        ),
        (
            with_schedule(
                "steps = 30",
                "kind = \"warmup_then\"\nwarmup_steps = 3\n[stages.schedule.then]\n\
                 kind = \"warmup_then\"\nwarmup_steps = 2",
            ),
            "field 'schedule.then.kind' = warmup_then",
        ),
        (
            with_schedule("steps = 30", "kind = \"wsd\"\ncooldown_fraction = 0"),
            "field 'schedule.cooldown_fraction' = 0 is out of range",
        ),
        (
            with_schedule("steps = 30", "kind = \"linear\"\nmin_factor = 1.5"),
            "field 'schedule.min_factor' = 1.5",
        ),
        (
            with_schedule("steps = 30", "kind = \"wsd\"\nshape = \"cosine\""),
            "cosine",
        ),
    ];
    for (text, needle) in cases {
        let e = err(&text);
        assert!(e.contains(needle), "{needle}\n{e}");
    }
    // A warm-up in steps longer than a stage in epochs is refused when laid out.
    let long = with_schedule("epochs = 3", "kind = \"warmup_then\"\nwarmup_steps = 40");
    let e = Plan::from_toml_str(&long)
        .unwrap()
        .layout(80)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "stage 2: field 'schedule.warmup_steps' = 40 is out of range; allowed: \
                       warmup_steps < 30"
        ),
        "{e}"
    );
    // One-cycle after a warm-up needs its phases in the steps left.
    let oc = with_schedule(
        "steps = 12",
        "kind = \"warmup_then\"\nwarmup_steps = 9\n[stages.schedule.then]\nkind = \"one_cycle\"",
    );
    assert!(
        err(&oc).contains("'schedule.then.pct_start'"),
        "{}",
        err(&oc)
    );
}
