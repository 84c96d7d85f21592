"""MiniLM (sentence-transformers/all-MiniLM-L6-v2) with a 2-class head, built as ours builds it,
and the training-step workloads `minilm_step_{16x64,32x128}_{full,lora}`.

How ours computes (models/bert/src, models/nn/src, crates/partition/src) and how this matches:

* Encoder: post-LN BERT, exact (erf) GELU, LayerNorm eps from config.json, no dropout anywhere
  (our BERT has no dropout layer). Here: transformers' BertModel loaded from the same directory
  with `hidden_dropout_prob = attention_probs_dropout_prob = 0`, no pooler layer.
* Head: the checkpoint is a sentence-transformers one whose `1_Pooling/config.json` asks for mean
  pooling, so ours classifies the attention-masked MEAN of the final token states (not BERT's
  pooler on [CLS]); `classifier` is a Linear(384, 2) initialised from N(0, 0.02²) by splitlm's
  seeded generator keyed "classifier.weight" (seed 0), bias 0. Reproduced bit for bit here.
* LoRA: Burn's adapter on the `query` and `value` weights of every block, rank 4, α 32 (scale 8),
  no adapter dropout, A drawn by splitlm's seeded generator from N(0, (1/4)²) keyed by the
  weight's path, B = 0; the adapted weights' biases stay frozen. Here: peft LoRA with the same
  rank/α/targets, `bias="none"`, and A overwritten with the same values (so step 0 is the same
  model). Embeddings frozen; the classifier trains.
* Full fine-tuning: every parameter trains (embeddings included), as `Trainability::default()`.
* Loss: mean cross-entropy of the logits against labels `i % 2` (models/nn/src/loss.rs).
* Optimizer: `OptimizerConfig::default()` = AdamW lr 1e-4, weight decay 0.01 (decoupled, on
  every trainable parameter), betas (0.9, 0.999), eps 1e-8; the same update as torch.optim.AdamW.
* Input: `synthetic_ids(batch, seq, 1000)` from examples/common/mod.rs, no padding, token types 0.

Known differences (computation, not maths):

* Attention: transformers' default attention implementation (SDPA) instead of ours' explicit
  matmul → masked softmax → matmul. Same result up to float rounding.
* LoRA: peft adds `scale · (x Aᵀ) Bᵀ` beside the frozen matmul; Burn composes the effective
  weight `W + scale · A·B` and multiplies once (and so computes a full-size weight gradient before
  reducing it to the factors). Same maths, different cost profile.
* Position ids of padding tokens differ (ours: last real position, HF: arange); padded keys are
  masked and padded rows are excluded from the mean, so outputs do not change. The benchmark
  batches have no padding anyway.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from common import (
    DEFAULT_OPTIMIZER,
    PeerError,
    adamw,
    minilm_dir,
    seed_lora_a,
    seeded_normal,
    synthetic_ids,
    time_training_steps,
)

NUM_LABELS = 2
LORA_TARGETS = ["query", "value"]
# Module names of peft-wrapped BERT projections: `...encoder.layer.3.attention.self.query`.
LORA_BLOCK_PATTERN = r"encoder\.layer\.(\d+)\.attention\.self\.(query|value)$"


class MiniLMClassifier(nn.Module):
    """BERT encoder → attention-masked mean of the final states → Linear classifier."""

    def __init__(self, encoder: nn.Module, hidden: int, num_labels: int):
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
        return self.classifier(pooled)


def _check_mean_pooling(directory: Path) -> None:
    pooling = directory / "1_Pooling" / "config.json"
    if not pooling.is_file():
        raise PeerError(f"{pooling} is missing: the peer only models MiniLM's mean-pooled head")
    config = json.loads(pooling.read_text())
    if not config.get("pooling_mode_mean_tokens", False):
        raise PeerError(f"{pooling} does not ask for mean pooling: the peer only models that head")


def build(assets: Path, strategy: str, rank: int = 4, alpha: float = 32.0, seed: int = 0) -> MiniLMClassifier:
    """The classifier as ours starts it: `strategy` is "full" or "lora"."""
    from transformers import BertConfig, BertModel

    directory = minilm_dir(assets)
    _check_mean_pooling(directory)
    # Our BERT has no dropout; with p = 0 transformers' dropout layers are identities.
    config = BertConfig.from_pretrained(directory, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    encoder = BertModel.from_pretrained(directory, config=config, add_pooling_layer=False)
    hidden = config.hidden_size
    if strategy == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none")
        # Freezes every encoder weight (embeddings included) and adds the adapters.
        encoder = get_peft_model(encoder, lora)
        seed_lora_a(encoder, LORA_BLOCK_PATTERN, seed, rank)
    elif strategy != "full":
        raise PeerError(f"unknown strategy {strategy!r}")
    model = MiniLMClassifier(encoder, hidden, NUM_LABELS)
    # `linear_or_new` in models/nn/src/weights.rs: seed 0 whatever the run's seed; Burn's
    # weight is [d_in, d_out], torch's [d_out, d_in].
    values = seeded_normal(0, "classifier.weight", hidden * NUM_LABELS, 0.02)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(values).reshape(hidden, NUM_LABELS).T)
        model.classifier.bias.zero_()
    model.train()
    return model


def step_workload(assets: Path, batch: int, seq: int, strategy: str, steps: int) -> dict:
    """Milliseconds per training step (median of `steps` after one warm-up)."""
    model = build(assets, strategy)
    optimizer = adamw(model.parameters(), **DEFAULT_OPTIMIZER)
    input_ids = torch.tensor(synthetic_ids(batch, seq, 1000), dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    labels = torch.tensor([i % 2 for i in range(batch)], dtype=torch.long)

    def loss():
        return F.cross_entropy(model(input_ids, attention_mask), labels)

    return {
        **time_training_steps(model, optimizer, loss, steps),
        "batch": batch,
        "seq": seq,
        "strategy": strategy,
        "attn_implementation": model.encoder.config._attn_implementation,
    }
