//! The trained model outside the run, through the real binary: `train` writes
//! `model.safetensors` and `best.safetensors`, `eval` scores them, `predict` classifies IDX and
//! PNG images, `train --init-from` starts from them; bad files are refused with their name.

mod common;

use common::TempDir;
use std::path::Path;
use std::process::{Command, Output};

fn stagewise(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagewise"));
    cmd.args(args).args(paths);
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A 2-epoch mlp on synthetic data with a validation split, into `out`.
fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--quiet",
        "--model",
        "mlp",
        "--dataset",
        "synthetic",
        "--train-subset",
        "600",
        "--test-subset",
        "200",
        "--val-split",
        "100",
        "--lr",
        "0.3",
        "--batch",
        "50",
        "--epochs",
        "2",
        "--stages",
        "1",
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    args.push("--out");
    stagewise(&args, &[out])
}

fn first_epoch_loss(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("train.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let loss = headers.iter().position(|h| h == "loss").unwrap();
    let row = reader.records().next().unwrap().unwrap();
    row[loss].parse().unwrap()
}

#[test]
fn a_trained_run_is_evaluated_predicted_and_continued_from_its_model() {
    let dir = TempDir::new("model-cli");
    let run = dir.path().join("run");
    ok(&train(&run, &[]));
    for file in ["model.safetensors", "best.safetensors"] {
        assert!(run.join(file).is_file(), "{file}");
    }
    let summary = json(&run.join("summary.json"));
    let best = &summary["details"]["best_model"];
    assert_eq!(best["file"], "best.safetensors");
    assert_eq!(best["chosen_on"], "validation");
    assert_eq!(best["update"], summary["best_val_eval"]["update"]);

    // eval: the run's own test set, so the run's final accuracy comes back.
    let out = ok(&stagewise(&["eval", "--json"], &[&run]));
    let eval: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(eval["model"], "mlp");
    assert_eq!(eval["examples"], 200);
    let final_acc = summary["final_eval"]["accuracy"].as_f64().unwrap();
    let final_loss = summary["final_eval"]["loss"].as_f64().unwrap();
    assert!(
        (eval["accuracy"].as_f64().unwrap() - final_acc).abs() <= 1.0 / 200.0,
        "{out}"
    );
    assert!(
        (eval["loss"].as_f64().unwrap() - final_loss).abs() < 1e-4,
        "{out}"
    );
    let confusion = eval["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 10);
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 200);
    let diagonal: u64 = (0..10).map(|c| confusion[c][c].as_u64().unwrap()).sum();
    assert!((diagonal as f64 / 200.0 - eval["accuracy"].as_f64().unwrap()).abs() < 1e-12);

    // Text and PNG.
    let png = dir.path().join("confusion.png");
    let text = ok(&stagewise(
        &["eval"],
        &[&run.join("best.safetensors"), Path::new("--png"), &png],
    ));
    assert!(
        text.contains("accuracy") && text.contains("recall"),
        "{text}"
    );
    assert!(std::fs::read(&png)
        .unwrap()
        .starts_with(b"\x89PNG\r\n\x1a\n"));

    // predict: three images as an IDX file, the first also as a PNG; the same answer.
    let pixels: Vec<u8> = (0..3 * 784).map(|i| ((i * 37) % 256) as u8).collect();
    let idx = dir.path().join("images-idx3-ubyte");
    std::fs::write(
        &idx,
        stagewise_data::idx::encode_images(28, 28, &pixels).unwrap(),
    )
    .unwrap();
    let png_image = dir.path().join("first.png");
    write_gray_png(&png_image, &pixels[..784]);
    let csv_out = dir.path().join("predictions.csv");
    ok(&stagewise(
        &["predict"],
        &[
            &run.join("model.safetensors"),
            &idx,
            &png_image,
            Path::new("--out"),
            &csv_out,
        ],
    ));
    let csv = std::fs::read_to_string(&csv_out).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[0].starts_with("image,class,p0,"), "{csv}");
    let fields = |l: &str| l.split(',').map(str::to_string).collect::<Vec<_>>();
    let (first, from_png) = (fields(lines[1]), fields(lines[4]));
    assert!(first[0].ends_with("#0"), "{csv}");
    assert_eq!(first[1..], from_png[1..], "{csv}");
    let probs: f64 = first[2..].iter().map(|p| p.parse::<f64>().unwrap()).sum();
    assert!((probs - 1.0).abs() < 1e-4, "{csv}");

    // --init-from the trained model: the first epoch starts where the run ended.
    let cont = dir.path().join("continued");
    ok(&train(
        &cont,
        &[
            "--init-from",
            run.join("model.safetensors").to_str().unwrap(),
        ],
    ));
    assert!(
        first_epoch_loss(&cont) < 0.8 * first_epoch_loss(&run),
        "{} vs {}",
        first_epoch_loss(&cont),
        first_epoch_loss(&run)
    );
    // The training checkpoint is read too; another model kind is refused by name.
    let refused = stagewise(
        &[
            "train",
            "--quiet",
            "--model",
            "cnn",
            "--dataset",
            "synthetic",
            "--init-from",
        ],
        &[
            &run.join("checkpoint.safetensors"),
            Path::new("--out"),
            &dir.path().join("x"),
        ],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("holds a mlp model but the run trains a cnn"),
        "{err}"
    );
}

#[test]
fn bad_model_and_image_files_are_refused_with_their_name() {
    let dir = TempDir::new("model-cli-bad");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model at all").unwrap();
    for cmd in [&["eval"][..], &["predict"][..]] {
        let mut paths: Vec<&Path> = vec![&junk];
        if cmd == ["predict"] {
            paths.push(&junk);
        }
        let out = stagewise(cmd, &paths);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("junk.safetensors") && err.contains("not a safetensors file"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let missing = dir.path().join("nothing-here");
    let out = stagewise(&["eval"], &[&missing]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing-here"));

    // A model that is fine with an image that is not 28×28.
    let model = dir.path().join("model.safetensors");
    let run = dir.path().join("run");
    ok(&train(&run, &[]));
    std::fs::copy(run.join("model.safetensors"), &model).unwrap();
    let big = dir.path().join("big.png");
    write_png(&big, 30, 28, &vec![0u8; 30 * 28]);
    let out = stagewise(&["predict"], &[&model, &big]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("big.png") && err.contains("30×28"), "{err}");
}

fn write_gray_png(path: &Path, pixels: &[u8]) {
    write_png(path, 28, 28, pixels);
}

fn write_png(path: &Path, width: u32, height: u32, pixels: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(pixels).unwrap();
}
