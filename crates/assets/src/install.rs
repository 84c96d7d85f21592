//! Unpacking a downloaded archive into an asset directory: verify the archive, extract
//! the listed members into a staging directory beside the destination, verify each
//! member, write the marker, and rename the staging directory into place.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::{Component, Path, PathBuf};

use crate::archive::{self, ArchiveFormat};
use crate::error::{AssetError, IoContext};
use crate::hash::sha256_file;
use crate::spec::{ArchiveKind, AssetSpec, Member};

/// Name of the marker file written into an asset directory once every member verified.
pub const MARKER_FILE: &str = ".verified";

/// Scratch directory (inside the staging directory) for archives nested in the download.
const NESTED_DIR: &str = ".nested";

/// Whether `dir` holds a complete, verified install of `spec`: its marker matches the
/// spec (archive and member hashes) and every member file exists. Nothing is re-hashed.
pub fn is_verified(spec: &AssetSpec<'_>, dir: &Path) -> bool {
    match fs::read_to_string(dir.join(MARKER_FILE)) {
        Ok(text) => {
            text == marker_text(spec) && spec.members.iter().all(|m| dir.join(m.dest).is_file())
        }
        Err(_) => false,
    }
}

/// Installs `spec` from an already downloaded `archive` into the directory `dest`,
/// replacing whatever is there. On any error `dest` is left as it was and no
/// partial directory remains; a stale one from an interrupted run is removed first.
pub fn install_from_archive(
    spec: &AssetSpec<'_>,
    archive: &Path,
    dest: &Path,
) -> Result<(), AssetError> {
    let _lock = lock(spec, dest)?;
    install_locked(spec, archive, dest)
}

/// Takes the per-destination lock (a `.<dest>.lock` file beside `dest`) that
/// serialises installs across processes; released when the returned file drops.
pub(crate) fn lock(spec: &AssetSpec<'_>, dest: &Path) -> Result<File, AssetError> {
    let siblings = Siblings::of(spec, dest)?;
    fs::create_dir_all(&siblings.parent).ctx(spec.name, || {
        format!("creating {}", siblings.parent.display())
    })?;
    let file = File::options()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&siblings.lock)
        .ctx(spec.name, || format!("opening {}", siblings.lock.display()))?;
    file.lock()
        .ctx(spec.name, || format!("locking {}", siblings.lock.display()))?;
    Ok(file)
}

/// [`install_from_archive`] for a caller that holds the lock.
pub(crate) fn install_locked(
    spec: &AssetSpec<'_>,
    archive: &Path,
    dest: &Path,
) -> Result<(), AssetError> {
    validate(spec)?;
    let asset = spec.name;
    let actual = sha256_file(archive).ctx(asset, || format!("hashing {}", archive.display()))?;
    if actual != spec.sha256 {
        return Err(AssetError::ArchiveHashMismatch {
            asset: asset.to_owned(),
            archive: archive.to_owned(),
            expected: spec.sha256.to_owned(),
            actual,
        });
    }
    let siblings = Siblings::of(spec, dest)?;
    for stale in [&siblings.partial, &siblings.old] {
        if stale.symlink_metadata().is_ok() {
            log::warn!("{asset}: removing stale {}", stale.display());
            remove_any(stale).ctx(asset, || format!("removing {}", stale.display()))?;
        }
    }
    fs::create_dir_all(&siblings.partial)
        .ctx(asset, || format!("creating {}", siblings.partial.display()))?;
    if let Err(e) = fill(spec, archive, &siblings.partial) {
        if let Err(cleanup) = fs::remove_dir_all(&siblings.partial) {
            log::warn!(
                "{asset}: cannot remove {}: {cleanup}",
                siblings.partial.display()
            );
        }
        return Err(e);
    }
    swap_into_place(asset, &siblings, dest)
}

/// Extracts, verifies and marks the members in the staging directory.
fn fill(spec: &AssetSpec<'_>, archive: &Path, staging: &Path) -> Result<(), AssetError> {
    let asset = spec.name;
    let requests: Vec<Request<'_>> = spec
        .members
        .iter()
        .map(|m| (m.source, staging.join(m.dest)))
        .collect();
    let scratch = staging.join(NESTED_DIR);
    let mut extractor = Extractor {
        asset,
        outer: archive,
        scratch: &scratch,
        next_scratch: 0,
    };
    extractor.extract(archive, outer_format(spec.kind), &requests, "")?;
    if scratch.exists() {
        fs::remove_dir_all(&scratch).ctx(asset, || format!("removing {}", scratch.display()))?;
    }
    for member in spec.members {
        verify_member(asset, member, &staging.join(member.dest))?;
    }
    let marker = staging.join(MARKER_FILE);
    write_synced(&marker, marker_text(spec).as_bytes())
        .ctx(asset, || format!("writing {}", marker.display()))
}

fn outer_format(kind: ArchiveKind) -> ArchiveFormat {
    match kind {
        ArchiveKind::Wheel => ArchiveFormat::Zip,
        ArchiveKind::Sdist => ArchiveFormat::TarGz,
    }
}

/// A member's remaining source chain and the file it goes to.
type Request<'a> = (&'a [&'a str], PathBuf);

/// Walks the archive, and any archives nested in it, in one pass per archive.
struct Extractor<'p> {
    asset: &'p str,
    outer: &'p Path,
    scratch: &'p Path,
    next_scratch: usize,
}

