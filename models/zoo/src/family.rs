//! Family facts asked by name, and how [`Family`] prints and parses.

use std::fmt;

use crate::Family;

impl Family {
    /// The family that loads checkpoints of Hugging Face `model_type`, if one is registered.
    pub fn from_model_type(model_type: &str) -> Option<Family> {
        Family::ALL
            .iter()
            .copied()
            .find(|f| f.model_types().contains(&model_type))
    }

    /// The family called `name` (see [`Family::name`]).
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// The family whose [`Family::module_name`] is `name`.
    pub fn from_module_name(name: &str) -> Option<Family> {
        Family::ALL
            .iter()
            .copied()
            .find(|f| f.module_name() == name)
    }

    /// Every `model_type` any registered family loads, for error messages.
    pub fn all_model_types() -> Vec<&'static str> {
        Family::ALL
            .iter()
            .flat_map(|f| f.model_types().iter().copied())
            .collect()
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Family {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Family {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Family::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
            serde::de::Error::custom(format!(
                "unknown model family \"{name}\" (known: {})",
                known.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every registered family reports its facts, and they are the reference's.
    #[test]
    fn each_registered_family_reports_its_facts() {
        let facts: Vec<_> = Family::ALL
            .iter()
            .map(|&f| {
                (
                    f,
                    f.name(),
                    f.module_name(),
                    f.model_types(),
                    f.default_lora_targets(),
                )
            })
            .collect();
        assert_eq!(
            facts,
            [
                (
                    Family::Bert,
                    "bert",
                    "Bert",
                    &["bert", "roberta", "xlm-roberta", "camembert"][..],
                    &["query", "value"][..],
                ),
                (Family::Gpt2, "gpt2", "Gpt2", &["gpt2"][..], &["c_attn"][..]),
                (
                    Family::Llama,
                    "llama",
                    "Llama",
                    &["llama", "mistral", "qwen2"][..],
                    &["q_proj", "v_proj"][..],
                ),
            ]
        );
        for &family in Family::ALL {
            assert!(!family.name().is_empty() && !family.model_types().is_empty());
            assert!(!family.default_lora_targets().is_empty(), "{family}");
            assert_eq!(Family::from_name(family.name()), Some(family));
            assert_eq!(Family::from_module_name(family.module_name()), Some(family));
            for model_type in family.model_types() {
                assert_eq!(Family::from_model_type(model_type), Some(family));
            }
            let json = serde_json::to_string(&family).unwrap();
            assert_eq!(json, format!("\"{}\"", family.name()));
            assert_eq!(serde_json::from_str::<Family>(&json).unwrap(), family);
            assert_eq!(family.to_string(), family.name());
        }
        assert_eq!(Family::from_model_type("t5"), None);
        assert!(serde_json::from_str::<Family>("\"t5\"").is_err());
    }
}
