//! A configured task's data, ready to train on and to score: labelled texts for classifiers,
//! windows of questions for span QA, prompt/response pairs for generation.

use burn::tensor::Device;
use splitlm_assets::Asset;
use splitlm_metrics::labels;
use splitlm_nn::TaskHead;
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::generate::Sampling;
use tokenizers::Tokenizer;

use crate::config::{InstructionFormat, MathFormat, TaskConfig};
use crate::dataset::{Example, Target, train_test_split};
use crate::error::TaskError;
use crate::formats::{self, SquadQuestion, read_squad_json};
use crate::lm::{LmEncoder, PromptPairs};
use crate::predictor::{LabelledTexts, Predictor, TrainingSet, evaluate_classification};
use crate::prompt::{PromptPair, Template, stop_ids};
use crate::span_qa::{QaEncoder, QaFeature, QaFeatures, SpanDecoding, decode_answers, span_logits};
use crate::text_metrics::{RougeScores, final_answer_accuracy, rouge, squad_evaluate};
use crate::{Encoder, sentiment};

type Result<T> = std::result::Result<T, TaskError>;

/// A task's held-out scores: named values and the one that early stopping and MP use.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskScores {
    /// The main metric's name.
    pub metric: &'static str,
    /// Its value (higher is better).
    pub value: f64,
    /// Every score, by name.
    pub all: Vec<(&'static str, f64)>,
    /// Examples scored.
    pub examples: usize,
    /// A few generated texts (generation tasks), with their references.
    pub samples: Vec<(String, String)>,
}

/// How generated answers are scored against references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMetric {
    /// ROUGE-1/2/L; the main score is ROUGE-L F1.
    Rouge,
    /// ROUGE-1/2/L; the main score is ROUGE-2 recall (the reference's Alpaca/Dolly metric).
    Rouge2Recall,
    /// Final-answer accuracy ("The answer is …", a boxed expression, or the last number).
    FinalAnswer,
    /// Whether the first generated word is the reference word.
    NextWord,
}

/// A task's data.
pub enum TaskData {
    /// Classification or regression.
    Labelled {
        /// Tokenizes.
        encoder: Encoder,
        /// Training examples.
        train: Vec<Example>,
        /// Held-out examples.
        eval: Vec<Example>,
        /// Classes (1: regression).
        num_labels: usize,
    },
    /// Extractive span QA.
    Spans {
        /// Cuts questions into windows.
        encoder: QaEncoder,
        /// Training windows.
        train: Vec<QaFeature>,
        /// Held-out questions.
        eval: Vec<SquadQuestion>,
        /// Their windows.
        eval_features: Vec<QaFeature>,
    },
    /// Prompt → response generation.
    Generation {
        /// Tokenizes.
        encoder: LmEncoder,
        /// Training pairs.
        train: Vec<PromptPair>,
        /// Held-out pairs and the reference (as plain text) each answer is scored against.
        eval: Vec<(PromptPair, String)>,
        /// Ids that end a generated answer.
        stop: Vec<u32>,
        /// How answers are scored.
        metric: TextMetric,
    },
}

fn cap<T>(mut items: Vec<T>, n: usize) -> Vec<T> {
    if n > 0 {
        items.truncate(n);
    }
    items
}

impl TaskData {
    /// Loads the data of `task` (fetching demo assets when needed), tokenized with the model's
    /// `tokenizer`; `seed` fixes splits.
    pub fn load(task: &TaskConfig, tokenizer: &Tokenizer, seed: u64) -> Result<Self> {
        match task {
            TaskConfig::Sentiment {
                max_len,
                train_examples,
                eval_examples,
            } => {
                splitlm_assets::ensure(Asset::Sentiment)?;
                let (train, eval) =
                    sentiment::binary_split(&splitlm_assets::movie_reviews(), 0.1, seed)?;
                Ok(TaskData::Labelled {
                    encoder: Encoder::new(tokenizer.clone(), *max_len, PaddingSide::Right)?,
                    train: cap(train, *train_examples),
                    eval: cap(eval, *eval_examples),
                    num_labels: 2,
                })
            }
            TaskConfig::Glue {
                task,
                train,
                dev,
                max_len,
                train_examples,
                eval_examples,
            } => Ok(TaskData::Labelled {
                encoder: Encoder::new(tokenizer.clone(), *max_len, PaddingSide::Right)?,
                train: cap(
                    crate::dataset::shuffled(&task.load(train)?, seed),
                    *train_examples,
                ),
                eval: cap(task.load(dev)?, *eval_examples),
                num_labels: task.num_labels(),
            }),
            TaskConfig::Squad { .. } => squad_data(task, tokenizer, seed),
            _ => generation_data(task, tokenizer, seed),
        }
    }

