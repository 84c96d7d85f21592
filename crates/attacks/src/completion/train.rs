//! Training the surrogate head and tail through the frozen body.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use splitlm_nn::{HeadOutput, Labels, TokenBatch, TransformerSlice, loss};
use splitlm_party::{OptimizerConfig, OptimizerKind, PartySlice};
use splitlm_zoo::AnyModel;

use super::{CompletionSettings, Pieces, fail};
use crate::AttackError;

/// The surrogates after training, with the body, ready to predict.
pub(super) struct Completed {
    /// The surrogate head.
    pub head: AnyModel,
    /// The model party's body, frozen.
    pub body: AnyModel,
    /// The surrogate tail.
    pub tail: AnyModel,
    /// The device they live on (the plain backend).
    pub device: Device,
}

impl Completed {
    /// Surrogate head, body, surrogate tail on `batch`.
    pub fn forward(&self, batch: &TokenBatch) -> Result<HeadOutput, AttackError> {
        run(&self.head, &self.body, &self.tail, batch)
    }
}

fn run(
    head: &AnyModel,
    body: &AnyModel,
    tail: &AnyModel,
    batch: &TokenBatch,
) -> Result<HeadOutput, AttackError> {
    let failed = |part: &str, e: splitlm_nn::ModelError| fail(format!("the {part}: {e}"));
    let hidden = head
        .forward_blocks(
            head.embed(batch).map_err(|e| failed("surrogate head", e))?,
            None,
        )
        .map_err(|e| failed("surrogate head", e))?;
    let hidden = body
        .forward_blocks(hidden, None)
        .map_err(|e| failed("body", e))?;
    let hidden = tail
        .forward_blocks(hidden, None)
        .map_err(|e| failed("surrogate tail", e))?;
    tail.forward_top(hidden)
        .map_err(|e| failed("surrogate tail", e))
}

/// The first `max` examples of `batches` (all of them with `None`), the last batch cut short.
pub(super) fn first_examples(
    batches: &[(TokenBatch, Labels)],
    max: Option<usize>,
) -> Result<Vec<(TokenBatch, Labels)>, AttackError> {
    let mut left = max.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for (batch, labels) in batches {
        if left == 0 {
            break;
        }
        let rows = batch.dims()[0];
        if label_rows(labels) != rows {
            return Err(fail(format!(
                "an auxiliary batch has {rows} examples and {} labels",
                label_rows(labels)
            )));
        }
        if rows <= left {
            out.push((batch.clone(), labels.clone()));
            left -= rows;
        } else {
            out.push((first_rows(batch, left), first_label_rows(labels, left)));
            left = 0;
        }
    }
    Ok(out)
}

fn label_rows(labels: &Labels) -> usize {
    match labels {
        Labels::Classes(c) => c.dims()[0],
        Labels::Scores(s) => s.dims()[0],
        Labels::Tokens { targets, .. } => targets.dims()[0],
        Labels::Spans { start, .. } => start.dims()[0],
    }
}

fn first_rows(batch: &TokenBatch, n: usize) -> TokenBatch {
    TokenBatch {
        input_ids: batch.input_ids.clone().narrow(0, 0, n),
        attention_mask: batch.attention_mask.clone().narrow(0, 0, n),
        token_type_ids: batch.token_type_ids.clone().map(|t| t.narrow(0, 0, n)),
    }
}

fn first_label_rows(labels: &Labels, n: usize) -> Labels {
    match labels {
        Labels::Classes(c) => Labels::Classes(c.clone().narrow(0, 0, n)),
        Labels::Scores(s) => Labels::Scores(s.clone().narrow(0, 0, n)),
        Labels::Tokens { targets, weights } => Labels::Tokens {
            targets: targets.clone().narrow(0, 0, n),
            weights: weights.clone().narrow(0, 0, n),
        },
        Labels::Spans { start, end } => Labels::Spans {
            start: start.clone().narrow(0, 0, n),
            end: end.clone().narrow(0, 0, n),
        },
    }
}

