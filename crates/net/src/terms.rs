//! The terms of a session: what the data party's `Hello` says both parties must agree on, and
//! the settings it gives the model party.

/// Terms whose names start with this are the data party's settings for the session (such as
/// `setting.total_steps`), handed to the model party rather than compared.
pub const SETTING_PREFIX: &str = "setting.";

/// Compares the data party's `theirs` with the model party's `ours`: every term of `ours` must
/// be in `theirs` with the same value, and `theirs` may hold no other terms than settings.
/// Returns the settings; a refusal names the term and both values.
pub fn agree(
    ours: &[(String, String)],
    theirs: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    for (name, value) in ours {
        match theirs.iter().find(|(n, _)| n == name) {
            None => {
                return Err(format!(
                    "the data party did not state `{name}` (the model party has \"{value}\")"
                ));
            }
            Some((_, v)) if v != value => {
                return Err(format!(
                    "the parties disagree on `{name}`: the data party has \"{v}\", the model \
                     party has \"{value}\""
                ));
            }
            Some(_) => {}
        }
    }
    let mut settings = Vec::new();
    for (name, value) in theirs {
        if name.starts_with(SETTING_PREFIX) {
            settings.push((name.clone(), value.clone()));
        } else if !ours.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "the data party states `{name}` = \"{value}\", which this model party does not \
                 know (is it an older version?)"
            ));
        }
    }
    Ok(settings)
}

/// The value of setting `name` (without [`SETTING_PREFIX`]) among `settings`.
pub fn setting<'a>(settings: &'a [(String, String)], name: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(n, _)| n.strip_prefix(SETTING_PREFIX) == Some(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equal_terms_agree_and_settings_pass_through() {
        let ours = terms(&[("partition", "HT(2)"), ("wire_dtype", "f32")]);
        let theirs = terms(&[
            ("wire_dtype", "f32"),
            ("partition", "HT(2)"),
            ("setting.total_steps", "40"),
        ]);
        let settings = agree(&ours, &theirs).unwrap();
        assert_eq!(setting(&settings, "total_steps"), Some("40"));
    }

    #[test]
    fn a_refusal_names_the_term_and_both_values() {
        let ours = terms(&[("partition", "HBT(2,2)")]);
        let err = agree(&ours, &terms(&[("partition", "HT(2)")])).unwrap_err();
        assert!(
            err.contains("`partition`") && err.contains("HT(2)") && err.contains("HBT(2,2)"),
            "{err}"
        );
        let err = agree(&ours, &[]).unwrap_err();
        assert!(err.contains("did not state `partition`"), "{err}");
        let err = agree(&[], &terms(&[("digest", "x")])).unwrap_err();
        assert!(err.contains("`digest`"), "{err}");
    }
}
