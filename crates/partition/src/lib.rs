//! How a model is cut between the data party and the model party.
//!
//! - **Head–Tail** (`n_head`): the data party holds the embeddings and blocks `[0, n_head)`;
//!   the model party holds blocks `[n_head, L)`, the final norm and the task head.
//! - **Head–Body–Tail** (`n_head`, `n_tail`): the data party holds the head `[0, n_head)` and
//!   the tail `[L − n_tail, L)` with the final norm and the task head (`n_tail = 0` leaves it
//!   only those); the model party holds the body between them. Labels and the loss never leave
//!   the data party.
//!
//! A partition only names layer ranges: each party loads its own [`SliceSpec`]s, and so only
//! the tensors of its own blocks.

use std::fmt;

pub mod paths;
pub mod trainability;

pub use paths::{
    NamedParameter, SavedParameter, global_path, named_parameters, restore_parameters,
};
pub use trainability::{
    BlockSet, LoraSettings, Strategy, Trainability, TrainabilityError, merge_lora,
};

use splitlm_nn::{LayerRange, SliceSpec};

/// A cut of an `L`-block model between the parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Partition {
    /// The data party holds the bottom, the model party the rest and the task head.
    HeadTail {
        /// Blocks held by the data party above the embeddings (0 = embeddings only).
        n_head: usize,
        /// Which party holds the final norm and task head (default: the model party). An LM
        /// head's logits are `vocab / hidden` times larger than the hidden states (85× for
        /// SmolLM2) and cross twice per step; with `data` only hidden states cross.
        #[serde(default)]
        task_head_with: TaskHeadPlacement,
    },
    /// The data party holds bottom and top, the model party the body between them.
    HeadBodyTail {
        /// Blocks of the data party's head (0 = embeddings only).
        n_head: usize,
        /// Blocks of the data party's tail under the final norm and task head (0 allowed).
        n_tail: usize,
    },
}

/// Which party holds the task head in Head–Tail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskHeadPlacement {
    /// The model party (the reference's Head–Tail).
    #[default]
    Model,
    /// The data party: the cut is then Head–Body–Tail with an empty tail.
    Data,
}

/// The slices each party holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartySlices {
    /// The data party's head: embeddings and the first blocks.
    pub data_head: SliceSpec,
    /// The model party's slice: the body (HBT), or the rest with the task head (HT).
    pub model: SliceSpec,
    /// The data party's tail with the final norm and the task head (HBT only).
    pub data_tail: Option<SliceSpec>,
}

/// A partition that does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition {partition} does not fit a model with {num_layers} blocks: {reason}")]
pub struct PartitionError {
    /// The partition asked for.
    pub partition: Partition,
    /// Blocks in the model.
    pub num_layers: usize,
    /// What is wrong.
    pub reason: String,
}

impl Partition {
    /// Head–Tail with the task head at the model party.
    pub fn head_tail(n_head: usize) -> Self {
        Partition::HeadTail {
            n_head,
            task_head_with: TaskHeadPlacement::Model,
        }
    }

    /// Head–Body–Tail.
    pub fn head_body_tail(n_head: usize, n_tail: usize) -> Self {
        Partition::HeadBodyTail { n_head, n_tail }
    }

