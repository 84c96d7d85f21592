//! Results as JSON lines (one record per run, appended) and the table printed at the end.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Appends `record` as one line to `path` (created with its directory when missing). The line
/// is written with one call, so records of concurrent runs do not interleave.
pub fn append(path: &Path, record: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(&line)
        .with_context(|| format!("appending to {}", path.display()))?;
    Ok(())
}

/// Reads every record of a JSON-lines file, naming the line of a malformed one.
pub fn read(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}, line {}", path.display(), i + 1))
        })
        .collect()
}

/// A two-column table: a heading, then `label  value` rows aligned.
pub struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    /// An empty table.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, label: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.rows.push((label.into(), value.into()));
        self
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = format!(
            "\n{}\n{}\n",
            self.title,
            "─".repeat(self.title.chars().count())
        );
        for (label, value) in &self.rows {
            out.push_str(&format!("{label:<width$}  {value}\n"));
        }
        out
    }
}

/// `bytes` in MiB with two decimals.
pub fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/runs.jsonl");
        append(&path, &serde_json::json!({"run": 1})).unwrap();
        append(&path, &serde_json::json!({"run": 2, "mp": 0.8})).unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1]["mp"], 0.8);
        std::fs::write(&path, "{\"run\": 1}\n{oops\n").unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn tables_align() {
        let text = Table::new("Run").row("a", "1").row("longer", "2").render();
        assert!(
            text.contains("a       1\n") && text.contains("longer  2\n"),
            "{text}"
        );
    }
}
