//! `LocateOptions::from_env` reads the environment. This is the only test in
//! its binary, so changing the process environment races with nothing.

mod common;

use common::{fashion_gz_files, tempdir, Server};
use stagewise_data::download::md5_hex;
use stagewise_data::locate::{ENV_DATA_DIR, LOCAL_DIR, SYSTEM_DIR};
use stagewise_data::{LocateOptions, Origin, RemoteFile};

#[test]
fn from_env_reads_variables_and_downloads_from_the_overridden_url() {
    let files = fashion_gz_files(12, 6);
    let server = Server::start(&files);
    let tmp = tempdir();
    let xdg = tmp.path().join("xdg");
    std::env::set_var("XDG_CACHE_HOME", &xdg);
    std::env::set_var(ENV_DATA_DIR, tmp.path().join("nothing-here"));
    std::env::set_var(
        stagewise_data::download::ENV_FASHION_MNIST_URL,
        &server.base_url,
    );

    let mut opts = LocateOptions::from_env(None);
    assert_eq!(opts.data_dir, None);
    assert_eq!(opts.env_dir, Some(tmp.path().join("nothing-here")));
    assert_eq!(
        opts.local_dir.as_deref(),
        Some(std::path::Path::new(LOCAL_DIR))
    );
    assert_eq!(
        opts.system_dir.as_deref(),
        Some(std::path::Path::new(SYSTEM_DIR))
    );
    let cache = xdg.join("stagewise").join("fashion-mnist");
    assert_eq!(opts.cache_dir.as_ref(), Some(&cache));
    assert_eq!(opts.base_url, server.base_url);
    assert!(opts.download);
    assert_eq!(opts.files, stagewise_data::download::fashion_mnist_files());

    // Search nothing that could exist on this machine; use generated sums.
    opts.local_dir = None;
    opts.system_dir = None;
    opts.progress = false;
    opts.files = files
        .iter()
        .map(|(n, b)| RemoteFile::new(n.clone(), md5_hex(b)))
        .collect();
    let found = opts.locate().unwrap();
    assert_eq!(
        (found.dir.clone(), found.origin),
        (cache, Origin::Downloaded)
    );
    assert_eq!(opts.load().unwrap().train.len(), 12);

    std::env::remove_var("XDG_CACHE_HOME");
    let home_cache = stagewise_data::locate::default_cache_dir();
    if let Some(home) = std::env::home_dir() {
        assert_eq!(
            home_cache,
            Some(home.join(".cache/stagewise/fashion-mnist"))
        );
    }
}
