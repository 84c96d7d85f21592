//! The ChatterBot dialog corpus (the `chatterbot` asset, PyPI `chatterbot-corpus`): one YAML
//! file per topic, each
//!
//! ```yaml
//! categories:
//! - greetings
//! conversations:
//! - - Hello
//!   - Hi
//! - - How are you doing?
//!   - I'm doing great.
//!   - That is good to hear
//! ```
//!
//! A conversation is a list of turns, each answering the one before it. Every turn is kept
//! as the text written in the file: the YAML is read without resolving scalar types, so
//! `'1963'`, `1963`, `3.10` and `yes` are all text, exactly as written (a block scalar `|`
//! keeps its line breaks, including the final one). A conversation written as a lone scalar
//! instead of a list (the English `trivia.yml` has one, `- In a game of bingo, ...` where
//! `- - ` was meant, which YAML folds with its answer into one string) is read as a
//! conversation of one turn, and so yields no question/answer pair.

use std::path::{Path, PathBuf};

use saphyr::{MarkedYaml, Scalar, ScanError, YamlData, YamlLoader};
use saphyr_parser::Parser;

use crate::dataset::train_test_split;
use crate::error::TaskError;

/// One conversation of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The file's first category (`categories[0]`), or the file's stem when it lists none.
    pub category: String,
    /// The turns in order, each answering the previous one; never empty.
    pub turns: Vec<String>,
}

impl Conversation {
    /// The consecutive turns as (question, answer) pairs: `turns.len() - 1` of them.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.turns
            .windows(2)
            .map(|pair| (pair[0].as_str(), pair[1].as_str()))
    }
}

/// A turn and the turn that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaPair {
    /// The conversation's category.
    pub category: String,
    /// The earlier turn.
    pub question: String,
    /// The turn that follows it.
    pub answer: String,
}

/// Reads one corpus file.
pub fn read_file(path: &Path) -> Result<Vec<Conversation>, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|e| TaskError::io(path, e))?;
    parse(&text, path)
}

/// Reads every `*.yml` / `*.yaml` file of `dir` (not its subdirectories), in file-name
/// order, and concatenates their conversations.
pub fn read_dir(dir: &Path) -> Result<Vec<Conversation>, TaskError> {
    let entries = std::fs::read_dir(dir).map_err(|e| TaskError::io(dir, e))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| TaskError::io(dir, e))?.path();
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        );
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        let none = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no *.yml corpus files in the directory",
        );
        return Err(TaskError::io(dir, none));
    }
    files.sort();
    let mut conversations = Vec::new();
    for file in &files {
        conversations.extend(read_file(file)?);
    }
    Ok(conversations)
}

/// Parses the text of a corpus file; `path` names it in errors and gives the fallback
/// category.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Conversation>, TaskError> {
    let error = |line: usize, reason: String| TaskError::Format {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
    loader.early_parse(false);
    let scan_error = |e: &ScanError| error(e.marker().line(), e.info().to_owned());
    Parser::new_from_str(text)
        .load(&mut loader, true)
        .map_err(|e| scan_error(&e))?;
    if let Some(e) = loader.error() {
        return Err(scan_error(e));
    }
    let docs = loader.into_documents();
    let root = match docs.as_slice() {
        [root] => root,
        [] => return Err(error(1, "the file is empty".into())),
        [_, second, ..] => {
            return Err(error(
                line_of(second),
                "more than one YAML document in the file".into(),
            ));
        }
    };
    let YamlData::Mapping(map) = &untagged(root).data else {
        return Err(error(
            line_of(root),
            "expected a mapping with `categories` and `conversations`".into(),
        ));
    };
    let mut categories = None;
    let mut conversations = None;
    for (key, value) in map {
        match scalar_text(key).as_deref() {
            Some("categories") => categories = Some(value),
            Some("conversations") => conversations = Some(value),
            _ => {}
        }
    }
    let category = match categories {
        Some(node) => first_category(node).map_err(|(line, reason)| error(line, reason))?,
        None => None,
    };
    let category = category.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let Some(conversations) = conversations else {
        return Err(error(line_of(root), "no `conversations` key".into()));
    };
    let YamlData::Sequence(items) = &untagged(conversations).data else {
        return Err(error(
            line_of(conversations),
            "`conversations` is not a list".into(),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let turns =
                conversation_turns(item, index).map_err(|(line, reason)| error(line, reason))?;
            Ok(Conversation {
                category: category.clone(),
                turns,
            })
        })
        .collect()
}

/// All consecutive-turn pairs of `conversations`, in order.
pub fn qa_pairs(conversations: &[Conversation]) -> Vec<QaPair> {
    conversations
        .iter()
        .flat_map(|c| {
            c.pairs().map(|(question, answer)| QaPair {
                category: c.category.clone(),
                question: question.to_owned(),
                answer: answer.to_owned(),
            })
        })
        .collect()
}

/// Splits conversations into (train, test) after a shuffle seeded by `seed`, with
/// `test_fraction` of them held out; whole conversations move, so no pair of a test
/// conversation is trained on. The same seed always gives the same split.
pub fn split(
    conversations: &[Conversation],
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<Conversation>, Vec<Conversation>), TaskError> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(TaskError::Config(format!(
            "test_fraction = {test_fraction} must be in [0, 1)"
        )));
    }
    Ok(train_test_split(conversations, test_fraction, seed))
}

