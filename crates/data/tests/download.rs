//! Downloading from a real HTTP server on 127.0.0.1, and the search order.

mod common;

use common::{fashion_gz_files, tempdir, write_files, Server};
use stagewise_data::download::{md5_file, md5_hex};
use stagewise_data::{DataError, Downloader, FashionMnist, LocateOptions, Origin, RemoteFile};

/// The checksum table for generated files.
fn table(files: &[(String, Vec<u8>)]) -> Vec<RemoteFile> {
    files
        .iter()
        .map(|(name, bytes)| RemoteFile::new(name.clone(), md5_hex(bytes)))
        .collect()
}

/// Options that search nothing on disk and download into `cache`.
fn download_only(
    cache: &std::path::Path,
    server: &Server,
    files: Vec<RemoteFile>,
) -> LocateOptions {
    LocateOptions {
        data_dir: None,
        env_dir: None,
        local_dir: None,
        system_dir: None,
        cache_dir: Some(cache.to_path_buf()),
        download: true,
        base_url: server.base_url.clone(),
        files,
        progress: false,
    }
}

#[test]
fn md5_matches_known_vectors() {
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        md5_hex(b"The quick brown fox jumps over the lazy dog"),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
}

#[test]
fn downloads_verifies_and_loads() {
    let files = fashion_gz_files(40, 20);
    let server = Server::start(&files);
    let tmp = tempdir();
    let cache = tmp.path().join("cache/stagewise/fashion-mnist");
    let opts = download_only(&cache, &server, table(&files));

    let found = opts.locate().unwrap();
    assert_eq!(found.origin, Origin::Downloaded);
    assert_eq!(found.dir, cache);
    assert_eq!(server.requests(), 4);
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(cache.join(name)).unwrap(), bytes, "{name}");
    }
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 4);

    let splits = FashionMnist::load(&found.dir).unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (40, 20));

    // Second time: found in the cache, nothing downloaded.
    let again = opts.locate().unwrap();
    assert_eq!(again.origin, Origin::Cache);
    assert_eq!(server.requests(), 4);
}

#[test]
fn fetch_skips_good_files_and_replaces_bad_ones() {
    let files = fashion_gz_files(5, 5);
    let server = Server::start(&files);
    let dir = tempdir();
    let dl = Downloader::new(server.base_url.trim_end_matches('/'));
    let entry = &table(&files)[1];

    let p = dl.fetch(entry, dir.path()).unwrap();
    assert_eq!(server.requests(), 1);
    dl.fetch(entry, dir.path()).unwrap();
    assert_eq!(server.requests(), 1, "a verified file is not fetched again");

    std::fs::write(&p, b"damaged").unwrap();
    dl.fetch(entry, dir.path()).unwrap();
    assert_eq!(server.requests(), 2);
    assert_eq!(md5_file(&p).unwrap(), entry.md5);
}

#[test]
fn checksum_mismatch_is_an_error_and_leaves_nothing() {
    let files = fashion_gz_files(5, 5);
    let server = Server::start(&files);
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let mut sums = table(&files);
    let wrong = "0123456789abcdef0123456789abcdef".to_owned();
    let actual = sums[2].md5.clone();
    sums[2].md5 = wrong.clone();

    let err = download_only(&cache, &server, sums).locate().unwrap_err();
    match &err {
        DataError::Checksum {
            path,
            expected,
            actual: got,
        } => {
            assert!(path.ends_with("t10k-images-idx3-ubyte.gz"));
            assert_eq!(expected, &wrong);
            assert_eq!(got, &actual);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("t10k-images-idx3-ubyte.gz"), "{msg}");
    assert!(msg.contains(&wrong) && msg.contains(&actual), "{msg}");
    // The first two files were kept, the bad one (and its temp file) not.
    let mut names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    );
}

#[test]
fn http_404_is_an_error_naming_the_url() {
    let files = fashion_gz_files(5, 5);
    let server = Server::start(&files[..3]);
    let tmp = tempdir();
    let err = download_only(tmp.path(), &server, table(&files))
        .locate()
        .unwrap_err();
    match &err {
        DataError::Download { url, detail } => {
            assert!(url.ends_with("/data/t10k-labels-idx1-ubyte.gz"), "{url}");
            assert!(detail.contains("404"), "{detail}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!tmp.path().join("t10k-labels-idx1-ubyte.gz").exists());
}

#[test]
fn connection_refused_is_an_error() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempdir();
    let dl = Downloader::new(format!("http://127.0.0.1:{port}/"));
    let err = dl
        .fetch(&RemoteFile::new("x.gz", md5_hex(b"")), tmp.path())
        .unwrap_err();
    assert!(matches!(err, DataError::Download { .. }), "{err:?}");
}

#[test]
fn search_order_and_explicit_dir() {
    let files = fashion_gz_files(3, 2);
    let tmp = tempdir();
    let explicit = tmp.path().join("explicit");
    let env_root = tmp.path().join("env");
    let local = tmp.path().join("local");
    let system = tmp.path().join("system");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    write_files(&explicit, &files);
    write_files(&env_root.join("fashion-mnist"), &files);
    write_files(&local, &files);
    write_files(&system, &files);

    let mut opts = LocateOptions {
        data_dir: Some(explicit.clone()),
        env_dir: Some(env_root.clone()),
        local_dir: Some(local.clone()),
        system_dir: Some(system.clone()),
        cache_dir: None,
        download: false,
        base_url: "http://127.0.0.1:9/".into(),
        files: table(&files),
        progress: false,
    };
    let found = opts.locate().unwrap();
    assert_eq!(
        (found.dir, found.origin),
        (explicit.clone(), Origin::Explicit)
    );

    opts.data_dir = None;
    let found = opts.locate().unwrap();
    assert_eq!(
        (found.dir, found.origin),
        (env_root.join("fashion-mnist"), Origin::Env)
    );

    opts.env_dir = Some(empty.clone());
    assert_eq!(opts.locate().unwrap().origin, Origin::Local);
    opts.local_dir = None;
    assert_eq!(opts.locate().unwrap().origin, Origin::System);
    opts.system_dir = None;
    let err = opts.locate().unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&empty.display().to_string()));

    // An explicit folder without the files is an error, not a fall-back.
    opts.system_dir = Some(system);
    opts.data_dir = Some(empty.clone());
    let err = opts.locate().unwrap_err();
    assert!(matches!(err, DataError::MissingFiles { .. }), "{err:?}");

    // `only` searches one folder.
    let splits = LocateOptions::only(&explicit).load().unwrap();
    assert_eq!(splits.train.len(), 3);
}
