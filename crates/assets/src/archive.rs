//! Copying chosen entries out of zip and tar(.gz) archives.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// The container formats entries can be taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArchiveFormat {
    /// A zip archive (wheels are zips).
    Zip,
    /// An uncompressed tar archive.
    Tar,
    /// A gzip-compressed tar archive (sdists).
    TarGz,
}

impl ArchiveFormat {
    /// The format a file name's extension implies, if any.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        if name.ends_with(".zip") || name.ends_with(".whl") {
            Some(Self::Zip)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if name.ends_with(".tar") {
            Some(Self::Tar)
        } else {
            None
        }
    }
}

/// Copies each entry named by a key of `wanted` (a `/`-separated path inside the
/// archive; a leading `./` in the archive is ignored) to the file its value names,
/// creating parent directories. Returns the keys that were not found.
pub(crate) fn extract_entries(
    archive: &Path,
    format: ArchiveFormat,
    wanted: &BTreeMap<String, PathBuf>,
) -> io::Result<Vec<String>> {
    match format {
        ArchiveFormat::Zip => extract_zip(archive, wanted),
        ArchiveFormat::Tar => extract_tar(BufReader::new(File::open(archive)?), wanted),
        ArchiveFormat::TarGz => {
            extract_tar(GzDecoder::new(BufReader::new(File::open(archive)?)), wanted)
        }
    }
}

fn extract_zip(archive: &Path, wanted: &BTreeMap<String, PathBuf>) -> io::Result<Vec<String>> {
    let mut zip =
        zip::ZipArchive::new(BufReader::new(File::open(archive)?)).map_err(io::Error::other)?;
    let mut missing = Vec::new();
    for (name, out) in wanted {
        match zip.by_name(name) {
            Ok(mut entry) if entry.is_file() => write_entry(&mut entry, out)?,
            Ok(_) | Err(zip::result::ZipError::FileNotFound) => missing.push(name.clone()),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    Ok(missing)
}

fn extract_tar(reader: impl Read, wanted: &BTreeMap<String, PathBuf>) -> io::Result<Vec<String>> {
    let mut pending: BTreeMap<&str, &Path> = wanted
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_path()))
        .collect();
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries()? {
        if pending.is_empty() {
            break;
        }
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().replace('\\', "/");
        let key = path.strip_prefix("./").unwrap_or(&path);
        if let Some(out) = pending.remove(key) {
            write_entry(&mut entry, out)?;
        }
    }
    Ok(pending.keys().map(|k| (*k).to_owned()).collect())
}

fn write_entry(entry: &mut impl Read, out: &Path) -> io::Result<()> {
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut file = File::create(out)?;
    io::copy(entry, &mut file)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::ArchiveFormat;

    #[test]
    fn formats_follow_extensions() {
        assert_eq!(
            ArchiveFormat::from_name("a-1.0-py3-none-any.whl"),
            Some(ArchiveFormat::Zip)
        );
        assert_eq!(
            ArchiveFormat::from_name("x/y.ZIP"),
            Some(ArchiveFormat::Zip)
        );
        assert_eq!(
            ArchiveFormat::from_name("b-1.0.tar.gz"),
            Some(ArchiveFormat::TarGz)
        );
        assert_eq!(
            ArchiveFormat::from_name("c.tgz"),
            Some(ArchiveFormat::TarGz)
        );
        assert_eq!(ArchiveFormat::from_name("d.tar"), Some(ArchiveFormat::Tar));
        assert_eq!(ArchiveFormat::from_name("e.txt"), None);
    }
}