/// A problem at a line.
type Located = (usize, String);

fn line_of(node: &MarkedYaml<'_>) -> usize {
    node.span.start.line()
}

/// The node a user-defined tag (`!foo x`) wraps; any other node itself.
fn untagged<'a, 'i>(node: &'a MarkedYaml<'i>) -> &'a MarkedYaml<'i> {
    match &node.data {
        YamlData::Tagged(_, inner) => untagged(inner),
        _ => node,
    }
}

/// A scalar's text as written (or, for an already resolved scalar, its value as text);
/// `None` for collections and anything else.
fn scalar_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &untagged(node).data {
        YamlData::Representation(text, _, _) => Some(text.to_string()),
        YamlData::Value(scalar) => Some(match scalar {
            Scalar::Null => String::new(),
            Scalar::Boolean(b) => b.to_string(),
            Scalar::Integer(i) => i.to_string(),
            Scalar::FloatingPoint(f) => f.to_string(),
            Scalar::String(s) => s.to_string(),
        }),
        _ => None,
    }
}

/// The first entry of `categories` (a list of scalars, or one scalar); `None` when empty.
fn first_category(node: &MarkedYaml<'_>) -> Result<Option<String>, Located> {
    if let Some(text) = scalar_text(node) {
        return Ok(Some(text).filter(|t| !t.trim().is_empty()));
    }
    let YamlData::Sequence(items) = &untagged(node).data else {
        return Err((line_of(node), "`categories` is not a list".into()));
    };
    match items.first() {
        None => Ok(None),
        Some(first) => match scalar_text(first) {
            Some(text) if !text.trim().is_empty() => Ok(Some(text)),
            Some(_) => Err((line_of(first), "the first category is empty".into())),
            None => Err((line_of(first), "a category is not text".into())),
        },
    }
}

