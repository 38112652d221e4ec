//! Replays every fixture made by `tools/make_fixtures.py` (PyTorch / qhoptim, float64) and
//! requires the parameters after every step to agree within 1e-12.

use stagewise_core::trace::{TraceCase, TraceOutput};
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/optim")
}

#[derive(serde::Deserialize)]
struct Expected {
    name: String,
    expected: TraceOutput,
}

#[test]
fn every_fixture_matches_pytorch_within_1e_12() {
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir())
        .expect("fixture folder tests/fixtures/optim")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 18,
        "expected the committed fixtures, found {}",
        files.len()
    );
    let mut algorithms = std::collections::BTreeSet::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let case = TraceCase::from_json(&text).unwrap();
        let expected: Expected = serde_json::from_str(&text).unwrap();
        let got = case
            .run()
            .unwrap_or_else(|e| panic!("{}: {e}", expected.name));
        assert_eq!(got.params_after.len(), expected.expected.params_after.len());
        let mut worst: f64 = 0.0;
        for (step, (a, b)) in got
            .params_after
            .iter()
            .zip(&expected.expected.params_after)
            .enumerate()
        {
            for (x, y) in a.iter().zip(b) {
                let err = (x - y).abs();
                assert!(
                    err <= 1e-12,
                    "{}: step {} differs by {err:e} ({x} vs {y})",
                    expected.name,
                    step + 1
                );
                worst = worst.max(err);
            }
        }
        println!("{:28} max |diff| = {worst:.2e}", expected.name);
        algorithms.insert(case.algorithm.clone());
    }
    for needed in ["qhm", "sgd", "adam", "adamw", "rmsprop", "qhadam"] {
        assert!(algorithms.contains(needed), "no fixture for {needed}");
    }
}

#[test]
fn malformed_cases_are_refused_with_a_reason() {
    let bad_shape = r#"{"algorithm":"qhm","theta0":[1,2],"grads":[[1]],
        "schedule":[{"lr":1,"momentum":0.9,"nu":0.7}]}"#;
    let err = TraceCase::from_json(bad_shape).unwrap().run().unwrap_err();
    assert!(err
        .to_string()
        .contains("'grads[0]' has 1 elements but 'theta0' has 2"));

    let bad_len = r#"{"algorithm":"qhm","theta0":[1],"grads":[[1],[2]],
        "schedule":[{"lr":1,"momentum":0.9,"nu":0.7}]}"#;
    let err = TraceCase::from_json(bad_len).unwrap().run().unwrap_err();
    assert!(err
        .to_string()
        .contains("'grads' has 2 steps but 'schedule' has 1"));

    let bad_beta = r#"{"algorithm":"qhm","theta0":[1],"grads":[[1],[2]],
        "schedule":[{"lr":1,"momentum":0.9,"nu":0.7},{"lr":1,"momentum":1.5,"nu":0.7}]}"#;
    let err = TraceCase::from_json(bad_beta).unwrap().run().unwrap_err();
    assert!(
        err.to_string()
            == "step 2: schedule[1].momentum = 1.5 is out of range for qhm; allowed: 0 <= momentum < 1",
        "{err}"
    );

    let unknown = r#"{"algorithm":"lion","theta0":[1],"grads":[[1]],
        "schedule":[{"lr":1,"momentum":0.9,"nu":0.7}]}"#;
    assert!(TraceCase::from_json(unknown).unwrap().run().is_err());
    assert!(TraceCase::from_json("{").is_err());
}

#[test]
fn nu_is_required_only_where_the_algorithm_reads_it() {
    let sgd = r#"{"algorithm":"sgd","theta0":[1],"grads":[[1],[1]],
        "schedule":[{"lr":0.1,"momentum":0.5},{"lr":0.1,"momentum":0.5}]}"#;
    let got = TraceCase::from_json(sgd).unwrap().run().unwrap();
    // PyTorch: B = 1, θ = 0.9; B = 0.5 + 1 = 1.5, θ = 0.75.
    assert_eq!(got.params_after, vec![vec![0.9], vec![0.75]]);

    let qhm = r#"{"algorithm":"qhm","theta0":[1],"grads":[[1],[1]],
        "schedule":[{"lr":1,"momentum":0.9,"nu":0.7},{"lr":1,"momentum":0.9}]}"#;
    let err = TraceCase::from_json(qhm).unwrap().run().unwrap_err();
    assert_eq!(err.to_string(), "schedule[1]: qhm needs 'nu' at every step");
}

#[test]
fn a_constant_of_another_algorithm_is_refused_by_name() {
    let case = r#"{"algorithm":"sgd","theta0":[1],"grads":[[1]], "beta2": 0.99,
        "schedule":[{"lr":0.1,"momentum":0.5}]}"#;
    let err = TraceCase::from_json(case).unwrap().run().unwrap_err();
    assert!(
        err.to_string()
            .contains("beta2 applies only to adam, adamw, qhadam"),
        "{err}"
    );
}

#[test]
fn schedule_free_fixtures_replay_through_trace_within_1e_12() {
    let dir = fixture_dir().join("../schedulefree");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture folder tests/fixtures/schedulefree")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "found {}", files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Expected = serde_json::from_str(&text).unwrap();
        let got = TraceCase::from_json(&text).unwrap().run().unwrap();
        let want_x = expected.expected.x_after.as_ref().expect("x_after");
        let got_x = got.x_after.as_ref().expect("schedule-free trace reports x");
        for (what, a, b) in [
            ("y", &got.params_after, &expected.expected.params_after),
            ("x", got_x, want_x),
        ] {
            assert_eq!(a.len(), b.len(), "{}", expected.name);
            for (step, (u, v)) in a.iter().zip(b).enumerate() {
                for (p, q) in u.iter().zip(v) {
                    assert!(
                        (p - q).abs() <= 1e-12,
                        "{} {what} step {}: {p} vs {q}",
                        expected.name,
                        step + 1
                    );
                }
            }
        }
    }
}
