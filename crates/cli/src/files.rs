//! Writing output files atomically.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Writes `contents` to `path` atomically: into a temporary file beside it, then renamed into
/// place, so a reader never sees half a file. An existing `path` is left alone (an error)
/// unless `overwrite`; without it the rename itself refuses to replace a file that appears in
/// the meantime.
pub fn write_atomically(path: &Path, contents: &str, overwrite: bool) -> Result<()> {
    if !overwrite && path.exists() {
        bail!(
            "{} exists: not overwritten (--force replaces it)",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", file.path().display()))?;
    let persisted = if overwrite {
        file.persist(path)
    } else {
        file.persist_noclobber(path)
    };
    persisted.map_err(|e| {
        let exists = e.error.kind() == std::io::ErrorKind::AlreadyExists;
        let err = anyhow::Error::new(e.error);
        if exists {
            err.context(format!(
                "{} exists: not overwritten (--force replaces it)",
                path.display()
            ))
        } else {
            err.context(format!("writing {}", path.display()))
        }
    })?;
    Ok(())
}
