//! Helpers shared by the integration tests: IDX fixtures and a loopback
//! HTTP server.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use stagewise_data::idx;

/// Deterministic pixels for `n` images of `rows x cols`.
pub fn pixels(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    (0..n * rows * cols).map(|i| (i * 7 % 251) as u8).collect()
}

/// Labels `0, 1, ..., 9, 0, ...`.
pub fn labels(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 10) as u8).collect()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The four Fashion-MNIST files as `(name.gz, gzip bytes)`: `n_train` and
/// `n_test` 28x28 items.
pub fn fashion_gz_files(n_train: usize, n_test: usize) -> Vec<(String, Vec<u8>)> {
    let img = |n| gzip(&idx::encode_images(28, 28, &pixels(n, 28, 28)).unwrap());
    let lab = |n| gzip(&idx::encode_labels(&labels(n)).unwrap());
    vec![
        ("train-images-idx3-ubyte.gz".into(), img(n_train)),
        ("train-labels-idx1-ubyte.gz".into(), lab(n_train)),
        ("t10k-images-idx3-ubyte.gz".into(), img(n_test)),
        ("t10k-labels-idx1-ubyte.gz".into(), lab(n_test)),
    ]
}

pub fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 serving fixed files by path;
/// anything else is a 404. Runs until the test process exits.
pub struct Server {
    pub base_url: String,
    requests: Arc<AtomicUsize>,
}

impl Server {
    pub fn start(files: &[(String, Vec<u8>)]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}/data/", listener.local_addr().unwrap());
        let files: HashMap<String, Vec<u8>> = files
            .iter()
            .map(|(name, bytes)| (format!("/data/{name}"), bytes.clone()))
            .collect();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = respond(stream, &files);
            }
        });
        Server { base_url, requests }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn respond(stream: TcpStream, files: &HashMap<String, Vec<u8>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let mut out = stream;
    match files.get(path) {
        Some(body) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(body)?;
        }
        None => {
            let body = b"not found";
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(body)?;
        }
    }
    out.flush()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