    /// The task head the model needs.
    pub fn head(&self) -> TaskHead {
        match self {
            TaskData::Labelled { num_labels, .. } => TaskHead::SequenceClassification {
                num_labels: *num_labels,
            },
            TaskData::Spans { .. } => TaskHead::SpanQa,
            TaskData::Generation { .. } => TaskHead::CausalLm,
        }
    }

    /// The training examples.
    pub fn training_set(&self) -> Box<dyn TrainingSet + '_> {
        match self {
            TaskData::Labelled { encoder, train, .. } => Box::new(LabelledTexts {
                encoder,
                examples: train,
            }),
            TaskData::Spans { encoder, train, .. } => Box::new(QaFeatures {
                encoder,
                features: train,
            }),
            TaskData::Generation { encoder, train, .. } => Box::new(PromptPairs {
                encoder,
                pairs: train,
            }),
        }
    }

    /// The held-out examples as batches with their labels (classification and span QA; the
    /// held-out set of a generation task is scored by generating, so it has none).
    pub fn held_out_set(&self) -> Option<Box<dyn TrainingSet + '_>> {
        match self {
            TaskData::Labelled { encoder, eval, .. } => Some(Box::new(LabelledTexts {
                encoder,
                examples: eval,
            })),
            TaskData::Spans {
                encoder,
                eval_features,
                ..
            } => Some(Box::new(QaFeatures {
                encoder,
                features: eval_features,
            })),
            TaskData::Generation { .. } => None,
        }
    }

    /// The tokenizer as this task encodes with it, its padding id and side.
    pub fn text_encoding(&self) -> (&Tokenizer, u32, PaddingSide) {
        match self {
            TaskData::Labelled { encoder, .. } => {
                (encoder.tokenizer(), encoder.pad_id(), PaddingSide::Right)
            }
            TaskData::Spans { encoder, .. } => {
                (encoder.tokenizer(), encoder.pad_id(), PaddingSide::Right)
            }
            TaskData::Generation { encoder, .. } => {
                (encoder.tokenizer(), encoder.pad_id(), PaddingSide::Right)
            }
        }
    }

    /// The training inputs as the model sees them, one unpadded id sequence per example, in
    /// order (what text-level defenses count words in and TextObfuscator clusters); batches
    /// are made on `device` to be read back.
    pub fn training_inputs(&self, device: &Device) -> Result<Vec<Vec<u32>>> {
        let set = self.training_set();
        let mut inputs = Vec::with_capacity(set.len());
        let indices: Vec<usize> = (0..set.len()).collect();
        for chunk in indices.chunks(256) {
            let (batch, _) = set.batch(chunk, device)?;
            let read = |t: burn::tensor::Tensor<2, burn::tensor::Int>| {
                t.into_data()
                    .try_into_vec_as::<i64>()
                    .map_err(|e| TaskError::Mismatch(format!("token ids: {e:?}")))
            };
            let (ids, mask) = (read(batch.input_ids)?, read(batch.attention_mask)?);
            let width = ids.len() / chunk.len();
            for row in 0..chunk.len() {
                let span = row * width..(row + 1) * width;
                inputs.push(
                    ids[span.clone()]
                        .iter()
                        .zip(&mask[span])
                        .filter(|&(_, &m)| m != 0)
                        .map(|(&id, _)| id as u32)
                        .collect(),
                );
            }
        }
        Ok(inputs)
    }

    /// Sizes of the training and held-out sets.
    pub fn sizes(&self) -> (usize, usize) {
        match self {
            TaskData::Labelled { train, eval, .. } => (train.len(), eval.len()),
            TaskData::Spans { train, eval, .. } => (train.len(), eval.len()),
            TaskData::Generation { train, eval, .. } => (train.len(), eval.len()),
        }
    }

    /// Scores `model` on the held-out set (generation tasks decode with `sampling`, its stop
    /// tokens extended with the tokenizer's end markers).
    pub fn evaluate(&self, model: &mut dyn Predictor, sampling: &Sampling) -> Result<TaskScores> {
        match self {
            TaskData::Labelled {
                encoder,
                eval,
                num_labels: 1,
                ..
            } => evaluate_regression(model, encoder, eval),
            TaskData::Labelled { encoder, eval, .. } => {
                let s = evaluate_classification(model, encoder, eval, 64)?;
                Ok(TaskScores {
                    metric: "accuracy",
                    value: s.accuracy,
                    all: vec![("accuracy", s.accuracy), ("f1", s.f1), ("mcc", s.mcc)],
                    examples: s.examples,
                    samples: Vec::new(),
                })
            }
            TaskData::Spans {
                encoder,
                eval,
                eval_features,
                ..
            } => {
                let logits = span_logits(model, encoder, eval_features, 32)?;
                let answers =
                    decode_answers(eval, eval_features, &logits, &SpanDecoding::default());
                let scores = squad_evaluate(eval, &answers);
                let samples = eval
                    .iter()
                    .take(3)
                    .map(|q| {
                        let truth = q
                            .answers
                            .first()
                            .map(|a| a.text.clone())
                            .unwrap_or_default();
                        (truth, answers[&q.id].clone())
                    })
                    .collect();
                Ok(TaskScores {
                    metric: "f1",
                    value: scores.f1,
                    all: vec![("exact_match", scores.exact_match), ("f1", scores.f1)],
                    examples: scores.total,
                    samples,
                })
            }
            TaskData::Generation {
                encoder,
                eval,
                stop,
                metric,
                ..
            } => {
                let mut sampling = sampling.clone();
                sampling.stop.extend(stop);
                let mut pairs = Vec::with_capacity(eval.len());
                for (pair, reference) in eval {
                    let prompt = encoder.ids(&pair.prompt)?;
                    let generated = model.generate(&prompt, &sampling)?;
                    let text = encoder.decode(&generated.tokens)?;
                    pairs.push((reference.clone(), text));
                }
                Ok(score_texts(*metric, pairs))
            }
        }
    }
}

