//! Reading IDX files and Fashion-MNIST folders, good and bad.

mod common;

use std::path::Path;

use common::{gzip, labels, pixels, tempdir, write_files};
use stagewise_data::{idx, DataError, FashionMnist};

fn images_file(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    idx::encode_images(rows, cols, &pixels(n, rows, cols)).unwrap()
}

fn labels_file(n: usize) -> Vec<u8> {
    idx::encode_labels(&labels(n)).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The error's message names the file.
fn assert_names(err: &DataError, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message {msg:?} does not name {}",
        path.display()
    );
}

#[test]
fn raw_and_gzip_files_read_identically() {
    let dir = tempdir();
    let raw = write(dir.path(), "img", &images_file(5, 28, 28));
    let gz = write(dir.path(), "img.gz", &gzip(&images_file(5, 28, 28)));
    let a = idx::read_images(&raw).unwrap();
    let b = idx::read_images(&gz).unwrap();
    assert_eq!(a, b);
    assert_eq!((a.count, a.rows, a.cols), (5, 28, 28));
    assert_eq!(a.pixels, pixels(5, 28, 28));

    // Content decides, not the name: gzip bytes under a raw name.
    let sneaky = write(dir.path(), "labels-no-ext", &gzip(&labels_file(12)));
    assert_eq!(idx::read_labels(&sneaky).unwrap(), labels(12));
}

#[test]
fn read_pair_builds_a_dataset() {
    let dir = tempdir();
    let i = write(dir.path(), "i", &images_file(20, 4, 3));
    let l = write(dir.path(), "l", &labels_file(20));
    let ds = idx::read_pair(&i, &l, 10).unwrap();
    assert_eq!(ds.len(), 20);
    assert_eq!((ds.rows(), ds.cols(), ds.classes()), (4, 3, 10));
    assert_eq!(ds.image(2), &pixels(20, 4, 3)[24..36]);
    assert_eq!(ds.label(13), 3);
    assert_eq!(ds.class_counts(), vec![2; 10]);
}

#[test]
fn fashion_folder_accepts_raw_and_gz_names() {
    let dir = tempdir();
    let mut files = common::fashion_gz_files(30, 10);
    // Store two of the four decompressed under their raw names.
    for (name, bytes) in files.iter_mut().skip(2) {
        *name = name.trim_end_matches(".gz").to_owned();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut raw)
            .unwrap();
        *bytes = raw;
    }
    write_files(dir.path(), &files);
    assert!(FashionMnist::has_files(dir.path()));
    let splits = FashionMnist::load(dir.path()).unwrap();
    assert_eq!(splits.train.len(), 30);
    assert_eq!(splits.test.len(), 10);
    assert_eq!(splits.train.images(), &pixels(30, 28, 28)[..]);
    assert_eq!(splits.test.labels(), &labels(10)[..]);
}

#[test]
fn missing_files_are_listed() {
    let dir = tempdir();
    let files = common::fashion_gz_files(3, 3);
    write_files(dir.path(), &files[..2]);
    let err = FashionMnist::load(dir.path()).unwrap_err();
    match &err {
        DataError::MissingFiles { missing, .. } => assert_eq!(
            missing,
            &vec![
                "t10k-images-idx3-ubyte".to_owned(),
                "t10k-labels-idx1-ubyte".to_owned()
            ]
        ),
        other => panic!("unexpected error {other:?}"),
    }
    assert_names(&err, dir.path());
    let p = dir.path().join("absent");
    let err = idx::read_labels(&p).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert_names(&err, &p);
}

#[test]
fn wrong_magic_is_reported() {
    let dir = tempdir();
    // A labels file where images are expected, raw and gzip.
    for (name, bytes) in [("raw", labels_file(4)), ("gz", gzip(&labels_file(4)))] {
        let p = write(dir.path(), name, &bytes);
        let err = idx::read_images(&p).unwrap_err();
        match &err {
            DataError::BadMagic {
                found, expected, ..
            } => assert_eq!((*found, *expected), (0x801, 0x803)),
            other => panic!("unexpected error {other:?}"),
        }
        assert_names(&err, &p);
        assert!(err.to_string().contains("0x00000801"), "{err}");
    }
    // Garbage that is not IDX at all.
    let p = write(dir.path(), "text", b"hello, world, this is not IDX");
    assert!(matches!(
        idx::read_labels(&p).unwrap_err(),
        DataError::BadMagic { .. }
    ));
}

