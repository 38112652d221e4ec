//! `stagewise compare` and `stagewise report` through the real binary: a tiny real grid with
//! its report, the example experiment checked in full, bad experiments refused before any run,
//! and a report on one finished run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn stagewise() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stagewise"))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stagewise-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const TINY: &str = r#"
name = "tiny cli"
model = "mlp"
epochs = 2
seeds = [0, 1]
[data]
dataset = "synthetic"
train_subset = 300
test_subset = 100
val_split = 100
[[method]]
name = "qhm-constant"
recipe = "constant"
lr = [0.2, 0.4]
params = { batch = 32 }
[[method]]
name = "sgd-linear"
optimizer = "sgd"
recipe = "linear"
lr = [0.05]
params = { batch = 32 }
"#;

#[test]
fn compare_runs_a_tiny_grid_and_report_draws_one_of_its_runs() {
    let dir = temp("compare");
    let exp = dir.join("tiny.toml");
    std::fs::write(&exp, TINY).unwrap();
    let out = dir.join("out");
    let stdout = ok(&stagewise()
        .args(["compare", "--quiet", "--jobs", "2", "--out"])
        .arg(&out)
        .arg(&exp)
        .output()
        .unwrap());
    assert!(stdout.contains("validation accuracy"), "{stdout}");
    assert!(stdout.contains("report.md"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    for file in [
        "report.md",
        "report.html",
        "summary.json",
        "experiment.toml",
    ] {
        assert!(out.join(file).exists(), "{file}");
    }
    // Again: every run is found finished.
    ok(&stagewise()
        .args(["compare", "--quiet", "--out"])
        .arg(&out)
        .arg(&exp)
        .output()
        .unwrap());
    assert_eq!(
        std::fs::read_to_string(out.join("results.csv")).unwrap(),
        csv
    );

    let run = out.join("runs/sgd-linear/lr-0.05/seed-1");
    let report_dir = dir.join("report");
    let stdout = ok(&stagewise()
        .arg("report")
        .arg(&run)
        .arg("--out")
        .arg(&report_dir)
        .output()
        .unwrap());
    assert!(stdout.contains("report.html"), "{stdout}");
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("seed-1") && md.contains(".png"), "{md}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_experiments_are_refused_before_any_run_naming_the_field() {
    let dir = temp("compare-bad");
    let cases = [
        (
            TINY.replace("epochs = 2", "epochs = 2\nepoch = 3"),
            "unknown field `epoch`",
        ),
        (TINY.replace("lr = [0.05]", "lr = []"), "method[2].lr"),
        (TINY.replace("\"sgd\"", "\"sgdd\""), "sgdd"),
        (
            TINY.replace("\"linear\"", "\"lineal\""),
            "unknown variant `lineal`",
        ),
    ];
    for (text, wanted) in cases {
        let exp = dir.join("bad.toml");
        std::fs::write(&exp, text).unwrap();
        let out = dir.join("out");
        let output = stagewise()
            .args(["compare", "--quiet", "--out"])
            .arg(&out)
            .arg(&exp)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(wanted), "{wanted}: {stderr}");
        assert!(!out.exists(), "nothing is written before the grid is valid");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_example_experiment_and_its_quick_version_are_valid() {
    let path = repo_root().join("experiments/fashion-mnist.toml");
    let exp = stagewise_compare::Experiment::load(&path).unwrap();
    assert_eq!(exp.grid().unwrap().len(), 8 * 3 * 5);
    let quick = exp.quick();
    assert_eq!(quick.grid().unwrap().len(), 8 * 3);
    assert_eq!(quick.data.val_split, Some(1000));
}
