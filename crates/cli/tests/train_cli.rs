//! `stagewise train` through the real binary: a short synthetic run, a TOML config with flag
//! overrides, refusal of unknown keys and bad values, and resume.

use std::path::PathBuf;
use std::process::Command;

fn stagewise() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stagewise"))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stagewise-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn config_file_with_flag_overrides_trains_and_resumes() {
    let dir = temp("train");
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        "model = \"mlp\"\ndataset = \"synthetic\"\ntrain_subset = 600\ntest_subset = 200\n\
         recipe = \"stagewise\"\nlr = 0.5\nbatch = 64\nepochs = 3\nstages = 2\nseed = 5\n",
    )
    .unwrap();
    let out = dir.join("out");
    let status = stagewise()
        .args(["train", "--quiet", "--config"])
        .arg(&config)
        .args(["--epochs", "3", "--stop-after-epochs", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("stopped early"), "{stdout}");
    let resumed = stagewise()
        .args(["train", "--quiet", "--resume"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["schema"], 1);
    assert_eq!(summary["kind"], "train");
    assert_eq!(summary["epochs"], 3.0);
    assert_eq!(summary["completed"], true);
    let config = &summary["details"]["config"];
    assert_eq!(config["model"], "mlp");
    assert_eq!(config["seed"], 5);
    // Two stages, batch 64 then 32 (the stagewise rule halves b).
    let stages = config["plan"]["stages"].as_array().unwrap();
    assert_eq!(stages[1]["batch_size"], 32);
    assert!(summary["final_eval"]["accuracy"].as_f64().unwrap() > 0.5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_config_keys_and_bad_values_are_refused_with_their_name() {
    let dir = temp("bad");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "model = \"mlp\"\nlearning_rate = 0.1\n").unwrap();
    let out = stagewise()
        .args(["train", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("learning_rate"), "{err}");

    let out = stagewise()
        .args(["train", "--dataset", "synthetic", "--momentum", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("momentum") && err.contains("1.5"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
