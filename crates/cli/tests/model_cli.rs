//! The trained model outside the run, through the real binary: `train` writes
//! `model.safetensors` and `best.safetensors`, `eval` scores them, `predict` classifies IDX and
//! PNG images, `train --init-from` starts from them; bad files are refused with their name.
//! A parameter server's run is used the same way: seeded from a training checkpoint, it writes
//! the same model files, and its own checkpoint is read by `eval` and `train --init-from`.

mod common;

use common::process::{self, text, wait_output, Children};
use common::{TempDir, TINY_MLP};
use stagewise_core::record::{read_rows, EvalRow};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

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
    let mut args = vec!["train", "--quiet"];
    args.extend_from_slice(TINY_MLP);
    args.extend_from_slice(&[
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
    ]);
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

/// With [`TINY_MLP`], the data of [`train`]'s runs and a ps run's constant plan: 600 training images beside the
/// validation split, batch 50, so 12 updates an epoch, at a learning rate too small to move
/// the model much.
const PS_PLAN: &[&str] = &[
    "--val-split",
    "100",
    "--recipe",
    "constant",
    "--lr",
    "0.0001",
    "--momentum",
    "0",
    "--batch",
    "50",
    "--epochs",
    "2",
    "--asgd-rule",
    "none",
];

fn eval_json(target: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["eval", "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&stagewise(&args, &[target]))).unwrap()
}

#[test]
fn a_parameter_server_is_seeded_from_a_training_run_and_its_model_files_are_used_alike() {
    let dir = TempDir::new("model-cli-ps");
    let run = dir.path().join("run");
    ok(&train(&run, &[]));
    let trained = json(&run.join("summary.json"));
    let trained_acc = trained["final_eval"]["accuracy"].as_f64().unwrap();
    assert!(trained_acc > 0.5, "the training run learned: {trained}");

    // `ps serve --init-from` the training checkpoint; one worker; 24 updates.
    let (out, ckpt) = (dir.path().join("ps"), dir.path().join("ckpt"));
    let mut children = Children::default();
    let token = "model-files";
    let addr = process::serve(
        &mut children,
        token,
        &[
            &[
                "--listen",
                "127.0.0.1:0",
                "--linger-ms",
                "300",
                "--eval-every",
                "5",
                "--init-from",
                run.join("checkpoint.safetensors").to_str().unwrap(),
                "--checkpoint-dir",
                ckpt.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ][..],
            TINY_MLP,
            PS_PLAN,
        ]
        .concat(),
    );
    let worker = wait_output(
        process::worker(&addr, (0, 1), token, &[TINY_MLP, PS_PLAN].concat()),
        Duration::from_secs(120),
    );
    assert!(worker.status.success(), "worker: {}", text(&worker.stderr));
    let server = wait_output(children.0.pop().unwrap(), Duration::from_secs(60));
    assert!(server.status.success(), "server: {}", text(&server.stderr));

    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["details"]["final_version"], 24, "{summary}");
    // Seeded, not fresh: at update 5 the model scores what the training run ended with
    // (a fresh mlp scores about 0.1 on these ten classes).
    let evals: Vec<EvalRow> = read_rows(&out.join("eval.csv")).unwrap();
    assert_eq!(evals[0].update, 5, "{evals:?}");
    let seeded_acc = evals[0].accuracy.unwrap();
    assert!(
        (seeded_acc - trained_acc).abs() <= 2.0 / 200.0,
        "seeded {seeded_acc} vs trained {trained_acc}: {evals:?}"
    );

    // The server's model files, as a training run's.
    for file in ["model.safetensors", "best.safetensors"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let best = &summary["details"]["best_model"];
    assert_eq!(best["file"], "best.safetensors", "{summary}");
    assert_eq!(best["chosen_on"], "validation", "{summary}");
    assert_eq!(
        best["update"], summary["best_val_eval"]["update"],
        "{summary}"
    );
    // `eval` of the run folder finds the run's own data in the model file and gives back the
    // server's final evaluation.
    let latest = eval_json(&out, &[]);
    assert_eq!(latest["examples"], 200, "{latest}");
    let final_eval = &summary["final_eval"];
    assert_eq!(latest["accuracy"], final_eval["accuracy"], "{latest}");
    assert!(
        (latest["loss"].as_f64().unwrap() - final_eval["loss"].as_f64().unwrap()).abs() < 1e-5,
        "{latest} vs {final_eval}"
    );

    // The server's checkpoint holds the same final parameters; it records no data, so the
    // data is named on the command line.
    let shard = ckpt.join("shard-0-of-1.ckpt");
    assert!(shard.is_file());
    let from_ckpt = eval_json(
        &shard,
        &[
            "--dataset",
            "synthetic",
            "--test-subset",
            "200",
            "--seed",
            "3",
        ],
    );
    assert_eq!(from_ckpt["model"], "mlp");
    assert_eq!(from_ckpt["accuracy"], latest["accuracy"], "{from_ckpt}");
    assert_eq!(from_ckpt["confusion"], latest["confusion"], "{from_ckpt}");

    // And it starts a training run (`train --init-from` a server checkpoint).
    let cont = dir.path().join("continued");
    ok(&train(&cont, &["--init-from", shard.to_str().unwrap()]));
    assert!(
        first_epoch_loss(&cont) < 0.8 * first_epoch_loss(&run),
        "{} vs {}",
        first_epoch_loss(&cont),
        first_epoch_loss(&run)
    );
}

#[test]
fn a_resnet_server_checkpoint_is_evaluated_with_recomputed_statistics_and_not_predicted() {
    let dir = TempDir::new("model-cli-resnet-ckpt");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/export/resnet-trained.safetensors");
    let resnet = stagewise_train::export::load_model_params(&fixture).unwrap();
    let ckpt = dir.path().join("shard-0-of-1.ckpt");
    let n = resnet.params.len();
    stagewise_ps::checkpoint::Checkpoint {
        model_id: "resnet".into(),
        total_params: n,
        shard: stagewise_ps::shard::ShardRange::of(n, 0, 1),
        version: 8,
        optimizer_name: "qhm".into(),
        params: resnet.params,
        optimizer: stagewise_core::optim::OptimizerState {
            step: 8,
            buffers: vec![("momentum".into(), vec![0.0; n])],
            scalars: Vec::new(),
        },
        policy: Vec::new(),
    }
    .save(&ckpt)
    .unwrap();

    let out = stagewise(
        &[
            "eval",
            "--json",
            "--dataset",
            "synthetic",
            "--test-subset",
            "100",
        ],
        &[&ckpt],
    );
    let stdout = ok(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("holds no BatchNorm statistics") && stderr.contains("recomputed"),
        "{stderr}"
    );
    let eval: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (eval["model"].as_str(), eval["examples"].as_u64()),
        (Some("resnet"), Some(100))
    );

    let image = dir.path().join("image.png");
    write_gray_png(&image, &[128u8; 784]);
    let out = stagewise(&["predict"], &[&ckpt, &image]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("shard-0-of-1.ckpt") && err.contains("no BatchNorm statistics"),
        "{err}"
    );
    assert!(
        err.contains("model.safetensors"),
        "points to the usable file: {err}"
    );
}
