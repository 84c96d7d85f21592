//! AT's loss terms, as the reference's passive party computes them.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

/// The mapping's distance from what it maps: `‖origin − mapped‖₂ / (b·s)`, the L2 norm over
/// every element (party/passive_party.py:985–986, and 1050–1051 at the tail).
pub(crate) fn mapping_distance(origin: Tensor<3>, mapped: Tensor<3>) -> Tensor<1> {
    let [b, s, _] = origin.dims();
    (origin - mapped).powi_scalar(2).sum().sqrt() / (b * s) as f64
}

/// The imagined adversary's loss: the reference's `nn.CrossEntropyLoss()` of the recovered
/// embeddings against the real ones, divided by the batch size
/// (party/passive_party.py:148, 753–754). Both are `[b, s, e]`, so PyTorch reads the real
/// embeddings as class probabilities over the *sequence* axis (axis 1):
/// `−(1/(b·e)) Σ real · log_softmax_s(recovered)`, then `/ b`.
pub(crate) fn attack_loss(recovered: Tensor<3>, real: Tensor<3>) -> Tensor<1> {
    let [b, _, e] = recovered.dims();
    -(log_softmax(recovered, 1) * real).sum() / (b * e * b) as f64
}

/// The mapping's objective: `λ · distance − attack` (party/passive_party.py:756): it keeps
/// close to what it maps while it maximises the imagined adversary's loss.
pub(crate) fn mapping_objective(lambda: f64, distance: Tensor<1>, attack: Tensor<1>) -> Tensor<1> {
    distance * lambda - attack
}