impl Extractor<'_> {
    /// Extracts every request from `archive`; `prefix` names the nesting for messages.
    fn extract(
        &mut self,
        archive: &Path,
        format: ArchiveFormat,
        requests: &[Request<'_>],
        prefix: &str,
    ) -> Result<(), AssetError> {
        let mut wanted: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut nested: BTreeMap<&str, Vec<Request<'_>>> = BTreeMap::new();
        for (chain, out) in requests {
            match chain.split_first() {
                Some((first, [])) => {
                    wanted.insert((*first).to_owned(), out.clone());
                }
                Some((first, rest)) => nested.entry(*first).or_default().push((rest, out.clone())),
                None => unreachable!("validated: source chains are non-empty"),
            }
        }
        for inner in nested.keys() {
            if !wanted.contains_key(*inner) {
                self.next_scratch += 1;
                let name = inner.rsplit('/').next().unwrap_or(inner);
                let path = self.scratch.join(format!("{}-{name}", self.next_scratch));
                wanted.insert((*inner).to_owned(), path);
            }
        }
        let missing = archive::extract_entries(archive, format, &wanted).ctx(self.asset, || {
            format!("extracting from {}", archive.display())
        })?;
        if let Some(first) = missing.first() {
            return Err(AssetError::MemberMissing {
                asset: self.asset.to_owned(),
                member: format!("{prefix}{first}"),
                archive: self.outer.to_owned(),
            });
        }
        for (inner, reqs) in nested {
            let format = ArchiveFormat::from_name(inner).expect("validated: nested archive name");
            let prefix = format!("{prefix}{inner} » ");
            self.extract(&wanted[inner], format, &reqs, &prefix)?;
        }
        Ok(())
    }
}

fn verify_member(asset: &str, member: &Member<'_>, path: &Path) -> Result<(), AssetError> {
    let actual = sha256_file(path).ctx(asset, || format!("hashing {}", path.display()))?;
    if actual == member.sha256 {
        Ok(())
    } else {
        Err(AssetError::MemberHashMismatch {
            asset: asset.to_owned(),
            member: member.source_display(),
            expected: member.sha256.to_owned(),
            actual,
        })
    }
}

/// Moves the verified staging directory to `dest`; an existing `dest` is moved aside
/// first and removed after, so `dest` is at every moment absent, old or complete.
fn swap_into_place(asset: &str, siblings: &Siblings, dest: &Path) -> Result<(), AssetError> {
    let existed = dest.symlink_metadata().is_ok();
    if existed {
        fs::rename(dest, &siblings.old).ctx(asset, || {
            format!("moving {} to {}", dest.display(), siblings.old.display())
        })?;
    }
    fs::rename(&siblings.partial, dest).ctx(asset, || {
        format!(
            "moving {} to {}",
            siblings.partial.display(),
            dest.display()
        )
    })?;
    if existed && let Err(e) = remove_any(&siblings.old) {
        log::warn!("{asset}: cannot remove {}: {e}", siblings.old.display());
    }
    if let Ok(dir) = File::open(&siblings.parent) {
        // Persist the rename; not every platform can sync a directory.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The paths beside a destination directory that an install uses.
struct Siblings {
    parent: PathBuf,
    partial: PathBuf,
    old: PathBuf,
    lock: PathBuf,
}

impl Siblings {
    fn of(spec: &AssetSpec<'_>, dest: &Path) -> Result<Self, AssetError> {
        let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(AssetError::InvalidSpec {
                asset: spec.name.to_owned(),
                problem: format!("destination {} has no parent directory", dest.display()),
            });
        };
        let name = name.to_string_lossy();
        Ok(Siblings {
            parent: parent.to_owned(),
            partial: parent.join(format!(".{name}.partial")),
            old: parent.join(format!(".{name}.old")),
            lock: parent.join(format!(".{name}.lock")),
        })
    }
}

/// The marker's content: what was verified, so a changed spec invalidates the install.
fn marker_text(spec: &AssetSpec<'_>) -> String {
    let mut text = format!(
        "splitlm-assets marker v1\nasset {}\nrequirement {}\narchive-sha256 {}\n",
        spec.name, spec.requirement, spec.sha256
    );
    for m in spec.members {
        text.push_str(&format!("{}  {}\n", m.sha256, m.dest));
    }
    text
}

/// Checks what the installer relies on: non-empty source chains whose inner links are
/// archives, plain relative destinations that are unique and do not clash with ours.
fn validate(spec: &AssetSpec<'_>) -> Result<(), AssetError> {
    let problem = |problem: String| {
        Err(AssetError::InvalidSpec {
            asset: spec.name.to_owned(),
            problem,
        })
    };
    let mut dests = HashSet::new();
    let mut sources = HashSet::new();
    for m in spec.members {
        let Some((_, outer_links)) = m.source.split_last() else {
            return problem(format!("member `{}` has an empty source", m.dest));
        };
        if let Some(link) = outer_links
            .iter()
            .find(|l| ArchiveFormat::from_name(l).is_none())
        {
            return problem(format!("`{link}` is not a known archive type"));
        }
        let path = Path::new(m.dest);
        let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
        let first = path.components().next().map(|c| c.as_os_str());
        if !plain || first.is_none() {
            return problem(format!(
                "destination `{}` is not a plain relative path",
                m.dest
            ));
        }
        if first == Some(MARKER_FILE.as_ref()) || first == Some(NESTED_DIR.as_ref()) {
            return problem(format!("destination `{}` is reserved", m.dest));
        }
        if !dests.insert(m.dest) {
            return problem(format!("destination `{}` is listed twice", m.dest));
        }
        if !sources.insert(m.source) {
            return problem(format!("source `{}` is listed twice", m.source_display()));
        }
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    if path.symlink_metadata()?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}
