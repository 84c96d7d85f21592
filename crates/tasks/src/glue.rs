//! GLUE tasks in their public TSV format (the `glue_data` release): columns found by header
//! name where the file has a header (CoLA has none), labels mapped to the ids Hugging Face's
//! `glue` dataset uses.

use std::path::Path;

use crate::dataset::{Example, Target};
use crate::error::TaskError;

/// The nine GLUE tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlueTask {
    /// Acceptability (Matthews correlation).
    Cola,
    /// Sentiment.
    Sst2,
    /// Paraphrase (accuracy / F1).
    Mrpc,
    /// Similarity score 0–5 (Pearson / Spearman).
    Stsb,
    /// Duplicate questions.
    Qqp,
    /// Entailment, 3 classes.
    Mnli,
    /// Question/sentence entailment.
    Qnli,
    /// Entailment.
    Rte,
    /// Winograd entailment.
    Wnli,
}

/// Where a task's fields are: first text, optional second text, label column, label names in
/// id order (`None`: the column holds the id, or a score for STS-B).
struct Layout {
    text: &'static str,
    pair: Option<&'static str>,
    label: &'static str,
    names: Option<&'static [&'static str]>,
}

impl GlueTask {
    /// Number of classes (1 for the STS-B regression).
    pub fn num_labels(self) -> usize {
        match self {
            GlueTask::Stsb => 1,
            GlueTask::Mnli => 3,
            _ => 2,
        }
    }

    fn layout(self) -> Layout {
        let entail: Option<&'static [&'static str]> = Some(&["entailment", "not_entailment"]);
        match self {
            // CoLA has no header: source, label, original mark, sentence.
            GlueTask::Cola => Layout {
                text: "3",
                pair: None,
                label: "1",
                names: None,
            },
            GlueTask::Sst2 => Layout {
                text: "sentence",
                pair: None,
                label: "label",
                names: None,
            },
            GlueTask::Mrpc => Layout {
                text: "#1 String",
                pair: Some("#2 String"),
                label: "Quality",
                names: None,
            },
            GlueTask::Stsb => Layout {
                text: "sentence1",
                pair: Some("sentence2"),
                label: "score",
                names: None,
            },
            GlueTask::Qqp => Layout {
                text: "question1",
                pair: Some("question2"),
                label: "is_duplicate",
                names: None,
            },
            GlueTask::Mnli => Layout {
                text: "sentence1",
                pair: Some("sentence2"),
                label: "gold_label",
                names: Some(&["entailment", "neutral", "contradiction"]),
            },
            GlueTask::Qnli => Layout {
                text: "question",
                pair: Some("sentence"),
                label: "label",
                names: entail,
            },
            GlueTask::Rte => Layout {
                text: "sentence1",
                pair: Some("sentence2"),
                label: "label",
                names: entail,
            },
            GlueTask::Wnli => Layout {
                text: "sentence1",
                pair: Some("sentence2"),
                label: "label",
                names: None,
            },
        }
    }

    /// Reads a labelled split (`train.tsv`, `dev.tsv`) of this task.
    pub fn load(self, path: &Path) -> Result<Vec<Example>, TaskError> {
        let text = std::fs::read_to_string(path).map_err(|e| TaskError::io(path, e))?;
        let fail = |line: usize, reason: String| TaskError::Format {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let layout = self.layout();
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let header: Vec<&str> = if self == GlueTask::Cola {
            Vec::new()
        } else {
            lines
                .next()
                .map(|(_, l)| l.split('\t').collect())
                .unwrap_or_default()
        };
        let column = |name: &str| -> Result<usize, TaskError> {
            if header.is_empty() {
                return Ok(name.parse().expect("positional layouts use numbers"));
            }
            header
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| fail(1, format!("no column \"{name}\" in the header {header:?}")))
        };
        let text_col = column(layout.text)?;
        let pair_col = layout.pair.map(column).transpose()?;
        let label_col = column(layout.label)?;
        let mut examples = Vec::new();
        for (index, line) in lines {
            let fields: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
            let field = |c: usize| {
                fields.get(c).map(|f| f.trim()).ok_or_else(|| {
                    fail(
                        index + 1,
                        format!("{} fields, column {c} needed", fields.len()),
                    )
                })
            };
            let raw = field(label_col)?;
            let target = match (self, layout.names) {
                (GlueTask::Stsb, _) => {
                    let score: f32 = raw
                        .parse()
                        .map_err(|_| fail(index + 1, format!("score \"{raw}\"")))?;
                    Target::Score(score)
                }
                (_, Some(names)) => {
                    Target::Class(names.iter().position(|n| *n == raw).ok_or_else(|| {
                        fail(
                            index + 1,
                            format!("label \"{raw}\" is not one of {names:?}"),
                        )
                    })?)
                }
                (_, None) => {
                    let class: usize = raw.parse().map_err(|_| {
                        fail(index + 1, format!("label \"{raw}\" is not a class id"))
                    })?;
                    if class >= self.num_labels() {
                        return Err(fail(index + 1, format!("label {class} out of range")));
                    }
                    Target::Class(class)
                }
            };
            examples.push(Example {
                text: field(text_col)?.to_string(),
                text_pair: pair_col.map(field).transpose()?.map(str::to_string),
                target,
            });
        }
        Ok(examples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/glue")
            .join(name)
    }

    fn classes(examples: &[Example]) -> Vec<usize> {
        examples
            .iter()
            .map(|e| match e.target {
                Target::Class(c) => c,
                Target::Score(_) => panic!("a score"),
            })
            .collect()
    }

    #[test]
    fn every_task_reads_its_fixture() {
        let cases = [
            (GlueTask::Cola, "cola.tsv", vec![1, 0], false),
            (GlueTask::Sst2, "sst2.tsv", vec![0, 0, 1], false),
            (GlueTask::Mrpc, "mrpc.tsv", vec![1, 0], true),
            (GlueTask::Qqp, "qqp.tsv", vec![0, 1], true),
            (GlueTask::Mnli, "mnli.tsv", vec![1, 0, 2], true),
            (GlueTask::Qnli, "qnli.tsv", vec![1, 0], true),
            (GlueTask::Rte, "rte.tsv", vec![1, 0], true),
            (GlueTask::Wnli, "wnli.tsv", vec![1, 0], true),
        ];
        for (task, file, labels, pairs) in cases {
            let examples = task.load(&fixture(file)).unwrap();
            assert_eq!(classes(&examples), labels, "{task:?}");
            assert!(
                examples.iter().all(|e| e.text_pair.is_some() == pairs),
                "{task:?}"
            );
        }
        let cola = GlueTask::Cola.load(&fixture("cola.tsv")).unwrap();
        assert!(cola[0].text.starts_with("Our friends won't buy"));
        let mrpc = GlueTask::Mrpc.load(&fixture("mrpc.tsv")).unwrap();
        assert_eq!(
            mrpc[1].text_pair.as_deref(),
            Some("Yucaipa bought Dominick's in 1995.")
        );
        let stsb = GlueTask::Stsb.load(&fixture("stsb.tsv")).unwrap();
        assert_eq!(stsb[1].target, Target::Score(3.8));
        assert_eq!(stsb[0].text, "A plane is taking off.");
    }

    #[test]
    fn wrong_files_are_explained() {
        let err = GlueTask::Qnli
            .load(&fixture("sst2.tsv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column \"question\""), "{err}");
        let err = GlueTask::Rte
            .load(&fixture("wnli.tsv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("label \"1\" is not one of"), "{err}");
        assert!(GlueTask::Sst2.load(&fixture("missing.tsv")).is_err());
    }
}