/// Extractive QA: SQuAD questions split by article, cut into windows.
fn squad_data(task: &TaskConfig, tokenizer: &Tokenizer, seed: u64) -> Result<TaskData> {
    match task {
        TaskConfig::Squad {
            path,
            max_len,
            doc_stride,
            held_out_fraction,
            train_examples,
            eval_examples,
        } => {
            let path = match path {
                Some(path) => path.clone(),
                None => {
                    splitlm_assets::ensure(Asset::SquadDev)?;
                    splitlm_assets::squad_dev()
                }
            };
            let questions = read_squad_json(&path)?;
            // Held-out articles, so no context is seen in training.
            let mut titles: Vec<&str> = questions.iter().map(|q| q.title.as_str()).collect();
            titles.dedup();
            let (_, held_out) = train_test_split(&titles, *held_out_fraction, seed);
            let (eval, train): (Vec<SquadQuestion>, Vec<SquadQuestion>) = questions
                .iter()
                .cloned()
                .partition(|q| held_out.contains(&q.title.as_str()));
            let encoder = QaEncoder::new(tokenizer.clone(), *max_len, *doc_stride)?;
            let train = cap(crate::dataset::shuffled(&train, seed), *train_examples);
            let eval = cap(eval, *eval_examples);
            Ok(TaskData::Spans {
                train: encoder.features(&train)?,
                eval_features: encoder.features(&eval)?,
                eval,
                encoder,
            })
        }
        _ => unreachable!("called for squad tasks only"),
    }
}

