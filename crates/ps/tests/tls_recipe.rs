//! The self-signed TLS recipe of docs/asgd.md, run as written with `openssl`: a worker trusts
//! the certificate it makes; one marked CA:TRUE is refused with the reason.
#![cfg(feature = "grpc")]

use std::path::Path;
use std::process::Command;

use stagewise_ps::config::{
    ClientTlsConfig, ScheduleConfig, ServeConfig, ServerConfig, ServerTlsConfig, WorkerConfig,
};
use stagewise_ps::synthetic::NoisyQuadratic;
use stagewise_ps::{run_worker, start_server};

/// The `openssl req -x509 …` block of docs/asgd.md, its continuation lines joined.
fn documented_recipe() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/asgd.md"))
        .unwrap();
    let start = doc
        .find("openssl req -x509")
        .expect("docs/asgd.md has no openssl recipe");
    let block = &doc[start..];
    let end = block
        .find("```")
        .expect("the recipe's code block does not end");
    block[..end]
        .lines()
        .map(|l| l.trim().trim_end_matches('\\').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `script` with `sh` in `dir`; false (with the reason printed) when openssl is missing.
fn run_openssl(dir: &Path, script: &str) -> bool {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("skipped: `openssl` is not installed");
        return false;
    }
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Serves over TLS with `dir`'s cert.pem and key.pem; runs a worker that trusts cert.pem and
/// checks the name `ps-host`.
fn train_over_tls(dir: &Path) -> Result<u64, stagewise_ps::PsError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = ServeConfig {
        listen: "127.0.0.1:0".into(),
        num_params: 16,
        server: ServerConfig {
            schedule: ScheduleConfig::Constant {
                lr: 0.1,
                momentum: 0.0,
                nu: 0.0,
            },
            max_updates: Some(5),
            ..ServerConfig::default()
        },
        tls: Some(ServerTlsConfig {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }),
        exit_after_finish_ms: None,
        ..ServeConfig::default()
    };
    let handle = rt.block_on(start_server(cfg, None, None)).unwrap();
    let wc = WorkerConfig {
        servers: vec![format!("https://{}", handle.local_addr())],
        tls: Some(ClientTlsConfig {
            ca_cert: dir.join("cert.pem"),
            domain: Some("ps-host".into()),
        }),
        connect_timeout_ms: 20_000,
        ..WorkerConfig::default()
    };
    let r = run_worker(wc, NoisyQuadratic::new(16, 1.0, 1.0, 0.0, 1)).map(|r| r.applied);
    rt.block_on(handle.shutdown()).unwrap();
    r
}

#[test]
fn the_documented_tls_recipe_works() {
    let recipe = documented_recipe();
    assert!(
        recipe.contains("basicConstraints=critical,CA:FALSE"),
        "{recipe}"
    );
    let dir = tempfile::tempdir().unwrap();
    if !run_openssl(dir.path(), &recipe) {
        return;
    }
    assert_eq!(train_over_tls(dir.path()).unwrap(), 5);
}

#[test]
fn a_ca_certificate_is_refused_at_once_with_the_reason() {
    // The recipe as it was: OpenSSL marks the certificate CA:TRUE.
    let dir = tempfile::tempdir().unwrap();
    let old = "openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 30 \
               -subj /CN=ps-host -addext subjectAltName=DNS:ps-host";
    if !run_openssl(dir.path(), old) {
        return;
    }
    let start = std::time::Instant::now();
    let e = train_over_tls(dir.path()).unwrap_err().to_string();
    assert!(e.contains("CaUsedAsEndEntity"), "{e}");
    assert!(e.contains("basicConstraints=critical,CA:FALSE"), "{e}");
    // Not retried for the whole connect timeout (20 s): a certificate does not heal.
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
}
