//! Child processes of the built binary: kept and killed when a test ends, awaited with a limit,
//! and `ps serve` / `ps worker` started the way every loopback test starts them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `stagewise` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_stagewise");

/// The environment variable the server and workers read their token from.
const TOKEN_ENV: &str = "STAGEWISE_PS_TOKEN";

/// Child processes killed when the test ends, however it ends.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for `child` to exit within `limit` and returns its output; past the limit it is
/// killed and the test fails with its stderr.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "still running after {limit:?} and killed; stderr:\n{}",
        text(&out.stderr)
    );
}

/// Starts `stagewise ps serve ARGS` with `token`, kept in `children`; returns the address it
/// printed on its `LISTENING` line (its stdout is drained after that, so it never blocks).
pub fn serve(children: &mut Children, token: &str, args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args(["ps", "serve"])
        .args(args)
        .env(TOKEN_ENV, token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    children.0.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server printed no LISTENING line within 60 s");
    std::thread::spawn(move || while rx.recv().is_ok() {});
    line.strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string()
}

/// `stagewise ps worker` number `id.0` of `id.1` against the server at `addr`, with `token`
/// and `args` (the model, data and plan options); its output is piped.
pub fn worker(addr: &str, id: (usize, usize), token: &str, args: &[&str]) -> Child {
    Command::new(BIN)
        .args(["ps", "worker", "--server", &format!("http://{addr}")])
        .args(["--workers", &id.1.to_string()])
        .args(["--worker-id", &id.0.to_string()])
        .args(["--connect-timeout-ms", "10000"])
        .args(args)
        .env(TOKEN_ENV, token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}