/// Prompt → response tasks in the template of the model's tokenizer.
fn generation_data(task: &TaskConfig, tokenizer: &Tokenizer, seed: u64) -> Result<TaskData> {
    match task {
        TaskConfig::Chatterbot {
            max_len,
            eval_examples,
            train_examples,
        } => {
            splitlm_assets::ensure(Asset::Chatterbot)?;
            let conversations = crate::chatterbot::read_dir(&splitlm_assets::chatterbot_english())?;
            let pairs: Vec<(String, String)> = crate::chatterbot::qa_pairs(&conversations)
                .into_iter()
                .map(|p| (p.question, p.answer))
                .collect();
            let setup = GenerationSetup::new(tokenizer, *max_len, TextMetric::Rouge)?;
            setup.split(pairs, *eval_examples, *train_examples, seed)
        }
        TaskConfig::E2e {
            max_len,
            eval_examples,
            train_examples,
        } => {
            splitlm_assets::ensure(Asset::E2eNlg)?;
            let records = crate::e2e::read_examples(&splitlm_assets::e2e_nlg())?;
            let pairs = records
                .into_iter()
                .filter_map(|r| {
                    let target = r.targets.first()?.clone();
                    Some((format!("Describe this restaurant: {}", r.input), target))
                })
                .collect();
            let setup = GenerationSetup::new(tokenizer, *max_len, TextMetric::Rouge)?;
            setup.split(pairs, *eval_examples, *train_examples, seed)
        }
        TaskConfig::Instruction {
            format,
            path,
            max_len,
            eval_examples,
            train_examples,
        } => {
            let records = match format {
                InstructionFormat::Alpaca => formats::read_alpaca_json(path)?,
                InstructionFormat::CodeAlpaca => formats::read_code_alpaca_json(path)?,
                InstructionFormat::Dolly => formats::read_dolly_jsonl(path)?,
            };
            let setup = GenerationSetup::new(tokenizer, *max_len, TextMetric::Rouge2Recall)?;
            let pairs = records.iter().map(|r| setup.instruction(r)).collect();
            setup.split_pairs(pairs, *eval_examples, *train_examples, seed)
        }
        TaskConfig::Math {
            format,
            path,
            max_len,
            eval_examples,
            train_examples,
        } => {
            let problems = match format {
                MathFormat::Gsm8k => formats::read_gsm8k_jsonl(path)?,
                MathFormat::Math => formats::read_math_dir(path)?,
            };
            let setup = GenerationSetup::new(tokenizer, *max_len, TextMetric::FinalAnswer)?;
            // Trained on the worked solution stated to end in "The answer is …"; scored
            // on the final answer.
            let pairs = problems
                .iter()
                .map(|p| {
                    setup.instruction(&formats::Instruction {
                        instruction: p.problem.clone(),
                        input: String::new(),
                        output: format!("{}\nThe answer is {}", p.solution, p.answer),
                    })
                })
                .collect();
            let references = problems.iter().map(|p| p.answer.clone()).collect();
            setup.split_scored(pairs, references, *eval_examples, *train_examples, seed)
        }
        TaskConfig::Lambada {
            path,
            max_len,
            eval_examples,
            train_examples,
        } => {
            let passages = formats::read_lambada_text(path)?;
            let setup = GenerationSetup::new(tokenizer, *max_len, TextMetric::NextWord)?;
            // Passages are continued as written: the pairs skip the template.
            let pairs = passages
                .iter()
                .map(|p| PromptPair {
                    prompt: p.context.clone(),
                    response: format!(" {}", p.target),
                })
                .collect();
            let references = passages.iter().map(|p| p.target.clone()).collect();
            setup.split_scored(pairs, references, *eval_examples, *train_examples, seed)
        }
        TaskConfig::Sentiment { .. } | TaskConfig::Glue { .. } | TaskConfig::Squad { .. } => {
            unreachable!("called for generation tasks only")
        }
    }
}

/// How a generation task's texts become prompts for a model, and its split.
struct GenerationSetup {
    encoder: LmEncoder,
    template: Template,
    metric: TextMetric,
}

impl GenerationSetup {
    /// Instructions in the template the model's tokenizer was trained with.
    fn new(tokenizer: &Tokenizer, max_len: usize, metric: TextMetric) -> Result<Self> {
        Ok(Self {
            encoder: LmEncoder::new(tokenizer.clone(), max_len)?,
            template: Template::of(tokenizer),
            metric,
        })
    }

    fn instruction(&self, record: &formats::Instruction) -> PromptPair {
        self.template.pair(record, self.encoder.tokenizer())
    }

    /// Question/answer texts in the template; the answer is also the reference.
    fn split(
        self,
        pairs: Vec<(String, String)>,
        eval_examples: usize,
        train_examples: usize,
        seed: u64,
    ) -> Result<TaskData> {
        let pairs = pairs
            .into_iter()
            .map(|(question, answer)| {
                self.instruction(&formats::Instruction {
                    instruction: question,
                    input: String::new(),
                    output: answer,
                })
            })
            .collect();
        self.split_pairs(pairs, eval_examples, train_examples, seed)
    }

    /// Pairs whose references are their responses.
    fn split_pairs(
        self,
        pairs: Vec<PromptPair>,
        eval_examples: usize,
        train_examples: usize,
        seed: u64,
    ) -> Result<TaskData> {
        let references = pairs.iter().map(|p| p.response.clone()).collect();
        self.split_scored(pairs, references, eval_examples, train_examples, seed)
    }

