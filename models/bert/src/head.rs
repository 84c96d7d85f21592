use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::tanh;
use burn::tensor::{Int, Tensor};
use splitlm_nn::head::mean_pool;
use splitlm_nn::{HeadOutput, ModelError, TaskHead, Weights};

use crate::BertConfig;
use crate::config::SentencePooling;

/// The top of an encoder: pooler and one task head.
#[derive(Module, Debug)]
pub struct BertHead {
    /// BERT's pooler (`pooler.dense`, tanh on the first token), when the checkpoint has one.
    pooler: Option<Linear>,
    /// RoBERTa's classifier hidden layer (`classifier.dense`).
    classifier_dense: Option<Linear>,
    /// Sequence classifier (`classifier` or RoBERTa's `classifier.out_proj`).
    classifier: Option<Linear>,
    /// Span QA head (`qa_outputs`, 2 outputs).
    qa_outputs: Option<Linear>,
    #[module(skip)]
    task: TaskHead,
    /// The classifier reads mean-pooled states (sentence-transformers checkpoints).
    #[module(skip)]
    mean_pooled: bool,
}

impl BertHead {
    /// Loads the head for `task`; head layers absent from the checkpoint are initialised.
    pub(crate) fn load(
        root: &Weights,
        encoder: &Weights,
        config: &BertConfig,
        task: TaskHead,
    ) -> Result<Self, ModelError> {
        let d = config.hidden_size;
        let mut head = Self {
            pooler: None,
            classifier_dense: None,
            classifier: None,
            qa_outputs: None,
            task,
            mean_pooled: false,
        };
        let has_pooler = encoder.contains("pooler.dense.weight");
        match task {
            TaskHead::CausalLm => {
                return Err(ModelError::Slice(
                    "BERT-style encoders have no causal LM head".into(),
                ));
            }
            TaskHead::Hidden if has_pooler => {
                head.pooler = Some(encoder.linear("pooler.dense", d, d, true)?);
            }
            TaskHead::Hidden => {}
            TaskHead::SequenceClassification { num_labels } if config.roberta_style() => {
                head.classifier_dense = Some(root.linear_or_new("classifier.dense", d, d, true)?);
                head.classifier =
                    Some(root.linear_or_new("classifier.out_proj", d, num_labels, true)?);
            }
            TaskHead::SequenceClassification { num_labels }
                if config.sentence_pooling == Some(SentencePooling::Mean) =>
            {
                head.mean_pooled = true;
                head.classifier = Some(root.linear_or_new("classifier", d, num_labels, true)?);
            }
            TaskHead::SequenceClassification { num_labels } => {
                head.pooler = Some(encoder.linear_or_new("pooler.dense", d, d, true)?);
                head.classifier = Some(root.linear_or_new("classifier", d, num_labels, true)?);
            }
            TaskHead::SpanQa => {
                head.qa_outputs = Some(root.linear_or_new("qa_outputs", d, 2, true)?);
            }
        }
        Ok(head)
    }

    /// The task this head computes.
    pub fn task(&self) -> TaskHead {
        self.task
    }

    /// BERT's pooled output: tanh(dense(first token)), if the head has a pooler.
    pub fn pool(&self, states: &Tensor<3>) -> Option<Tensor<2>> {
        self.pooler
            .as_ref()
            .map(|pooler| tanh(pooler.forward(first_token(states))))
    }

    pub(crate) fn forward(&self, states: Tensor<3>, attention_mask: &Tensor<2, Int>) -> HeadOutput {
        match self.task {
            TaskHead::SequenceClassification { .. } => {
                let classifier = self.classifier.as_ref().expect("loaded with the task");
                let features = match &self.classifier_dense {
                    Some(dense) => tanh(dense.forward(first_token(&states))),
                    None if self.mean_pooled => mean_pool(states, attention_mask),
                    None => self.pool(&states).expect("loaded with the task"),
                };
                HeadOutput::ClassLogits(classifier.forward(features))
            }
            TaskHead::SpanQa => {
                let logits = self.qa_outputs.as_ref().expect("loaded").forward(states);
                let [b, s, _] = logits.dims();
                let start = logits.clone().narrow(2, 0, 1).reshape([b, s]);
                let end = logits.narrow(2, 1, 1).reshape([b, s]);
                HeadOutput::SpanLogits { start, end }
            }
            TaskHead::Hidden | TaskHead::CausalLm => HeadOutput::Hidden(states),
        }
    }
}

fn first_token(states: &Tensor<3>) -> Tensor<2> {
    let [b, _, d] = states.dims();
    states.clone().narrow(1, 0, 1).reshape([b, d])
}