fn labels_on(labels: &Labels, device: &Device) -> Labels {
    match labels {
        Labels::Classes(c) => Labels::Classes(c.clone().to_device(device)),
        Labels::Scores(s) => Labels::Scores(s.clone().to_device(device)),
        Labels::Tokens { targets, weights } => Labels::Tokens {
            targets: targets.clone().to_device(device),
            weights: weights.clone().to_device(device),
        },
        Labels::Spans { start, end } => Labels::Spans {
            start: start.clone().to_device(device),
            end: end.clone().to_device(device),
        },
    }
}

/// `torch.optim.Adam(lr)`: PyTorch's defaults otherwise, no weight decay.
fn adam(lr: f64) -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::Adam,
        lr,
        weight_decay: 0.0,
        ..OptimizerConfig::default()
    }
}

/// A copy of `model` on the autodiff `device` with every parameter trainable (`full`) or none.
fn prepared(
    model: &AnyModel,
    full: bool,
    lr: f64,
    device: &Device,
) -> Result<AnyModel, AttackError> {
    let model = model.clone().fork(device);
    let slice = if full {
        // The reference trains every parameter (`use_lora` defaults to false, l.50).
        PartySlice::new(model, &Default::default(), &adam(lr), 1, 0)
    } else {
        PartySlice::frozen(model)
    };
    Ok(slice.map_err(|e| fail(e.to_string()))?.into_model())
}

/// Trains the surrogates on `auxiliary` through the frozen body (on the autodiff `device`),
/// and returns them on the plain backend.
pub(super) fn train(
    pieces: &Pieces<'_>,
    auxiliary: &[(TokenBatch, Labels)],
    settings: &CompletionSettings,
    device: &Device,
) -> Result<Completed, AttackError> {
    let mut head = prepared(pieces.head, true, settings.lr, device)?;
    let mut tail = prepared(pieces.tail, true, settings.lr, device)?;
    let body = prepared(pieces.body, false, settings.lr, device)?;
    let auxiliary: Vec<(TokenBatch, Labels)> = auxiliary
        .iter()
        .map(|(b, l)| (b.to_device(device), labels_on(l, device)))
        .collect();
    let mut head_optimizer: ModuleOptimizer = adam(settings.lr).build();
    let mut tail_optimizer: ModuleOptimizer = adam(settings.lr).build();
    let mut best = f64::INFINITY;
    let mut worse_in_a_row = 0;
    for epoch in 0..settings.epochs {
        let mut epoch_loss = 0.0;
        for (index, (batch, labels)) in auxiliary.iter().enumerate() {
            let output = run(&head, &body, &tail, batch)?;
            let loss =
                loss(&output, labels).map_err(|e| fail(format!("auxiliary batch {index}: {e}")))?;
            let value: f32 = loss.clone().into_scalar();
            let value = f64::from(value);
            if !value.is_finite() {
                return Err(fail(format!(
                    "epoch {epoch}, auxiliary batch {index}: the loss is {value} (lower lr)"
                )));
            }
            epoch_loss += value;
            let mut grads = loss.backward();
            let head_grads = GradientsParams::from_module(&mut grads, &head);
            let tail_grads = GradientsParams::from_module(&mut grads, &tail);
            head = head_optimizer.step(settings.lr, head, head_grads);
            tail = tail_optimizer.step(settings.lr, tail, tail_grads);
        }
        // As the reference (l.270-276): an epoch above the best counts, one at or below resets.
        if epoch_loss > best {
            worse_in_a_row += 1;
            if settings.patience > 0 && worse_in_a_row >= settings.patience {
                break;
            }
        } else {
            worse_in_a_row = 0;
        }
        best = best.min(epoch_loss);
    }
    Ok(Completed {
        head: head.valid(),
        body: body.valid(),
        tail: tail.valid(),
        device: device.clone().inner(),
    })
}
