//! The summary a job prints when it ends: a titled two-column table.

/// A two-column table: a heading, then `label  value` rows aligned.
#[derive(Debug, Clone, PartialEq)]
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
    fn tables_align() {
        let text = Table::new("Run").row("a", "1").row("longer", "2").render();
        assert!(
            text.contains("a       1\n") && text.contains("longer  2\n"),
            "{text}"
        );
    }
}