    /// The slices of an `num_layers`-block model, or why the cut does not fit it.
    pub fn slices(&self, num_layers: usize) -> Result<PartySlices, PartitionError> {
        let fail = |reason: String| PartitionError {
            partition: *self,
            num_layers,
            reason,
        };
        match *self {
            Partition::HeadTail {
                n_head,
                task_head_with: TaskHeadPlacement::Data,
            } => Partition::head_body_tail(n_head, 0)
                .slices(num_layers)
                .map_err(|e| fail(e.reason)),
            Partition::HeadTail { n_head, .. } => {
                if n_head > num_layers {
                    return Err(fail(format!(
                        "n_head = {n_head} exceeds the model's blocks"
                    )));
                }
                Ok(PartySlices {
                    data_head: SliceSpec::bottom(n_head),
                    model: SliceSpec::top_from(n_head, num_layers),
                    data_tail: None,
                })
            }
            Partition::HeadBodyTail { n_head, n_tail } => {
                let outer = n_head.saturating_add(n_tail);
                if outer >= num_layers {
                    return Err(fail(format!(
                        "n_head + n_tail = {outer} leaves the model party no body block"
                    )));
                }
                let tail_start = num_layers - n_tail;
                Ok(PartySlices {
                    data_head: SliceSpec::bottom(n_head),
                    model: SliceSpec::middle(n_head, tail_start),
                    data_tail: Some(SliceSpec {
                        embeddings: false,
                        blocks: LayerRange::new(tail_start, num_layers),
                        top: true,
                    }),
                })
            }
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::HeadTail {
                n_head,
                task_head_with,
            } => match task_head_with {
                TaskHeadPlacement::Model => write!(f, "head-tail (n_head = {n_head})"),
                TaskHeadPlacement::Data => {
                    write!(
                        f,
                        "head-tail (n_head = {n_head}, task head with the data party)"
                    )
                }
            },
            Partition::HeadBodyTail { n_head, n_tail } => {
                write!(f, "head-body-tail (n_head = {n_head}, n_tail = {n_tail})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers_every_block_once(slices: &PartySlices, num_layers: usize) {
        let mut ranges = vec![slices.data_head.blocks, slices.model.blocks];
        ranges.extend(slices.data_tail.as_ref().map(|t| t.blocks));
        let mut next = 0;
        for range in ranges {
            assert_eq!(range.start, next, "ranges are contiguous");
            next = range.end;
        }
        assert_eq!(next, num_layers);
        let tops = [
            Some(&slices.data_head),
            Some(&slices.model),
            slices.data_tail.as_ref(),
        ];
        assert_eq!(
            tops.iter().flatten().filter(|s| s.top).count(),
            1,
            "one task head"
        );
        assert!(slices.data_head.embeddings && !slices.model.embeddings);
    }

    #[test]
    fn head_tail_gives_the_model_party_the_task_head() {
        let slices = Partition::head_tail(2).slices(6).unwrap();
        covers_every_block_once(&slices, 6);
        assert!(slices.model.top && slices.data_tail.is_none());
        assert_eq!(slices.model.blocks, LayerRange::new(2, 6));
        let embeddings_only = Partition::head_tail(0).slices(6).unwrap();
        assert!(embeddings_only.data_head.blocks.is_empty());
    }

    #[test]
    fn head_body_tail_keeps_head_and_tail_with_the_data_party() {
        let slices = Partition::HeadBodyTail {
            n_head: 2,
            n_tail: 2,
        }
        .slices(6)
        .unwrap();
        covers_every_block_once(&slices, 6);
        assert_eq!(slices.model.blocks, LayerRange::new(2, 4));
        assert!(!slices.model.top && slices.data_tail.as_ref().unwrap().top);
        let no_tail_blocks = Partition::HeadBodyTail {
            n_head: 1,
            n_tail: 0,
        }
        .slices(6)
        .unwrap();
        covers_every_block_once(&no_tail_blocks, 6);
        assert!(no_tail_blocks.data_tail.unwrap().blocks.is_empty());
    }

    #[test]
    fn head_tail_can_keep_the_task_head_with_the_data_party() {
        let json = r#"{"kind":"head_tail","n_head":2,"task_head_with":"data"}"#;
        let partition: Partition = serde_json::from_str(json).unwrap();
        let slices = partition.slices(6).unwrap();
        assert_eq!(slices, Partition::head_body_tail(2, 0).slices(6).unwrap());
        assert!(
            partition
                .to_string()
                .contains("task head with the data party")
        );
        let plain: Partition = serde_json::from_str(r#"{"kind":"head_tail","n_head":2}"#).unwrap();
        assert_eq!(plain, Partition::head_tail(2));
        let err = serde_json::from_str::<Partition>(r#"{"kind":"head_tail","n_head":2,"tail":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tail"), "{err}");
        assert!(
            Partition::HeadTail {
                n_head: 6,
                task_head_with: TaskHeadPlacement::Data
            }
            .slices(6)
            .is_err()
        );
    }

    #[test]
    fn cuts_that_do_not_fit_are_explained() {
        let err = Partition::head_tail(7).slices(6).unwrap_err().to_string();
        assert!(
            err.contains("n_head = 7") && err.contains("6 blocks"),
            "{err}"
        );
        let err = Partition::HeadBodyTail {
            n_head: 3,
            n_tail: 3,
        }
        .slices(6)
        .unwrap_err()
        .to_string();
        assert!(err.contains("no body block"), "{err}");
        let huge = Partition::HeadBodyTail {
            n_head: usize::MAX,
            n_tail: 1,
        };
        assert!(huge.slices(6).is_err());
    }

    #[test]
    fn configs_name_the_kind_and_reject_unknown_keys() {
        let p: Partition =
            serde_json::from_str(r#"{"kind":"head_body_tail","n_head":2,"n_tail":0}"#).unwrap();
        assert_eq!(
            p,
            Partition::HeadBodyTail {
                n_head: 2,
                n_tail: 0
            }
        );
        let err = serde_json::from_str::<Partition>(r#"{"kind":"head_tail","n_haed":2}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("n_haed"), "{err}");
    }
}