#[test]
fn short_headers_are_truncation_errors() {
    let dir = tempdir();
    for len in [0, 2, 4, 6, 11, 15] {
        let p = write(dir.path(), &format!("h{len}"), &images_file(1, 2, 2)[..len]);
        let err = idx::read_images(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{len}: {err:?}");
        assert_names(&err, &p);
    }
}

#[test]
fn header_announcing_more_items_than_present() {
    let dir = tempdir();
    let mut bytes = images_file(10, 28, 28);
    bytes.truncate(bytes.len() - 100);
    let p = write(dir.path(), "short", &bytes);
    let err = idx::read_images(&p).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
    assert!(err.to_string().contains("10 images"), "{err}");
    assert_names(&err, &p);

    // Same, but the stream is a valid gzip of the truncated content.
    let p = write(dir.path(), "short.gz", &gzip(&bytes));
    assert!(matches!(
        idx::read_images(&p).unwrap_err(),
        DataError::Truncated { .. }
    ));

    // A header claiming u32::MAX items must not try to allocate them.
    let mut huge = labels_file(3);
    huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let p = write(dir.path(), "huge", &huge);
    assert!(matches!(
        idx::read_labels(&p).unwrap_err(),
        DataError::Truncated { .. }
    ));
    let p = write(dir.path(), "huge.gz", &gzip(&huge));
    assert!(matches!(
        idx::read_labels(&p).unwrap_err(),
        DataError::Truncated { .. }
    ));
    let mut huge_images = images_file(1, 28, 28);
    huge_images[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let p = write(dir.path(), "huge-images.gz", &gzip(&huge_images));
    assert!(matches!(
        idx::read_images(&p).unwrap_err(),
        DataError::Truncated { .. }
    ));
}

#[test]
fn trailing_bytes_are_rejected() {
    let dir = tempdir();
    let mut bytes = labels_file(5);
    bytes.extend_from_slice(&[1, 2, 3]);
    let p = write(dir.path(), "long", &bytes);
    let err = idx::read_labels(&p).unwrap_err();
    assert!(matches!(err, DataError::Invalid { .. }), "{err:?}");
    assert_names(&err, &p);
}

#[test]
fn truncated_and_corrupt_gzip_are_reported() {
    let dir = tempdir();
    let gz = gzip(&images_file(50, 28, 28));

    let p = write(dir.path(), "cut.gz", &gz[..gz.len() / 2]);
    let err = idx::read_images(&p).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
    assert_names(&err, &p);

    // Damage the compressed payload (past the 10-byte gzip header).
    let mut bad = gz.clone();
    for b in &mut bad[20..60] {
        *b ^= 0x5a;
    }
    let p = write(dir.path(), "bad.gz", &bad);
    let err = idx::read_images(&p).unwrap_err();
    assert!(
        matches!(err, DataError::Gzip { .. } | DataError::BadMagic { .. }),
        "{err:?}"
    );
    assert_names(&err, &p);

    // Damage only the CRC in the trailer: the data decodes, the check fails.
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let p = write(dir.path(), "crc.gz", &bad_crc);
    let err = idx::read_images(&p).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");

    // Just the magic bytes.
    let p = write(dir.path(), "magic-only.gz", &[0x1f, 0x8b]);
    let err = idx::read_labels(&p).unwrap_err();
    assert!(
        matches!(err, DataError::Gzip { .. } | DataError::Truncated { .. }),
        "{err:?}"
    );
}

#[test]
fn images_and_labels_count_must_agree() {
    let dir = tempdir();
    let i = write(dir.path(), "i", &images_file(7, 28, 28));
    let l = write(dir.path(), "l", &labels_file(6));
    let err = idx::read_pair(&i, &l, 10).unwrap_err();
    match &err {
        DataError::CountMismatch { images, labels, .. } => assert_eq!((*images, *labels), (7, 6)),
        other => panic!("unexpected error {other:?}"),
    }
    assert_names(&err, &i);
    assert_names(&err, &l);
}

#[test]
fn labels_must_be_below_the_class_count() {
    let dir = tempdir();
    let i = write(dir.path(), "i", &images_file(3, 28, 28));
    let l = write(dir.path(), "l", &idx::encode_labels(&[1, 10, 2]).unwrap());
    let err = idx::read_pair(&i, &l, 10).unwrap_err();
    assert!(matches!(err, DataError::Invalid { .. }), "{err:?}");
    assert_names(&err, &l);
    assert!(err.to_string().contains("label 10"), "{err}");
}

#[test]
fn fashion_requires_28_by_28() {
    let dir = tempdir();
    let mut files = common::fashion_gz_files(4, 4);
    files[0].1 = gzip(&images_file(4, 27, 28));
    write_files(dir.path(), &files);
    let err = FashionMnist::load(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("27x28"), "{err}");
    assert_names(&err, &dir.path().join("train-images-idx3-ubyte.gz"));
}

#[test]
fn encoders_reject_bad_input() {
    assert!(idx::encode_images(28, 28, &[0; 100]).is_err());
    assert!(idx::encode_images(0, 28, &[]).is_err());
    assert_eq!(
        idx::encode_labels(&[3]).unwrap(),
        vec![0, 0, 8, 1, 0, 0, 0, 1, 3]
    );
}

#[test]
fn empty_but_valid_files_give_an_empty_dataset() {
    let dir = tempdir();
    let mut img = idx::IMAGES_MAGIC.to_be_bytes().to_vec();
    img.extend_from_slice(&[0; 4]);
    img.extend_from_slice(&28u32.to_be_bytes());
    img.extend_from_slice(&28u32.to_be_bytes());
    let i = write(dir.path(), "i", &img);
    let l = write(dir.path(), "l", &labels_file(0));
    let ds = idx::read_pair(&i, &l, 10).unwrap();
    assert!(ds.is_empty());
}
