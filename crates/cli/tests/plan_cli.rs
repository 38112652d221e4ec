//! End-to-end tests of `stagewise plan explain|recommend|convert` (and `show`), running the
//! built binary.

use std::process::{Command, Output};

use serde_json::Value;

mod common;

use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_stagewise");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running the stagewise binary")
}

/// Runs and expects success; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and expects failure; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
    String::from_utf8(out.stderr).unwrap()
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).expect("valid JSON on stdout")
}

fn approx(v: &Value, x: f64) -> bool {
    v.as_f64().is_some_and(|y| (y - x).abs() < 1e-9)
}

#[test]
fn recommend_writes_a_plan_that_explain_accepts() {
    let dir = TempDir::new("recommend");
    let file = dir.path().join("plan.toml");
    let f = file.to_str().unwrap();
    let text = ok(&[
        "plan",
        "recommend",
        "--from",
        "pytorch-sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--batch",
        "128",
        "--epochs",
        "30",
        "--stages",
        "4",
        "--drop",
        "2",
        "--out",
        f,
    ]);
    assert!(
        text.starts_with("recommended start: α0 = 1, β0 = 0.9, ν = 1, b0 = 128\n"),
        "{text}"
    );
    assert!(text.contains("no warnings"), "{text}");
    assert!(text.contains("plan written to"));
    // α0 = 0.1/(1 − 0.9) is 1.0000000000000002 in floats; the plan says 1.
    let toml = std::fs::read_to_string(&file).unwrap();
    assert!(
        toml.contains("\nlr = 1.0\n") && toml.contains("lr 1, momentum 0.9"),
        "{toml}"
    );
    assert!(!toml.contains("0000000"), "{toml}");
    // The file is a valid plan; `show` and `explain` read it.
    let shown = ok(&["plan", "show", f]);
    assert!(shown.contains("plan: stagewise") && shown.contains("0.947368"));
    let ex = json(&["plan", "explain", f, "--json"]);
    let stages = ex["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 4);
    assert!(approx(&stages[0]["lr"], 1.0) && approx(&stages[3]["lr"], 0.125));
    assert_eq!(stages[3]["batch_size"], 16);
    let warnings: Vec<&Value> = ex["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["severity"] == "warning")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn recommend_json_for_asgd_caps_the_lr_and_reduces_momentum() {
    let v = json(&[
        "plan",
        "recommend",
        "--from",
        "pytorch-sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--workers",
        "8",
        "--h-max",
        "1",
        "--batch",
        "128",
        "--stages",
        "4",
        "--json",
    ]);
    let rec = &v["recommendation"];
    assert!(approx(&rec["converted"]["lr"], 1.0));
    let cap = (std::f64::consts::PI / 30.0).sin(); // ½ · 2 sin(π/(2·15))
    assert!(approx(&rec["asgd"]["lr"]["lr"], cap), "{}", rec["asgd"]);
    // keep-ratio (default): b0 = ⌊128·cap/1⌋ = 13 and α0 = 13/128, so α/b stays 1/128.
    assert_eq!(rec["asgd"]["plan_batch"], 13);
    assert!(
        approx(&rec["initial"]["lr"], 13.0 / 128.0),
        "{}",
        rec["initial"]
    );
    assert_eq!(rec["plan"]["stages"][0]["batch_size"], 13);
    assert!(approx(&rec["initial"]["beta"], 0.2));
    assert_eq!(rec["asgd"]["tau"], 7);
    assert_eq!(rec["asgd"]["lr"]["capped"], true);
    assert!(approx(&rec["asgd"]["implicit_momentum"], 0.875));
    assert!(approx(&rec["plan"]["stages"][0]["lr"], 13.0 / 128.0));
    assert_eq!(v["explanation"]["stages"].as_array().unwrap().len(), 4);
    // Reasons are typed in JSON: topic, text (no option names) and hints.
    let batch = rec["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["topic"] == "batch_size")
        .unwrap_or_else(|| panic!("{}", rec["reasons"]));
    assert_eq!(batch["hints"][0]["action"], "use_batch_rule", "{batch}");
    assert_eq!(batch["hints"][0]["rule"], "keep-batch", "{batch}");
    assert!(!batch["text"].as_str().unwrap().contains("--"), "{batch}");
    // keep-batch: α0 is the cap, b0 stays 128.
    let v = json(&[
        "plan",
        "recommend",
        "--from",
        "pytorch-sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--workers",
        "8",
        "--h-max",
        "1",
        "--asgd-batch",
        "keep-batch",
        "--batch",
        "128",
        "--json",
    ]);
    let stage = &v["recommendation"]["plan"]["stages"][0];
    assert!(
        approx(&stage["lr"], cap) && stage["batch_size"] == 128,
        "{stage}"
    );
    // Without --h-max, per-push updates keep α0 (not ×M) and the output says it is not capped.
    let base = [
        "plan",
        "recommend",
        "--from",
        "pytorch-sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--workers",
        "8",
    ];
    let text = ok(&base);
    assert!(
        text.starts_with("recommended start: α0 = 1, β0 = 0.2"),
        "{text}"
    );
    assert!(text.contains("no h_max given"), "{text}");
    // The hint is spelled with this command's options.
    assert!(
        text.contains("--h-max H or --estimate-from-model"),
        "{text}"
    );
    // Averaged (synchronous) updates: linear scaling α0·M = 8, β kept.
    let mut averaged = base.to_vec();
    averaged.extend(["--update", "averaged"]);
    let text = ok(&averaged);
    assert!(
        text.starts_with("recommended start: α0 = 8, β0 = 0.9"),
        "{text}"
    );
}

#[test]
fn explain_flags_the_step_recipe_and_an_unstable_stage() {
    let dir = TempDir::new("explain");
    let step = dir.path().join("step.toml");
    // The paper-scale step plan (α0 0.1, b 128, 4 stages over 30 epochs, no weight decay).
    let toml = ok(&[
        "plan",
        "show",
        "--recipe",
        "step",
        "--lr",
        "0.1",
        "--batch",
        "128",
        "--epochs",
        "30",
        "--stages",
        "4",
        "--weight-decay",
        "0",
        "--toml",
    ]);
    std::fs::write(&step, toml).unwrap();
    let s = step.to_str().unwrap();
    let text = ok(&[
        "plan",
        "explain",
        s,
        "--spectrum",
        "isotropic:d=100,h=1,c=1",
        "--h-max",
        "40",
    ]);
    assert!(text.contains("[BROKEN] α/b constant"), "{text}");
    assert!(text.contains("stage 2: α/b = 3.90625e-4 differs from stage 1's 7.8125e-4 by -50%"));
    assert!(text.contains("bound proxy"));

    let unstable = dir.path().join("unstable.toml");
    std::fs::write(
        &unstable,
        "[[stages]]\nepochs = 1\nlr = 0.01\nbeta = 0.0\nnu = 0.0\nbatch_size = 100\n\
         [[stages]]\nepochs = 1\nlr = 0.5\nbeta = 0.0\nnu = 0.0\nbatch_size = 100\n",
    )
    .unwrap();
    let u = unstable.to_str().unwrap();
    let text = ok(&["plan", "explain", u, "--n-train", "1000", "--h-max", "40"]);
    assert!(
        text.contains("stage 2 is unstable for curvature 40: α = 0.5 ≥ α_max = 0.05"),
        "{text}"
    );
    let v = json(&["plan", "explain", u, "--h-max", "40", "--json"]);
    assert_eq!(v["stages"][1]["stable"], false);
    assert_eq!(v["h_max"], 40.0);

    // A spectrum file (CSV) works like the isotropic specification.
    let csv = dir.path().join("spec.csv");
    std::fs::write(&csv, "h,c\n1,1\n1,1\n").unwrap();
    let v = json(&[
        "plan",
        "explain",
        s,
        "--spectrum",
        csv.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["bound"]["dim"], 2);
    assert!(v["bound"]["kl"].as_f64().unwrap() > 0.0);
}

#[test]
fn convert_prints_alpha_beta_nu() {
    let text = ok(&[
        "plan",
        "convert",
        "--from",
        "pytorch-sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
    ]);
    assert!(
        text.contains("α = 1\n") && text.contains("β = 0.9\n") && text.contains("ν = 1\n"),
        "{text}"
    );
    let v = json(&[
        "plan",
        "convert",
        "--from",
        "pytorch-sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--nesterov",
        "--json",
    ]);
    assert!(approx(&v["alpha"], 1.0) && approx(&v["nu"], 0.9));
    assert_eq!(v["pytorch_sgd"]["nesterov"], true);
    let v = json(&[
        "plan", "convert", "--from", "pid", "--kp", "-0.1", "--ki", "0.1", "--kd", "0.9", "--json",
    ]);
    assert!(approx(&v["alpha"], 0.1) && approx(&v["beta"], 0.9));
    assert!(approx(&v["nu"], 1.0 / 9.0));
    let v = json(&[
        "plan",
        "convert",
        "--from",
        "snv",
        "--alpha-s",
        "0.1",
        "--beta1",
        "0.8",
        "--beta2",
        "0.3",
        "--json",
    ]);
    assert!(approx(&v["alpha"], 0.5) && approx(&v["nu"], 0.925));
    // Triple momentum is robust momentum at ρ = 1 − 1/√κ.
    let t = json(&[
        "plan",
        "convert",
        "--from",
        "triple",
        "--smoothness",
        "1",
        "--kappa",
        "100",
        "--json",
    ]);
    let r = json(&[
        "plan",
        "convert",
        "--from",
        "robust",
        "--smoothness",
        "1",
        "--kappa",
        "100",
        "--rho",
        "0.9",
        "--json",
    ]);
    assert_eq!(t["alpha"], r["alpha"]);
    let a = json(&[
        "plan", "convert", "--from", "accsgd", "--delta", "0.1", "--kappa", "1000", "--xi", "10",
        "--json",
    ]);
    assert!(approx(&a["alpha"], 0.1 * 0.7 * 11.0 / 1.7));
    // QHM back to PyTorch.
    let v = json(&[
        "plan",
        "convert",
        "--from",
        "qhm",
        "--lr",
        "1",
        "--beta",
        "0.9",
        "--nu",
        "0.9",
        "--to",
        "pytorch-sgd",
        "--json",
    ]);
    assert!(approx(&v["lr"], 0.1) && approx(&v["momentum"], 0.9));
    assert_eq!(v["nesterov"], true);
}

#[test]
fn errors_name_the_field_and_the_allowed_range() {
    let e = fails(&[
        "plan",
        "convert",
        "--from",
        "pytorch-sgd",
        "--lr",
        "0.1",
        "--momentum",
        "1.2",
    ]);
    assert!(
        e.contains("'momentum' = 1.2") && e.contains("0 <= momentum < 1"),
        "{e}"
    );
    let e = fails(&[
        "plan", "convert", "--from", "pid", "--kp", "-0.1", "--ki", "0.1",
    ]);
    assert!(e.contains("needs --kd"), "{e}");
    let e = fails(&[
        "plan", "convert", "--from", "pid", "--kp", "-0.1", "--ki", "0.1", "--kd", "0.9", "--lr",
        "1",
    ]);
    assert!(e.contains("--lr is not a parameter of --from pid"), "{e}");
    let e = fails(&[
        "plan",
        "convert",
        "--from",
        "qhm",
        "--lr",
        "1",
        "--beta",
        "0.9",
        "--nu",
        "0.7",
        "--to",
        "pytorch-sgd",
    ]);
    assert!(e.contains("no PyTorch SGD equivalent"), "{e}");
    let e = fails(&["plan", "recommend", "--from", "adam", "--lr", "0.001"]);
    assert!(e.contains("no exact QHM conversion"), "{e}");
    let e = fails(&["plan", "recommend", "--from", "pytorch-sgd", "--lr", "0.1"]);
    assert!(e.contains("needs --momentum"), "{e}");
    let e = fails(&[
        "plan",
        "recommend",
        "--from",
        "pytorch-sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--batch",
        "0",
    ]);
    assert!(e.contains("'batch'") && e.contains("batch >= 1"), "{e}");
    let dir = TempDir::new("errors");
    let plan = dir.path().join("p.toml");
    std::fs::write(&plan, ok(&["plan", "show", "--recipe", "step", "--toml"])).unwrap();
    let p = plan.to_str().unwrap();
    let e = fails(&["plan", "explain", p, "--n-train", "0"]);
    assert!(e.contains("n_train") && e.contains(">= 1"), "{e}");
    let e = fails(&[
        "plan",
        "explain",
        p,
        "--spectrum",
        "isotropic:d=10,h=-1,c=1",
    ]);
    assert!(e.contains("spectrum.h") && e.contains("> 0"), "{e}");
    let e = fails(&["plan", "explain", p, "--spectrum", "/nonexistent/s.json"]);
    assert!(e.contains("/nonexistent/s.json"), "{e}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[stages]]\nepochs = 1\nlr = 0.1\nbeta = 1.5\nnu = 0.7\nbatch_size = 8\n",
    )
    .unwrap();
    let e = fails(&["plan", "explain", bad.to_str().unwrap()]);
    assert!(
        e.contains("stage 1") && e.contains("'beta'") && e.contains("0 <= beta < 1"),
        "{e}"
    );
    // A derived method's inputs give a β outside QHM's range: the range is said once.
    let e = fails(&[
        "plan", "convert", "--from", "pid", "--kp", "0.1", "--ki", "0.1", "--kd", "0.9",
    ]);
    assert!(
        e.contains("QHM value") && e.contains("'beta' = 1.125"),
        "{e}"
    );
    assert_eq!(e.matches("0 <= beta < 1").count(), 1, "{e}");
    // An input out of its own range is not called a QHM value.
    let e = fails(&[
        "plan",
        "convert",
        "--from",
        "robust",
        "--smoothness",
        "1",
        "--kappa",
        "0.5",
        "--rho",
        "0.9",
    ]);
    assert!(
        e.contains("'kappa' = 0.5") && !e.contains("QHM value"),
        "{e}"
    );
    // The batch rule lowers b0 below what 4 stages can halve: each fact once, and the options
    // that help are this command's.
    let e = fails(&[
        "plan",
        "recommend",
        "--from",
        "pytorch-sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--workers",
        "64",
        "--h-max",
        "30",
        "--batch",
        "128",
        "--stages",
        "4",
    ]);
    assert!(
        e.contains("lowered from 128 to 1") && e.contains("--asgd-batch keep-batch"),
        "{e}"
    );
    assert_eq!(e.matches("stages").count(), 2, "{e}"); // "fewer stages: --stages below 4"
    assert!(!e.contains("smaller drop factor"), "{e}");
    // Unknown method: clap lists the allowed values.
    let e = fails(&["plan", "convert", "--from", "lion", "--lr", "1"]);
    assert!(e.contains("pytorch-sgd") && e.contains("tso"), "{e}");
}

/// Small estimator settings, so that the mlp on synthetic data takes about a second.
const SMALL_ESTIMATE: [&str; 16] = [
    "--spectrum-dataset",
    "synthetic",
    "--top",
    "2",
    "--lanczos-steps",
    "6",
    "--hessian-examples",
    "64",
    "--trace-probes",
    "2",
    "--noise-batch",
    "16",
    "--noise-batches",
    "4",
    "--spectrum-seed",
    "1",
];

#[test]
fn spectrum_estimate_feeds_explain_and_caps_the_asgd_recommendation() {
    let dir = TempDir::new("spectrum");
    let file = dir.path().join("mlp.json");
    let f = file.to_str().unwrap();
    let mut args = vec!["plan", "spectrum", "mlp", "--out", f];
    args.extend(SMALL_ESTIMATE);
    let text = ok(&args);
    assert!(
        text.contains("h_max ≈") && text.contains("gauss-newton"),
        "{text}"
    );
    let est: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let h_max = est["h"][0].as_f64().unwrap();
    assert!(h_max > 0.0 && est["dim"] == 669_706, "{est}");

    // The file is a --spectrum for explain: h_max defaults to its largest eigenvalue.
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        ok(&["plan", "show", "--recipe", "stagewise", "--toml"]),
    )
    .unwrap();
    let v = json(&[
        "plan",
        "explain",
        plan.to_str().unwrap(),
        "--spectrum",
        f,
        "--json",
    ]);
    assert!(v["bound"]["gap"].as_f64().unwrap() > 0.0, "{v}");

    // Estimated in the same command: recommend caps the per-push ASGD lr with it.
    let mut args = vec![
        "plan",
        "recommend",
        "--from",
        "qhm",
        "--lr",
        "0.5",
        "--beta",
        "0.9",
        "--nu",
        "0.7",
        "--workers",
        "4",
        "--estimate-from-model",
        "mlp",
        "--json",
    ];
    args.extend(SMALL_ESTIMATE);
    let v = json(&args);
    let limit = v["recommendation"]["asgd"]["lr"]["stability_limit"]
        .as_f64()
        .unwrap();
    let want = 2.0 * (std::f64::consts::PI / 14.0).sin() / h_max; // τ = 3
    assert!((limit / want - 1.0).abs() < 1e-9, "{limit} vs {want}");
    assert_eq!(v["spectrum_estimate"]["h"][0].as_f64(), Some(h_max));

    // Bad estimator input is an error naming the option.
    let e = fails(&[
        "plan",
        "spectrum",
        "mlp",
        "--spectrum-dataset",
        "synthetic",
        "--noise-batches",
        "1",
    ]);
    assert!(e.contains("noise_batches"), "{e}");
    let e = fails(&["plan", "spectrum", "nosuchmodel"]);
    assert!(e.contains("not a run folder"), "{e}");
}
