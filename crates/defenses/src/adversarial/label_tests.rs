//! The tail's label adversary: it learns the labels from the gradient sent back, changes
//! nothing that crosses or trains, and skips with a reason what it cannot predict.

use burn::tensor::{Int, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;
use splitlm_nn::{HeadOutput, Labels, loss};

use super::label::{LabelAdversary, LabelAdversaryStep};
use super::tests::{ctx, device, values};
use super::*;

const B: usize = 8;
const S: usize = 4;
const D: usize = 8;
const CLASSES: usize = 3;
const VOCAB: usize = 11;

fn tail_settings(adversary_lr: f64) -> AdversarialSettings {
    AdversarialSettings {
        head: false,
        tail: true,
        adversary_lr,
        ..AdversarialSettings::default()
    }
}

fn tail_env(num_classes: Option<usize>) -> DefenseEnv {
    let mut env = DefenseEnv::bare(device(), D, VOCAB);
    env.has_tail = true;
    env.num_classes = num_classes;
    env
}

fn training(step: u64) -> HookContext {
    HookContext {
        step,
        training: true,
    }
}

fn normal<const N: usize>(rng: &mut SplitMix64, dims: [usize; N]) -> Tensor<N> {
    let n = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_data(TensorData::new(values, dims), &device())
}

fn ints<const N: usize>(ids: Vec<i64>, dims: [usize; N]) -> Tensor<N, Int> {
    Tensor::from_data(TensorData::new(ids, dims), &device())
}

fn class_labels(rng: &mut SplitMix64) -> Labels {
    let ids = (0..B)
        .map(|_| (rng.next_u64() % CLASSES as u64) as i64)
        .collect();
    Labels::Classes(ints(ids, [B]))
}

/// Random next tokens; each row's first position is a prompt (weight 0).
fn token_labels(rng: &mut SplitMix64) -> Labels {
    let ids = (0..B * S)
        .map(|_| (rng.next_u64() % VOCAB as u64) as i64)
        .collect();
    let weights = (0..B * S)
        .map(|i| if i % S == 0 { 0.0 } else { 1.0 })
        .collect();
    Labels::Tokens {
        targets: ints(ids, [B, S]),
        weights: Tensor::from_data(TensorData::new(weights, [B, S]), &device()),
    }
}

/// A linear tail on what the mapping makes of the arrival: the mean over positions times
/// `top` for classes, each position times `top` for tokens.
fn tail_output(mapped: Tensor<3>, top: &Tensor<2>, labels: &Labels) -> HeadOutput {
    let [b, s, d] = mapped.dims();
    let out = top.dims()[1];
    match labels {
        Labels::Classes(_) => {
            HeadOutput::ClassLogits(mapped.mean_dim(1).reshape([b, d]).matmul(top.clone()))
        }
        _ => HeadOutput::LmLogits(
            mapped
                .reshape([b * s, d])
                .matmul(top.clone())
                .reshape([b, s, out]),
        ),
    }
}

/// One training step at the data party's tail in `DataParty::train_step`'s order: the
/// arrival through `on_received`, the tail, the task loss plus `tail_loss`, the backward pass,
/// then `on_labels` (when `give_labels`), `on_gradient` and `update_tail`. Returns the
/// gradient of the loss on the arrival and what `on_gradient` made of it (what is sent).
fn tail_step(
    at: &mut AdversarialTraining,
    arrival: Tensor<3>,
    top: &Tensor<2>,
    labels: &Labels,
    give_labels: bool,
    step: u64,
) -> (Vec<f32>, Vec<f32>) {
    let ctx = training(step);
    let received = arrival.require_grad();
    let mapped = at.on_received(received.clone(), &ctx);
    let task = loss(&tail_output(mapped, top, labels), labels).unwrap();
    let objective = task + at.tail_loss(&ctx).expect("a tail term in training");
    let grads = objective.backward();
    let grad = received.grad(&grads).expect("the arrival is a leaf");
    if give_labels {
        at.on_labels(labels, &ctx);
    }
    let sent = at.on_gradient(grad.clone(), &ctx);
    at.update_tail(&grads, &ctx);
    (values(grad), values(sent))
}

/// The label adversary's record of each of `steps` training steps on fresh random arrivals
/// and labels, under a linear tail top of width `top_width` whose logits are confident
/// enough (weights of scale 10) that the task's gradient is not vanishingly small: with
/// weights of scale 1 it is about 1e-3 per element, far below the biases of the class
/// adversary's first layer, and that adversary, at the reference's rates, barely moves.
fn train(
    settings: AdversarialSettings,
    env: &DefenseEnv,
    top_width: usize,
    labels: fn(&mut SplitMix64) -> Labels,
    steps: u64,
) -> Vec<LabelAdversaryStep> {
    let mut at = AdversarialTraining::new(settings, 5, env).unwrap();
    let mut rng = SplitMix64::new(2);
    let top = normal(&mut rng, [D, top_width]) * 10.0;
    (0..steps)
        .map(|step| {
            let labels = labels(&mut rng);
            let arrival = normal(&mut rng, [B, S, D]);
            tail_step(&mut at, arrival, &top, &labels, true, step);
            let last = at.label_adversary_step().expect("a training step");
            *last.as_ref().unwrap_or_else(|e| panic!("step {step}: {e}"))
        })
        .collect()
}

/// Mean loss and accuracy of `fits`.
fn means(fits: &[LabelAdversaryStep]) -> (f32, f32) {
    let n = fits.len() as f32;
    (
        fits.iter().map(|f| f.loss).sum::<f32>() / n,
        fits.iter().map(|f| f.accuracy).sum::<f32>() / n,
    )
}

/// Trains the adversary 200 steps at the reference's lambada_gpt_ad.json rate (1e-3) on
/// labels among `outputs`, `per_step` of them predicted each step, and checks that its loss
/// fell and its accuracy on the last steps' batches (each new to it) is twice chance or better.
fn assert_it_learns(
    what: &str,
    env: DefenseEnv,
    outputs: usize,
    labels: fn(&mut SplitMix64) -> Labels,
    per_step: usize,
) {
    let fits = train(tail_settings(1e-3), &env, outputs, labels, 200);
    assert!(fits.iter().all(|f| f.labels == per_step));
    let chance = 1.0 / outputs as f32;
    let (first_loss, first_accuracy) = means(&fits[..10]);
    let (last_loss, last_accuracy) = means(&fits[fits.len() - 10..]);
    eprintln!(
        "{what} adversary: loss {first_loss:.4} → {last_loss:.4}, accuracy \
         {first_accuracy:.3} → {last_accuracy:.3} (chance {chance:.3})"
    );
    assert!(
        last_loss < first_loss,
        "{what}: {last_loss} vs {first_loss}"
    );
    assert!(
        last_accuracy > 2.0 * chance,
        "{what}: accuracy {last_accuracy}"
    );
}

#[test]
fn the_label_adversary_learns_the_classes_from_the_gradient_sent_back() {
    assert_it_learns("class", tail_env(Some(CLASSES)), CLASSES, class_labels, B);
}

#[test]
fn the_label_adversary_learns_the_next_tokens_from_the_gradient_sent_back() {
    // The prompt positions (weight 0) are not predicted.
    assert_it_learns("token", tail_env(None), VOCAB, token_labels, B * (S - 1));
}

#[test]
fn the_label_adversary_changes_neither_the_gradient_sent_nor_the_tail_mapping() {
    let env = tail_env(Some(CLASSES));
    // A fast adversary, so that any leak would show.
    let mut with = AdversarialTraining::new(tail_settings(0.05), 9, &env).unwrap();
    let mut without = AdversarialTraining::new(tail_settings(0.05), 9, &env).unwrap();
    let mut rng = SplitMix64::new(4);
    let top = normal(&mut rng, [D, CLASSES]);
    let probe = normal(&mut rng, [B, S, D]);
    for step in 0..5 {
        let arrival = normal(&mut rng, [B, S, D]);
        let labels = class_labels(&mut rng);
        let (raw, sent) = tail_step(&mut with, arrival.clone(), &top, &labels, true, step);
        let (raw_alone, sent_alone) = tail_step(&mut without, arrival, &top, &labels, false, step);
        assert!(matches!(with.label_adversary_step(), Some(Ok(_))));
        assert!(matches!(without.label_adversary_step(), Some(Err(_))));
        // The reference sends the task's gradient itself (a leaf the adversary only reads).
        assert_eq!(sent, raw, "step {step}: the gradient is sent as it is");
        assert_eq!(raw, raw_alone, "step {step}: the same gradient");
        assert_eq!(sent, sent_alone, "step {step}: the same gradient sent");
    }
    // The tail mapping learned the same with and without the adversary.
    assert_eq!(
        values(with.on_received(probe.clone(), &ctx(false))),
        values(without.on_received(probe, &ctx(false)))
    );
}

/// PyTorch's `LayerNorm` of `x` with scale `g`, shift `b`.
fn host_layer_norm(x: &[f32], g: &[f32], b: &[f32]) -> Vec<f32> {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
    let sd = (var + 1e-5).sqrt();
    x.iter()
        .zip(g.iter().zip(b))
        .map(|(v, (g, b))| (v - mean) / sd * g + b)
        .collect()
}

/// `W x + b` with PyTorch's `[out, in]` weight.
fn host_linear(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    b.iter()
        .enumerate()
        .map(|(o, bias)| {
            let row = &w[o * x.len()..(o + 1) * x.len()];
            bias + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>()
        })
        .collect()
}

fn host_log_softmax(z: &[f32]) -> Vec<f32> {
    let max = z.iter().cloned().fold(f32::MIN, f32::max);
    let log_sum = z.iter().map(|v| (v - max).exp()).sum::<f32>().ln() + max;
    z.iter().map(|v| v - log_sum).collect()
}

#[test]
fn the_class_adversary_pools_positions_and_reads_its_softmax_as_logits() {
    // ImaginedAdversary_Tail_MLP3 and the reference's nn.CrossEntropyLoss() of its softmax
    // output against the one-hot labels, re-derived on the host.
    let mut at =
        AdversarialTraining::new(tail_settings(1e-3), 3, &tail_env(Some(CLASSES))).unwrap();
    let mut rng = SplitMix64::new(8);
    let labels = class_labels(&mut rng);
    let grad = normal(&mut rng, [B, S, D]);
    let adversary = LabelAdversary::for_labels(
        &labels,
        D,
        at.tail_labels.sizes,
        at.settings.mapping_hidden_size,
        at.settings.adversary_hidden_size,
        &mut rng,
    )
    .unwrap();
    let LabelAdversary::Classes(mlp) = &adversary else {
        panic!("class labels build the class adversary")
    };
    // The reference passes the mapping's hidden width (l.217–218).
    let p = mlp.torch_params();
    assert_eq!(p[1].len(), at.settings.mapping_hidden_size);
    at.tail_labels.adversary = Some(adversary);

    let g = values(grad.clone());
    let ids: Vec<i64> = labels_ids(&labels);
    let hidden = at.settings.mapping_hidden_size;
    let (mut loss, mut right) = (0.0f32, 0usize);
    for (example, &id) in ids.iter().enumerate() {
        let mut pooled = vec![0.0f32; hidden];
        for t in 0..S {
            let x = &g[(example * S + t) * D..(example * S + t + 1) * D];
            let relu = |v: Vec<f32>| v.into_iter().map(|v| v.max(0.0)).collect::<Vec<_>>();
            let h = relu(host_layer_norm(&host_linear(x, &p[0], &p[1]), &p[2], &p[3]));
            let h = relu(host_layer_norm(
                &host_linear(&h, &p[4], &p[5]),
                &p[6],
                &p[7],
            ));
            for (acc, v) in pooled.iter_mut().zip(h) {
                *acc += v / S as f32;
            }
        }
        let z = host_linear(&pooled, &p[8], &p[9]);
        let probs: Vec<f32> = host_log_softmax(&z).iter().map(|v| v.exp()).collect();
        loss -= host_log_softmax(&probs)[id as usize] / B as f32;
        let best = (0..CLASSES)
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap();
        right += usize::from(best as i64 == id);
    }
    at.on_labels(&labels, &training(0));
    let sent = at.on_gradient(grad.clone(), &training(0));
    assert_eq!(values(sent), g);
    let fit = at.label_adversary_step().unwrap().clone().unwrap();
    assert!((fit.loss - loss).abs() < 1e-5, "{} vs {loss}", fit.loss);
    assert_eq!(fit.accuracy, right as f32 / B as f32);
    // It stepped: the same gradient now scores a lower loss.
    at.on_labels(&labels, &training(1));
    at.on_gradient(grad, &training(1));
    let after = at.label_adversary_step().unwrap().clone().unwrap();
    assert!(after.loss < fit.loss, "{} vs {}", after.loss, fit.loss);
}

fn labels_ids(labels: &Labels) -> Vec<i64> {
    let Labels::Classes(ids) = labels else {
        panic!("class labels")
    };
    ids.clone().into_data().try_into_vec_as::<i64>().unwrap()
}

#[test]
fn what_the_label_adversary_cannot_predict_is_skipped_with_its_reason() {
    let mut rng = SplitMix64::new(6);
    let grad = normal(&mut rng, [B, S, D]);
    // Runs one training step's label hooks on `grad`; the gradient always goes out as it is.
    let skipped = |at: &mut AdversarialTraining, labels: Option<&Labels>, why: &str| {
        if let Some(labels) = labels {
            at.on_labels(labels, &training(0));
        }
        let sent = at.on_gradient(grad.clone(), &training(0));
        assert_eq!(values(sent), values(grad.clone()), "{why}");
        match at.label_adversary_step() {
            Some(Err(reason)) => assert!(reason.contains(why), "{reason} (wanted {why})"),
            other => panic!("{why}: {other:?}"),
        }
    };
    let classes = class_labels(&mut rng);
    let new =
        |classes| AdversarialTraining::new(tail_settings(1e-3), 0, &tail_env(classes)).unwrap();

    // No labels: a defense used without a data party's `on_labels`.
    skipped(&mut new(Some(CLASSES)), None, "no labels for this step");
    // Labels are for one step only.
    let mut at = new(Some(CLASSES));
    at.on_labels(&classes, &training(0));
    at.on_gradient(grad.clone(), &training(0));
    assert!(matches!(at.label_adversary_step(), Some(Ok(_))));
    skipped(&mut at, None, "no labels for this step");
    // Outside training nothing is kept, nothing runs.
    at.on_labels(&classes, &ctx(false));
    at.on_gradient(grad.clone(), &ctx(false));
    assert!(
        matches!(at.label_adversary_step(), Some(Err(_))),
        "unchanged"
    );
    // Class labels without the task's number of classes.
    skipped(
        &mut new(None),
        Some(&classes),
        "number of classes is unknown",
    );
    // Labels for another batch, ids out of range, another kind of labels than the first.
    let mut at = new(Some(CLASSES));
    let three = Labels::Classes(ints(vec![0, 1, 2], [3]));
    skipped(&mut at, Some(&three), "class labels for 3 examples");
    let out_of_range = Labels::Classes(ints(vec![CLASSES as i64; B], [B]));
    skipped(
        &mut at,
        Some(&out_of_range),
        "outside the label adversary's 3 outputs",
    );
    let tokens = token_labels(&mut rng);
    skipped(&mut at, Some(&tokens), "built for class labels");
    let spans = Labels::Spans {
        start: ints(vec![0; B], [B]),
        end: ints(vec![1; B], [B]),
    };
    skipped(&mut new(Some(CLASSES)), Some(&spans), "not span labels");
    // Token labels of another shape; a gradient of another width.
    let mut at = new(None);
    let short = Labels::next_tokens(&ints(vec![1; B * 2], [B, 2]), &ints(vec![1; B * 2], [B, 2]));
    skipped(&mut at, Some(&short), "do not match the gradient");
    at.on_labels(&tokens, &training(1));
    at.on_gradient(grad.clone(), &training(1));
    assert!(matches!(at.label_adversary_step(), Some(Ok(_))));
    at.on_labels(&tokens, &training(2));
    let wide = normal(&mut rng, [B, S, D + 1]);
    assert_eq!(
        values(at.on_gradient(wide.clone(), &training(2))),
        values(wide)
    );
    match at.label_adversary_step() {
        Some(Err(reason)) => assert!(reason.contains("width 9"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
