//! Text-level defenses: they replace input tokens before the head embeds them
//! ([`crate::Defense::on_input`]), by the reference's mechanisms.

mod custext;
mod rantext;
mod santext;

pub use custext::CusTextSettings;
pub use rantext::RanTextSettings;
pub use santext::SanTextSettings;
