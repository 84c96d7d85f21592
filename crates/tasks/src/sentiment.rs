//! Human-scored sentiment snippets (Hutto & Gilbert, ICWSM 2014; the `sentiment` asset): lines
//! of `id<TAB>score<TAB>text` with the mean human score in [-4, 4]. As a binary task, like
//! SST-2: label 1 when the score is positive, 0 when negative; zero-score lines are dropped.

use std::path::Path;

use crate::dataset::{Example, Target, train_test_split};
use crate::error::TaskError;

/// One scored snippet.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSnippet {
    /// The id in the file.
    pub id: String,
    /// Mean human sentiment score, −4 (most negative) to +4.
    pub score: f32,
    /// The sentence.
    pub text: String,
}

/// Reads a `*_GroundTruth.txt` file (CRLF or LF line ends).
pub fn read_scored_snippets(path: &Path) -> Result<Vec<ScoredSnippet>, TaskError> {
    let bytes = std::fs::read(path).map_err(|e| TaskError::io(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let format = |line: usize, reason: String| TaskError::Format {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut snippets = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(id), Some(score), Some(sentence)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format(line_no, "expected id<TAB>score<TAB>text".into()));
        };
        let score: f32 = score
            .trim()
            .parse()
            .map_err(|_| format(line_no, format!("score \"{score}\" is not a number")))?;
        if !(-4.0..=4.0).contains(&score) {
            return Err(format(line_no, format!("score {score} is outside [-4, 4]")));
        }
        snippets.push(ScoredSnippet {
            id: id.trim().to_string(),
            score,
            text: sentence.trim().to_string(),
        });
    }
    if snippets.is_empty() {
        return Err(format(1, "no snippets in the file".into()));
    }
    Ok(snippets)
}

/// The binary task: positive (1) and negative (0) snippets, zero scores dropped.
pub fn binary_examples(snippets: &[ScoredSnippet]) -> Vec<Example> {
    snippets
        .iter()
        .filter(|s| s.score != 0.0)
        .map(|s| Example {
            text: s.text.clone(),
            text_pair: None,
            target: Target::Class(usize::from(s.score > 0.0)),
        })
        .collect()
}

/// The binary task split into (train, test): a shuffle seeded by `seed`, then `test_fraction`
/// of the examples held out. The same seed always gives the same split.
pub fn binary_split(
    path: &Path,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<Example>, Vec<Example>), TaskError> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(TaskError::Config(format!(
            "test_fraction = {test_fraction} must be in [0, 1)"
        )));
    }
    let examples = binary_examples(&read_scored_snippets(path)?);
    Ok(train_test_split(&examples, test_fraction, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), content).unwrap();
        file
    }

    #[test]
    fn reads_scores_and_drops_neutral_lines() {
        let file = write("1\t2.26\tA splash.\r\n2\t-0.6\tToo tepid.\r\n3\t0.0\tA film.\r\n");
        let snippets = read_scored_snippets(file.path()).unwrap();
        assert_eq!(snippets.len(), 3);
        assert_eq!(snippets[1].text, "Too tepid.");
        let examples = binary_examples(&snippets);
        let targets: Vec<_> = examples.iter().map(|e| e.target.clone()).collect();
        assert_eq!(targets, vec![Target::Class(1), Target::Class(0)]);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let file = write("1\t2.0\tfine\n2\tgreat\tnot a score\n");
        let err = read_scored_snippets(file.path()).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("\"great\""), "{err}");
        let file = write("1\t9.5\tout of range\n");
        let err = read_scored_snippets(file.path()).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
        let file = write("just text\n");
        assert!(read_scored_snippets(file.path()).is_err());
        let missing = read_scored_snippets(Path::new("/nonexistent/file.txt"));
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/file.txt")
        );
    }
}
