//! LAMBADA (Paperno et al., ACL 2016) in its plain-text release (`lambada_test_plain_text.txt`):
//! one tokenised passage per line, the task being to predict its last word.

use std::path::Path;

use super::read_utf8;
use crate::error::TaskError;

/// A passage split into what the model reads and the word it should predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextWord {
    /// The passage before its last word, without the space that separated them.
    pub context: String,
    /// The last whitespace-separated word of the passage.
    pub target: String,
}

impl NextWord {
    /// Splits one passage; `None` when it has fewer than two words.
    pub fn split(passage: &str) -> Option<NextWord> {
        let passage = passage.trim();
        let at = passage.rfind(char::is_whitespace)?;
        let (context, target) = passage.split_at(at);
        Some(NextWord {
            context: context.trim_end().to_string(),
            target: target.trim_start().to_string(),
        })
    }
}

/// Reads a plain-text LAMBADA file: every non-blank line is a passage.
///
/// The split is by words, as the dataset defines its target; the reference instead splits the
/// tokenizer's tokens and predicts the last token, which for words the tokenizer cuts in pieces
/// is only the end of the word.
pub fn read_lambada_text(path: &Path) -> Result<Vec<NextWord>, TaskError> {
    let text = read_utf8(path)?;
    let mut passages = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let passage = NextWord::split(line).ok_or_else(|| TaskError::Format {
            path: path.to_path_buf(),
            line: index + 1,
            reason: format!(
                "a passage needs a context and a last word, found only \"{}\"",
                line.trim()
            ),
        })?;
        passages.push(passage);
    }
    if passages.is_empty() {
        return Err(TaskError::Format {
            path: path.to_path_buf(),
            line: 1,
            reason: "no passages in the file".into(),
        });
    }
    Ok(passages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{fixture, write};

    #[test]
    fn splits_each_passage_before_its_last_word() {
        let passages = read_lambada_text(&fixture("lambada_test_plain_text.txt")).unwrap();
        assert_eq!(passages.len(), 3);
        assert_eq!(passages[0].target, "signs");
        assert!(passages[0].context.ends_with("i do n't care about"));
        assert_eq!(passages[1].target, "dock");
        assert!(passages[1].context.starts_with("give me a minute"));
        assert_eq!(passages[2].target, "fog");
        assert_eq!(
            NextWord::split("  a  b\tc \r"),
            Some(NextWord {
                context: "a  b".into(),
                target: "c".into()
            })
        );
        assert_eq!(NextWord::split("alone"), None);
    }

    #[test]
    fn one_word_lines_are_refused_with_their_number() {
        let file = write("the cat sat on the mat\n\nlonely\n");
        let err = read_lambada_text(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("\"lonely\""),
            "{err}"
        );
        let file = write("\n \n");
        assert!(read_lambada_text(file.path()).is_err());
    }
}
