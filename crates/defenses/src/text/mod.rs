//! Text-level defenses: they replace input tokens before the head embeds them
//! ([`crate::Defense::on_input`]), by the reference's mechanisms. Each turns a row's tokens
//! back into text, sanitizes it and tokenizes the result again to the batch's length, as the
//! reference does (party/passive_party.py l.849–958); special tokens and padding never enter
//! the text, and the task's special tokens are added again by the tokenizer.

mod custext;
mod geometry;
mod python;
mod rantext;
mod rewrite;
mod santext;

#[cfg(test)]
mod fixture_tests;

pub use custext::CusTextSettings;
pub use rantext::RanTextSettings;
pub use santext::SanTextSettings;

use crate::TextCodec;

/// How sanitized token strings become text again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenJoin {
    /// The token strings joined by spaces (the reference: santext_utils.py `SanText_plus`,
    /// passive_party.py l.948 for RanText), so word pieces stay apart.
    #[default]
    Spaces,
    /// The tokenizer's own decoding of the tokens (splitlm's option): word pieces rejoin.
    Detokenize,
}

/// `tokens` as text, joined the `join` way.
pub(crate) fn join_tokens(codec: &dyn TextCodec, tokens: &[String], join: TokenJoin) -> String {
    match join {
        TokenJoin::Spaces => tokens.join(" "),
        TokenJoin::Detokenize => {
            let ids: Vec<u32> = tokens.iter().filter_map(|t| codec.token_to_id(t)).collect();
            codec.decode(&ids, false)
        }
    }
}