/// The turns of the `index`-th (0-based) conversation: a list of scalars, or one scalar.
fn conversation_turns(item: &MarkedYaml<'_>, index: usize) -> Result<Vec<String>, Located> {
    let which = format!("conversation {}", index + 1);
    let turn = |node: &MarkedYaml<'_>, number: usize| match scalar_text(node) {
        Some(text) if !text.trim().is_empty() => Ok(text),
        Some(_) => Err((line_of(node), format!("{which}, turn {number} is empty"))),
        None => Err((
            line_of(node),
            format!("{which}, turn {number} is not text (a nested list or mapping)"),
        )),
    };
    match &untagged(item).data {
        YamlData::Sequence(turns) if turns.is_empty() => {
            Err((line_of(item), format!("{which} has no turns")))
        }
        YamlData::Sequence(turns) => turns
            .iter()
            .enumerate()
            .map(|(i, node)| turn(node, i + 1))
            .collect(),
        _ => Ok(vec![turn(item, 1)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/chatterbot")
    }

    fn parse_str(text: &str) -> Result<Vec<Conversation>, TaskError> {
        parse(text, Path::new("dir/topic.yml"))
    }

    #[test]
    fn the_fixture_files_read_in_name_order() {
        let conversations = read_dir(&fixtures()).unwrap();
        let greetings = read_file(&fixtures().join("greetings.yml")).unwrap();
        let trivia = read_file(&fixtures().join("trivia.yml")).unwrap();
        assert_eq!(conversations.len(), greetings.len() + trivia.len());
        assert_eq!(conversations[..greetings.len()], greetings[..]);
        assert_eq!(
            greetings[0],
            Conversation {
                category: "greetings".into(),
                turns: vec!["Hello".into(), "Hi".into()],
            }
        );
        assert_eq!(
            greetings[2].turns,
            [
                "How are you doing?",
                "I'm doing great.",
                "That is good to hear"
            ]
        );
        // `categories` lists two; the first one is the category.
        assert!(trivia.iter().all(|c| c.category == "trivia"));
    }

    #[test]
    fn scalars_stay_text_as_written() {
        let trivia = read_file(&fixtures().join("trivia.yml")).unwrap();
        let answers: Vec<&str> = trivia[..5].iter().map(|c| c.turns[1].as_str()).collect();
        assert_eq!(answers[0], "1963", "quoted number");
        assert_eq!(answers[1], "1984", "plain integer");
        assert_eq!(answers[2], "3.10", "plain float keeps its digits");
        assert_eq!(answers[3], "yes", "no boolean resolution");
        assert_eq!(answers[4], "~", "no null resolution");
        assert_eq!(
            trivia[5].turns[0],
            "The Space Race was a 20th-century competition between what two Cold War \
             rivals, for supremacy in spaceflight capability?",
            "a folded plain scalar"
        );
        assert_eq!(
            trivia[6].turns[1],
            "Here's a loop in Python:\n\n```\nfor i in range(3):\n    print(i)\n```\n",
            "a literal block keeps its lines and indentation"
        );
        // The lone scalar where a list was meant: one turn, no pair.
        let lone = &trivia[7];
        assert_eq!(
            lone.turns,
            ["In a game of bingo, which number is represented by \"two little ducks\"? - '22'"]
        );
        assert_eq!(lone.pairs().count(), 0);
    }

    #[test]
    fn pairs_are_consecutive_turns() {
        let greetings = read_file(&fixtures().join("greetings.yml")).unwrap();
        let pairs = qa_pairs(&greetings);
        let turns: usize = greetings.iter().map(|c| c.turns.len() - 1).sum();
        assert_eq!(pairs.len(), turns);
        let from_third: Vec<_> = greetings[2].pairs().collect();
        assert_eq!(
            from_third,
            [
                ("How are you doing?", "I'm doing great."),
                ("I'm doing great.", "That is good to hear")
            ]
        );
        assert_eq!(
            pairs[0],
            QaPair {
                category: "greetings".into(),
                question: "Hello".into(),
                answer: "Hi".into(),
            }
        );
    }

    #[test]
    fn splits_are_seeded_and_keep_conversations_whole() {
        let all = read_dir(&fixtures()).unwrap();
        let (train, test) = split(&all, 0.25, 7).unwrap();
        assert_eq!(train.len() + test.len(), all.len());
        assert_eq!(test.len(), (all.len() as f64 * 0.25).round() as usize);
        assert_eq!(split(&all, 0.25, 7).unwrap(), (train.clone(), test.clone()));
        assert_ne!(split(&all, 0.25, 8).unwrap().1, test);
        for c in &test {
            assert!(all.contains(c));
        }
        assert!(split(&all, 1.0, 0).is_err());
        assert!(split(&all, -0.1, 0).is_err());
    }

    #[test]
    fn a_file_without_categories_is_named_by_its_stem() {
        let conversations = parse_str("conversations:\n- - a\n  - b\n").unwrap();
        assert_eq!(conversations[0].category, "topic");
        let conversations = parse_str("categories: []\nconversations:\n- - a\n  - b\n").unwrap();
        assert_eq!(conversations[0].category, "topic");
        let conversations = parse_str("categories: food\nconversations:\n- [a, b]\n").unwrap();
        assert_eq!(conversations[0].category, "food");
    }

    #[test]
    fn malformed_files_name_the_file_line_and_problem() {
        let cases = [
            ("", "line 1", "empty"),
            ("- a\n- b\n", "line 1", "expected a mapping"),
            ("categories: [x]\n", "line 1", "no `conversations`"),
            ("conversations: 3\n", "line 1", "not a list"),
            (
                "conversations:\n- - a\n  - [b, c]\n",
                "line 3",
                "turn 2 is not text",
            ),
            (
                "conversations:\n- - a\n- []\n",
                "line 3",
                "conversation 2 has no turns",
            ),
            ("conversations:\n- - a\n  -\n", "line 3", "turn 2 is empty"),
            (
                "conversations:\n- - a\n  - ''\n",
                "line 3",
                "turn 2 is empty",
            ),
            (
                "conversations:\n- {a: b}\n",
                "line 2",
                "conversation 1, turn 1 is not text",
            ),
            (
                "categories:\n- [x]\nconversations: []\n",
                "line 2",
                "category is not text",
            ),
            ("conversations:\n- - 'open\n", "line", "quoted"),
            (
                "conversations: []\nconversations: []\n",
                "line 2",
                "duplicated key",
            ),
            (
                "conversations: []\n---\nconversations: []\n",
                "line 3",
                "more than one",
            ),
        ];
        for (text, line, problem) in cases {
            let err = parse_str(text).unwrap_err();
            assert!(matches!(err, TaskError::Format { .. }), "{text:?}: {err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with("dir/topic.yml, ") && msg.contains(line) && msg.contains(problem),
                "{text:?}: {msg}"
            );
        }
    }

    #[test]
    fn missing_files_and_empty_directories_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no *.yml"), "{err}");
        let err = read_file(&dir.path().join("nope.yml")).unwrap_err();
        assert!(matches!(err, TaskError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.yml"), "{err}");
    }
}
