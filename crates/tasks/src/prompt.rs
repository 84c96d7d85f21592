//! Prompt templates for instruction tuning, as pure string functions: the Stanford Alpaca
//! template (the wording of `PROMPT_DICT` in tatsu-lab/stanford_alpaca, which the reference
//! uses for Alpaca, CodeAlpaca, GSM8K and MATH) and ChatML (`<|im_start|>role\n…<|im_end|>`).
//! Each instruction gives a [`PromptPair`]: the prompt the model reads and the response it is
//! trained to write after it. [`Template::of`] picks the template a tokenizer was trained
//! with, and [`stop_ids`] the tokens that end a generated answer: the one place these facts
//! live.

use tokenizers::Tokenizer;

use crate::formats::Instruction;

/// Texts that end a turn or a text in the tokenizers we know (ChatML's end of turn, GPT-2's
/// and Llama's end of text), in the order an end-of-sequence marker is chosen.
pub const END_MARKERS: [&str; 3] = ["<|im_end|>", "<|endoftext|>", "</s>"];

/// How instructions are written for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// ChatML turns, for tokenizers with `<|im_start|>` and `<|im_end|>` tokens.
    ChatMl,
    /// The Stanford Alpaca template, for every other tokenizer.
    Alpaca,
}

impl Template {
    /// ChatML when `tokenizer` has both ChatML tokens, else Alpaca.
    pub fn of(tokenizer: &Tokenizer) -> Self {
        let has = |t: &str| tokenizer.token_to_id(t).is_some();
        if has("<|im_start|>") && has("<|im_end|>") {
            Template::ChatMl
        } else {
            Template::Alpaca
        }
    }

    /// `example` as a prompt and response in this template; `tokenizer` gives Alpaca's
    /// end-of-sequence text.
    pub fn pair(self, example: &Instruction, tokenizer: &Tokenizer) -> PromptPair {
        match self {
            Template::ChatMl => chatml_pair(None, example),
            Template::Alpaca => alpaca_pair(example, eos_marker(tokenizer).unwrap_or("")),
        }
    }
}

/// The first of [`END_MARKERS`] that `tokenizer` knows.
pub fn eos_marker(tokenizer: &Tokenizer) -> Option<&'static str> {
    END_MARKERS
        .into_iter()
        .find(|t| tokenizer.token_to_id(t).is_some())
}

/// The ids of every [`END_MARKERS`] text that `tokenizer` knows: generation stops at any.
pub fn stop_ids(tokenizer: &Tokenizer) -> Vec<u32> {
    END_MARKERS
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect()
}

/// The Alpaca preamble when the instruction comes with an input.
const ALPACA_WITH_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n";
/// The Alpaca preamble when it does not.
const ALPACA_NO_INPUT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n";

/// What the model reads, and what it should answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPair {
    /// The prompt, up to where the response starts.
    pub prompt: String,
    /// The response to train on (loss usually only on these tokens).
    pub response: String,
}

impl PromptPair {
    /// Prompt and response as one training text.
    pub fn text(&self) -> String {
        format!("{}{}", self.prompt, self.response)
    }
}

/// The Stanford Alpaca prompt: `prompt_input` when `input` is not empty, `prompt_no_input`
/// otherwise (the test is the template's own: `input != ""`, so an input of spaces counts).
/// It ends with `### Response:` and no newline, as the original does.
pub fn alpaca_prompt(instruction: &str, input: &str) -> String {
    if input.is_empty() {
        format!("{ALPACA_NO_INPUT}### Instruction:\n{instruction}\n\n### Response:")
    } else {
        format!(
            "{ALPACA_WITH_INPUT}### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
        )
    }
}

/// An instruction in the Alpaca template; the response is the output followed by `eos` (the
/// tokenizer's end-of-sequence text, as Alpaca's training appends it; `""` for none).
pub fn alpaca_pair(example: &Instruction, eos: &str) -> PromptPair {
    PromptPair {
        prompt: alpaca_prompt(&example.instruction, &example.input),
        response: format!("{}{eos}", example.output),
    }
}

/// A ChatML prompt ending where the assistant's turn starts:
/// `<|im_start|>system\n{system}<|im_end|>\n` (only when `system` is given), then
/// `<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n`.
pub fn chatml_prompt(system: Option<&str>, user: &str) -> String {
    let mut prompt = String::new();
    if let Some(system) = system {
        prompt.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
    }
    prompt.push_str(&format!(
        "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    ));
    prompt
}

/// The user's message for an instruction: the instruction, then a blank line and the input
/// when there is one.
pub fn chatml_user_message(example: &Instruction) -> String {
    if example.input.is_empty() {
        example.instruction.clone()
    } else {
        format!("{}\n\n{}", example.instruction, example.input)
    }
}

/// An instruction as a ChatML turn; the response is the output closed by `<|im_end|>`.
pub fn chatml_pair(system: Option<&str>, example: &Instruction) -> PromptPair {
    PromptPair {
        prompt: chatml_prompt(system, &chatml_user_message(example)),
        response: format!("{}<|im_end|>", example.output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(input: &str) -> Instruction {
        Instruction {
            instruction: "Translate to French.".into(),
            input: input.into(),
            output: "Bonjour.".into(),
        }
    }

    #[test]
    fn alpaca_matches_the_original_wording() {
        let with_input = alpaca_pair(&example("Hello."), "</s>");
        assert_eq!(
            with_input.prompt,
            "Below is an instruction that describes a task, paired with an input that provides \
             further context. Write a response that appropriately completes the request.\n\n\
             ### Instruction:\nTranslate to French.\n\n### Input:\nHello.\n\n### Response:"
        );
        assert_eq!(with_input.response, "Bonjour.</s>");
        let no_input = alpaca_pair(&example(""), "");
        assert_eq!(
            no_input.prompt,
            "Below is an instruction that describes a task. Write a response that appropriately \
             completes the request.\n\n### Instruction:\nTranslate to French.\n\n### Response:"
        );
        assert_eq!(no_input.response, "Bonjour.");
        assert_eq!(no_input.text(), format!("{}Bonjour.", no_input.prompt));
        // Braces in the data are data, not placeholders.
        assert!(alpaca_prompt("{input}", "").contains("### Instruction:\n{input}\n\n"));
    }

    #[test]
    fn chatml_turns() {
        let pair = chatml_pair(Some("You are helpful."), &example("Hello."));
        assert_eq!(
            pair.prompt,
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nTranslate to \
             French.\n\nHello.<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(pair.response, "Bonjour.<|im_end|>");
        let bare = chatml_pair(None, &example(""));
        assert_eq!(
            bare.prompt,
            "<|im_start|>user\nTranslate to French.<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(bare.text().ends_with("assistant\nBonjour.<|im_end|>"));
    }
}
