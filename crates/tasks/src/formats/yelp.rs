//! Yelp reviews in the CSV files of Zhang, Zhao & LeCun (NeurIPS 2015), `yelp_review_full_csv`
//! and `yelp_review_polarity_csv`: no header, two quoted columns `"label","text"`, the label
//! counting from 1 (1–5 stars, or 1 = negative / 2 = positive), quotes inside a text doubled
//! (`""`) and its line breaks written as the two characters `\n`.

use std::path::Path;

use crate::dataset::{Example, Target};
use crate::error::TaskError;

/// Which of the two Yelp releases a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YelpVariant {
    /// `yelp_review_full`: 1 to 5 stars, classes 0–4.
    Full,
    /// `yelp_review_polarity`: 1 negative, 2 positive, classes 0–1.
    Polarity,
}

impl YelpVariant {
    /// Number of classes.
    pub fn num_labels(self) -> usize {
        match self {
            YelpVariant::Full => 5,
            YelpVariant::Polarity => 2,
        }
    }
}

/// Reads a Yelp `train.csv` / `test.csv`: each row becomes an example of class `label − 1`
/// (as Hugging Face's `yelp_review_full` and the reference, which subtracts 1, number them).
///
/// The `\n` escapes of the public files are turned back into line breaks (the reference reads
/// the files with pandas and keeps them as the two characters).
pub fn read_yelp_csv(path: &Path, variant: YelpVariant) -> Result<Vec<Example>, TaskError> {
    let file = std::fs::File::open(path).map_err(|e| TaskError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(file);
    let fail = |line: u64, reason: String| TaskError::Format {
        path: path.to_path_buf(),
        line: usize::try_from(line).unwrap_or(usize::MAX),
        reason,
    };
    let mut examples = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            match e.into_kind() {
                csv::ErrorKind::Io(source) => TaskError::io(path, source),
                csv::ErrorKind::Utf8 { err, .. } => fail(line, format!("invalid UTF-8: {err}")),
                kind => fail(line, format!("not a CSV row: {kind:?}")),
            }
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        if record.len() != 2 {
            return Err(fail(
                line,
                format!("{} fields, expected 2 (\"label\",\"text\")", record.len()),
            ));
        }
        let raw = record[0].trim();
        let label: usize = raw
            .parse()
            .map_err(|_| fail(line, format!("label \"{raw}\" is not a number")))?;
        if !(1..=variant.num_labels()).contains(&label) {
            return Err(fail(
                line,
                format!(
                    "label {label} is outside 1..={} of yelp_review_{}",
                    variant.num_labels(),
                    match variant {
                        YelpVariant::Full => "full",
                        YelpVariant::Polarity => "polarity",
                    }
                ),
            ));
        }
        examples.push(Example {
            text: record[1].replace("\\n", "\n"),
            text_pair: None,
            target: Target::Class(label - 1),
        });
    }
    if examples.is_empty() {
        return Err(fail(1, "no reviews in the file".into()));
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{fixture, write};

    fn classes(examples: &[Example]) -> Vec<usize> {
        examples
            .iter()
            .filter_map(|e| match e.target {
                Target::Class(c) => Some(c),
                Target::Score(_) => None,
            })
            .collect()
    }

    #[test]
    fn reads_both_releases() {
        let full = read_yelp_csv(&fixture("yelp_review_full.csv"), YelpVariant::Full).unwrap();
        assert_eq!(classes(&full), vec![4, 1, 3, 0, 2]);
        assert!(full.iter().all(|e| e.text_pair.is_none()));
        assert!(
            full[1].text.contains("terrible staff.\n\nIt seems"),
            "{:?}",
            full[1].text
        );
        assert_eq!(
            full[2].text,
            "The \"all you can eat\" sushi was a steal, and they were open late.\nWould go back."
        );
        assert_eq!(full[4].text, "OK.");
        let polarity =
            read_yelp_csv(&fixture("yelp_review_polarity.csv"), YelpVariant::Polarity).unwrap();
        assert_eq!(classes(&polarity), vec![0, 1, 1]);
        assert!(polarity[2].text.contains("call \"tender\" and"));
    }

    #[test]
    fn bad_rows_are_reported_with_their_line() {
        let err = read_yelp_csv(&fixture("yelp_review_full.csv"), YelpVariant::Polarity)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("label 5 is outside 1..=2"),
            "{err}"
        );
        let file = write("\"1\",\"fine\"\n\"x\",\"not a label\"\n");
        let err = read_yelp_csv(file.path(), YelpVariant::Full)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("\"x\""), "{err}");
        let file = write("\"1\",\"fine\"\n\"2\",\"three\",\"fields\"\n");
        let err = read_yelp_csv(file.path(), YelpVariant::Full)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("3 fields"), "{err}");
        let file = write("\n");
        assert!(read_yelp_csv(file.path(), YelpVariant::Full).is_err());
        let err = read_yelp_csv(Path::new("/nonexistent/train.csv"), YelpVariant::Full)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/train.csv"), "{err}");
    }
}