    /// Pairs with the reference each held-out answer is scored against.
    fn split_scored(
        self,
        pairs: Vec<PromptPair>,
        references: Vec<String>,
        eval_examples: usize,
        train_examples: usize,
        seed: u64,
    ) -> Result<TaskData> {
        if pairs.is_empty() {
            return Err(TaskError::Config("the dataset holds no examples".into()));
        }
        let items: Vec<(PromptPair, String)> = pairs.into_iter().zip(references).collect();
        let fraction = (eval_examples.max(1) as f64 / items.len() as f64).min(0.5);
        let (train, eval) = train_test_split(&items, fraction, seed);
        // References as the model's decoded text would read them (template markers dropped),
        // computed once rather than at every evaluation.
        let eval = cap(eval, eval_examples)
            .into_iter()
            .map(|(pair, reference)| {
                let plain = self.encoder.decode(&self.encoder.ids(&reference)?)?;
                Ok((pair, plain))
            })
            .collect::<Result<Vec<_>>>()?;
        let stop = stop_ids(self.encoder.tokenizer());
        Ok(TaskData::Generation {
            encoder: self.encoder,
            train: cap(train.into_iter().map(|(p, _)| p).collect(), train_examples),
            eval,
            stop,
            metric: self.metric,
        })
    }
}

/// Scores generated texts against references.
fn score_texts(metric: TextMetric, pairs: Vec<(String, String)>) -> TaskScores {
    let n = pairs.len().max(1) as f64;
    let mut scores = match metric {
        TextMetric::Rouge | TextMetric::Rouge2Recall => {
            let all: Vec<_> = pairs.iter().map(|(r, p)| rouge(r, p)).collect();
            let mean = |f: &dyn Fn(&RougeScores) -> f64| all.iter().map(f).sum::<f64>() / n;
            let rouge_l = mean(&|s| s.rouge_l.fmeasure);
            let rouge2 = mean(&|s| s.rouge2.recall);
            let (metric, value) = match metric {
                TextMetric::Rouge => ("rouge_l_f1", rouge_l),
                _ => ("rouge2_recall", rouge2),
            };
            TaskScores {
                metric,
                value,
                all: vec![
                    ("rouge_l_f1", rouge_l),
                    ("rouge1_f1", mean(&|s| s.rouge1.fmeasure)),
                    ("rouge2_recall", rouge2),
                ],
                examples: pairs.len(),
                samples: Vec::new(),
            }
        }
        TextMetric::FinalAnswer => {
            let (references, generated): (Vec<&String>, Vec<&String>) =
                pairs.iter().map(|(r, p)| (r, p)).unzip();
            let accuracy = final_answer_accuracy(&generated, &references)
                .expect("one reference per generated answer");
            TaskScores {
                metric: "final_answer_accuracy",
                value: accuracy,
                all: vec![("final_answer_accuracy", accuracy)],
                examples: pairs.len(),
                samples: Vec::new(),
            }
        }
        TextMetric::NextWord => {
            let word = |t: &str| {
                t.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase()
            };
            let right = pairs
                .iter()
                .filter(|(r, p)| !word(r).is_empty() && word(r) == word(p))
                .count();
            let accuracy = right as f64 / n;
            TaskScores {
                metric: "next_word_accuracy",
                value: accuracy,
                all: vec![("next_word_accuracy", accuracy)],
                examples: pairs.len(),
                samples: Vec::new(),
            }
        }
    };
    scores.samples = pairs.into_iter().take(3).collect();
    scores
}

/// Pearson and Spearman correlation of a one-output head's predictions with the scores.
fn evaluate_regression(
    model: &mut dyn Predictor,
    encoder: &Encoder,
    eval: &[Example],
) -> Result<TaskScores> {
    let device = model.device();
    let mut predicted = Vec::with_capacity(eval.len());
    for chunk in eval.chunks(64) {
        let logits = model
            .predict(&encoder.tokens(chunk, &device)?)?
            .class_logits()
            .ok_or_else(|| TaskError::Mismatch("the model's head does not score".into()))?;
        predicted.extend(
            logits
                .into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| TaskError::Config(format!("reading predictions: {e:?}")))?,
        );
    }
    let truth: Vec<f32> = eval
        .iter()
        .map(|e| match e.target {
            Target::Score(s) => s,
            Target::Class(c) => c as f32,
        })
        .collect();
    let (p, t): (Vec<f64>, Vec<f64>) = predicted
        .iter()
        .zip(&truth)
        .map(|(&p, &t)| (p as f64, t as f64))
        .unzip();
    let pearson = labels::pearson(&p, &t);
    let spearman = labels::spearman(&p, &t);
    Ok(TaskScores {
        metric: "pearson",
        value: pearson,
        all: vec![("pearson", pearson), ("spearman", spearman)],
        examples: eval.len(),
        samples: Vec::new(),
    })
}
