//! What a defense may know of the data party when it is built: its model's shape and input
//! embeddings, its tokenizer, its training inputs, and runners of the pretrained slices.
//!
//! Text-level defenses (SanText+, CusText, RanText) rewrite the input text, so they need the
//! tokenizer ([`TextCodec`]) and the input embeddings; learned defenses that prepare before the
//! run (TextObfuscator's clusters, SnD's denoiser) need to run the pretrained head, and SnD
//! the pretrained body (see docs/ARCHITECTURE.md, "Defense environment"). A [`DefenseEnv`]
//! carries only what the configured defenses ask for ([`Needs`]): a run without them loads
//! nothing more.

use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::{Hidden, TokenBatch};

/// The data party's tokenizer, as text-level defenses use it.
pub trait TextCodec: Send + Sync {
    /// The text of `ids`, special tokens left out when `skip_special_tokens`.
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String;
    /// The token strings of `text` (the tokenizer's pieces, no special tokens).
    fn tokenize(&self, text: &str) -> Vec<String>;
    /// The ids of `text` as the task encodes it (with its special tokens).
    fn encode(&self, text: &str) -> Vec<u32>;
    /// A token string's id.
    fn token_to_id(&self, token: &str) -> Option<u32>;
    /// An id's token string.
    fn id_to_token(&self, id: u32) -> Option<String>;
    /// The vocabulary's size (ids are `0..vocab_size`).
    fn vocab_size(&self) -> usize;
    /// Ids of the special tokens (never replaced).
    fn special_ids(&self) -> Vec<u32>;
    /// The padding id.
    fn pad_id(&self) -> u32;
    /// Where the task pads.
    fn padding_side(&self) -> PaddingSide;
}

/// Runs the pretrained head on a batch, outside any training step.
pub type HeadRunner = Arc<dyn Fn(&TokenBatch) -> Result<Hidden, String> + Send + Sync>;

/// Runs the pretrained body (the model party's slice in Head–Body–Tail, everything after the
/// head in Head–Tail up to the final norm) on the head's output, outside any training step.
pub type BodyRunner = Arc<dyn Fn(Hidden) -> Result<Hidden, String> + Send + Sync>;

/// What the data party offers its defenses.
#[derive(Clone)]
pub struct DefenseEnv {
    /// The data party's (autodiff) device.
    pub device: Device,
    /// The model family's name (`bert`, `gpt2`, `llama`): per-model constants of the
    /// reference are keyed by it.
    pub family: String,
    /// The model's hidden size.
    pub hidden_size: usize,
    /// The model's vocabulary size.
    pub vocab_size: usize,
    /// Whether the data party holds a tail (Head–Body–Tail).
    pub has_tail: bool,
    /// The task's number of classes (classification), for label adversaries.
    pub num_classes: Option<usize>,
    /// The head's pretrained input embeddings `[vocab, hidden]`, detached.
    pub token_embeddings: Option<Tensor<2>>,
    /// The tokenizer.
    pub text: Option<Arc<dyn TextCodec>>,
    /// The training inputs, one id sequence per example, unpadded.
    pub training_inputs: Arc<Vec<Vec<u32>>>,
    /// The pretrained head.
    pub head: Option<HeadRunner>,
    /// The pretrained body.
    pub body: Option<BodyRunner>,
}

impl DefenseEnv {
    /// An environment with the model's shape only, on `device`.
    pub fn bare(device: Device, hidden_size: usize, vocab_size: usize) -> Self {
        Self {
            device,
            family: String::new(),
            hidden_size,
            vocab_size,
            has_tail: false,
            num_classes: None,
            token_embeddings: None,
            text: None,
            training_inputs: Arc::new(Vec::new()),
            head: None,
            body: None,
        }
    }

    /// The tokenizer, or an error naming `defense`.
    pub fn text(&self, defense: &'static str) -> Result<&Arc<dyn TextCodec>, crate::DefenseError> {
        self.text
            .as_ref()
            .ok_or_else(|| missing(defense, "the tokenizer"))
    }

    /// The input embeddings, or an error naming `defense`.
    pub fn token_embeddings(
        &self,
        defense: &'static str,
    ) -> Result<&Tensor<2>, crate::DefenseError> {
        self.token_embeddings
            .as_ref()
            .ok_or_else(|| missing(defense, "the head's input embeddings"))
    }

    /// The pretrained head, or an error naming `defense`.
    pub fn head(&self, defense: &'static str) -> Result<&HeadRunner, crate::DefenseError> {
        self.head
            .as_ref()
            .ok_or_else(|| missing(defense, "the pretrained head"))
    }

    /// The pretrained body, or an error naming `defense`.
    pub fn body(&self, defense: &'static str) -> Result<&BodyRunner, crate::DefenseError> {
        self.body
            .as_ref()
            .ok_or_else(|| missing(defense, "the pretrained body"))
    }

    /// The training inputs, or an error naming `defense` when there are none.
    pub fn training_inputs(
        &self,
        defense: &'static str,
    ) -> Result<&[Vec<u32>], crate::DefenseError> {
        if self.training_inputs.is_empty() {
            return Err(missing(defense, "the training inputs"));
        }
        Ok(&self.training_inputs)
    }
}

fn missing(defense: &'static str, what: &str) -> crate::DefenseError {
    crate::DefenseError {
        defense,
        reason: format!("needs {what}, which the data party did not provide"),
    }
}

/// What a set of defenses needs from the data party beyond the model's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The tokenizer and input embeddings.
    pub text: bool,
    /// The input embeddings alone.
    pub embeddings: bool,
    /// The training inputs.
    pub training_inputs: bool,
    /// The pretrained head.
    pub head: bool,
    /// The pretrained body.
    pub body: bool,
}

impl Needs {
    /// Both sets of needs.
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            text: self.text || other.text,
            embeddings: self.embeddings || other.embeddings,
            training_inputs: self.training_inputs || other.training_inputs,
            head: self.head || other.head,
            body: self.body || other.body,
        }
    }

    /// Whether nothing beyond the model's shape is needed.
    pub fn is_empty(self) -> bool {
        self == Needs::default()
    }
}
