//! One-cycle and cosine schedules against values recorded from PyTorch
//! (`tools/make_schedule_fixtures.py`, fixture in `tests/fixtures/schedules/`).

use serde_json::Value;
use stagewise_core::schedule::{Anneal, OneCycle, OneCycleShape, Schedule};

const FIXTURE: &str = include_str!("../../../tests/fixtures/schedules/pytorch_schedules.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("fixture is valid JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300) + 1e-18
}

fn one_cycle_from(p: &Value) -> OneCycle {
    let f = |k: &str, d: f64| p.get(k).and_then(Value::as_f64).unwrap_or(d);
    let shape = OneCycleShape {
        pct_start: f("pct_start", 0.3),
        anneal_strategy: match p.get("anneal_strategy").and_then(Value::as_str) {
            Some("linear") => Anneal::Linear,
            _ => Anneal::Cos,
        },
        div_factor: f("div_factor", 25.0),
        final_div_factor: f("final_div_factor", 1e4),
        three_phase: p
            .get("three_phase")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        cycle_momentum: true,
        base_momentum: f("base_momentum", 0.85),
        max_momentum: f("max_momentum", 0.95),
    };
    OneCycle::new(
        p["max_lr"].as_f64().unwrap(),
        p["total_steps"].as_u64().unwrap(),
        shape,
    )
}

#[test]
fn one_cycle_matches_pytorch_one_cycle_lr() {
    let fx = fixture();
    let cases = fx["onecycle"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let oc = one_cycle_from(&case["params"]);
        oc.validate().unwrap();
        let (lr, mom) = (floats(&case["lr"]), floats(&case["momentum"]));
        assert_eq!(lr.len() as u64, oc.total_steps);
        for (t, (&want_lr, &want_m)) in lr.iter().zip(&mom).enumerate() {
            let t = t as u64;
            assert!(
                close(oc.lr(t), want_lr),
                "{:?} step {t}: lr {} vs torch {want_lr}",
                case["params"],
                oc.lr(t)
            );
            let m = oc.momentum(t).unwrap();
            assert!(
                close(m, want_m),
                "{:?} step {t}: momentum {m} vs torch {want_m}",
                case["params"]
            );
            // The Schedule wrappers give the same numbers.
            assert_eq!(Schedule::OneCycleLr(oc.clone()).value(t), oc.lr(t));
            assert_eq!(Schedule::OneCycleMomentum(oc.clone()).value(t), m);
        }
    }
}

#[test]
fn cosine_matches_pytorch_cosine_annealing_lr() {
    let fx = fixture();
    for case in fx["cosine"].as_array().unwrap() {
        let p = &case["params"];
        let s = Schedule::cosine(
            p["base"].as_f64().unwrap(),
            p["eta_min"].as_f64().unwrap(),
            p["t_max"].as_u64().unwrap(),
        );
        for (t, &want) in floats(&case["lr"]).iter().enumerate() {
            let got = s.value(t as u64);
            assert!(close(got, want), "{p:?} step {t}: {got} vs torch {want}");
        }
    }
}

/// Hand-computed from PyTorch's formulas (no fixture): max_lr 0.1, T = 100, defaults.
#[test]
fn one_cycle_by_hand() {
    let oc = OneCycle::new(0.1, 100, OneCycleShape::default());
    let pi = std::f64::consts::PI;
    let cos = |start: f64, end: f64, pct: f64| end + (start - end) / 2.0 * ((pi * pct).cos() + 1.0);
    let (init, min) = (0.1 / 25.0, 0.1 / 25.0 / 1e4);
    // Phase 1: steps 0..=29 (end = 0.3·100 − 1 = 29); phase 2 from 29 to 99.
    assert!(close(oc.lr(10), cos(init, 0.1, 10.0 / 29.0)));
    assert!(close(oc.lr(29), 0.1));
    assert!(close(oc.lr(64), cos(0.1, min, 35.0 / 70.0)));
    assert!(close(oc.lr(99), min));
    assert!(close(
        oc.momentum(10).unwrap(),
        cos(0.95, 0.85, 10.0 / 29.0)
    ));
    assert!(close(oc.momentum(64).unwrap(), cos(0.85, 0.95, 0.5)));
}
