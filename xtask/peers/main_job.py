"""The project's main job (`configs/sentiment.toml`) end to end in PyTorch, unsplit: LoRA
fine-tuning of MiniLM on movie-review sentiment, then accuracy and F1 on the held-out tenth.

The recipe is read from the TOML file (model, LoRA rank/α, whether the embeddings train, AdamW
lr/weight decay/schedule, max_len, train_examples, epochs, batch size, seed); the split itself
is ignored (this is the unsplit computation, which ours proves equal to the split one).

The data are ours, example for example, in our order:

* `crates/tasks/src/sentiment.rs`: lines `id<TAB>score<TAB>text` of `sentiment/movie_reviews.txt`
  (lossy UTF-8, LF or CRLF, blank lines skipped, text trimmed); score parsed as f32; zero
  scores dropped; label 1 when the score is positive, else 0.
* `crates/tasks/src/dataset.rs::train_test_split(examples, 0.1, seed)`: the examples permuted by
  splitlm's Fisher-Yates over SplitMix64 (reproduced bit for bit in common.py), the first
  round(0.1·n) (1,057) held out, the rest (9,511) for training, of which the first
  `train_examples` (4,000) are used (`cap` in crates/tasks/src/task.rs).
* `crates/train/src/fit.rs`: each epoch `e` visits the training examples in the order
  `permutation(n, seed + e)`, in consecutive batches of `batch_size` (the last may be short);
  one optimizer step per batch; `total_steps = epochs · ceil(n / batch_size)` (250).
* `crates/tasks/src/batching.rs`: MiniLM's `tokenizer.json` through the same Hugging Face
  `tokenizers` library, its own padding switched off, truncation to `max_len` (64) tokens
  (longest-first, right), special tokens added, batches padded on the right with the
  tokenizer's pad id to their longest row; token types all 0.
* Evaluation (`crates/tasks/src/predictor.rs`): the held-out examples in their order, batches of
  64, argmax of the logits; accuracy, and F1 of class 1 (0 when there is no true positive).
  Ours scores before training (outside both timers) and at the last step (`eval_seconds`);
  the same here.
* Learning rate (`crates/party/src/optim.rs`): step `t` (0-based) uses
  `lr · (1 - (1 - end_factor) · min(t / max(total_steps - 1, 1), 1))` for a linear schedule.
* Model, LoRA init, classifier init, loss and AdamW: as in minilm.py (same seeded values).

Timers as ours (crates/train/src/fit.rs, crates/bench/src/jobs.rs): `value` is the training
time (tokenisation of each batch included, evaluations excluded); `eval_s` the final
evaluation; `wall_s` everything from opening the model to the final score.

Known differences: float rounding only (SDPA vs ours' explicit attention, peft's separate LoRA
branch vs Burn's composed weight, different kernels), so the accuracy matches ours closely but
not necessarily to the last example. The Rust `str::trim`/`lines` and Python `strip`/`split`
agree on this file's contents (plain ASCII/UTF-8 text with LF or CRLF line ends).
"""

from __future__ import annotations

import math
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import PeerError, adamw, minilm_dir, movie_reviews, permutation, repo_root
import minilm

CONFIG = Path("configs") / "sentiment.toml"
EVAL_BATCH = 64
TEST_FRACTION = 0.1


# --- the recipe ---


def load_recipe(path: Path) -> dict:
    """The settings the peer needs from the run configuration, with ours' defaults."""
    if not path.is_file():
        raise PeerError(f"missing run configuration {path}")
    with path.open("rb") as f:
        config = tomllib.load(f)
    model = config.get("model", {}).get("source")
    task = config.get("task", {})
    if model != "minilm" or task.get("kind") != "sentiment":
        raise PeerError(f"{path}: the peer models MiniLM on sentiment, not {model!r} on {task.get('kind')!r}")
    finetune = config.get("finetune", {})
    strategy = finetune.get("strategy", "full")
    if strategy not in ("lora", "full"):
        raise PeerError(f"{path}: finetune.strategy {strategy!r} is not modelled by the peer")
    lora = finetune.get("lora", {})
    optimizer = config.get("optimizer", {})
    if optimizer.get("kind", "adamw") != "adamw":
        raise PeerError(f"{path}: optimizer.kind {optimizer.get('kind')!r}: the peer models AdamW only")
    train = config.get("train", {})
    return {
        "strategy": strategy,
        # `embeddings` defaults to true for full fine-tuning, false for LoRA (trainability.rs).
        "embeddings": finetune.get("embeddings", strategy != "lora"),
        "rank": lora.get("rank", 4),
        "alpha": float(lora.get("alpha", 32.0)),
        "lora_dropout": float(lora.get("dropout", 0.0)),
        "targets": lora.get("targets"),
        "lr": float(optimizer.get("lr", 1e-4)),
        "weight_decay": float(optimizer.get("weight_decay", 0.01)),
        "beta1": float(optimizer.get("beta1", 0.9)),
        "beta2": float(optimizer.get("beta2", 0.999)),
        "epsilon": float(optimizer.get("epsilon", 1e-8)),
        "schedule": optimizer.get("schedule", {"kind": "constant"}),
        "max_len": int(task.get("max_len", 64)),
        "train_examples": int(task.get("train_examples", 0)),
        "eval_examples": int(task.get("eval_examples", 0)),
        "epochs": int(train.get("epochs", 1)),
        "batch_size": int(train.get("batch_size", 16)),
        "seed": int(train.get("seed", 0)),
    }


def lr_factor(schedule: dict, step: int, total_steps: int) -> float:
    """`LrSchedule::factor` of crates/party/src/optim.rs."""
    last = float(max(total_steps - 1, 1))
    kind = schedule.get("kind", "constant")
    if kind == "constant":
        return 1.0
    if kind == "linear":
        end = float(schedule["end_factor"])
        return 1.0 - (1.0 - end) * min(step / last, 1.0)
    if kind == "cosine":
        warmup = float(schedule["warmup_steps"])
        floor = float(schedule["min_factor"])
        if step < warmup:
            return (step + 1.0) / (warmup + 1.0)
        progress = min((step - warmup) / max(last - warmup, 1.0), 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise PeerError(f"unknown schedule kind {kind!r}")


# --- the data ---


def read_binary_examples(path: Path) -> list[tuple[str, int]]:
    """`read_scored_snippets` + `binary_examples`: (text, label), zero scores dropped."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    examples = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) < 3:
            raise PeerError(f"{path}:{number}: expected id<TAB>score<TAB>text")
        score = float(np.float32(float(fields[1].strip())))
        if not -4.0 <= score <= 4.0:
            raise PeerError(f"{path}:{number}: score {score} is outside [-4, 4]")
        if score != 0.0:
            examples.append((fields[2].strip(), int(score > 0.0)))
    if not examples:
        raise PeerError(f"{path}: no examples")
    return examples


def train_test_split(items: list, test_fraction: float, seed: int) -> tuple[list, list]:
    shuffled = [items[i] for i in permutation(len(items), seed)]
    # Rust's f64::round rounds halves away from zero; the value is positive.
    test_len = min(int(math.floor(len(items) * test_fraction + 0.5)), len(shuffled))
    return shuffled[test_len:], shuffled[:test_len]


def cap(items: list, n: int) -> list:
    return items[:n] if n > 0 else items


class Encoder:
    """`splitlm_tasks::Encoder`: truncation to max_len, right padding to the batch's longest."""

    def __init__(self, tokenizer_json: Path, max_len: int):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_json))
        padding = tokenizer.padding
        pad_id = padding["pad_id"] if padding else None
        if pad_id is None:
            pad_id = tokenizer.token_to_id("[PAD]")
        if pad_id is None:
            pad_id = tokenizer.token_to_id("<pad>")
        self.pad_id = pad_id if pad_id is not None else 0
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer = tokenizer

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [self.tokenizer.encode(t, add_special_tokens=True).ids for t in texts]
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return input_ids, mask


# --- the job ---


def build_model(assets: Path, recipe: dict):
    if recipe["lora_dropout"] != 0.0:
        raise PeerError("lora.dropout must be 0 (ours does not support adapter dropout)")
    targets = recipe["targets"] or minilm.LORA_TARGETS
    if recipe["strategy"] == "lora" and sorted(targets) != sorted(minilm.LORA_TARGETS):
        raise PeerError(f"lora.targets {targets}: the peer models query/value only")
    model = minilm.build(assets, recipe["strategy"], recipe["rank"], recipe["alpha"], recipe["seed"])
    if recipe["strategy"] == "lora" and recipe["embeddings"]:
        for name, p in model.encoder.named_parameters():
            if ".embeddings." in name:
                p.requires_grad_(True)
    if recipe["strategy"] == "full" and not recipe["embeddings"]:
        for name, p in model.encoder.named_parameters():
            if name.startswith("embeddings."):
                p.requires_grad_(False)
    return model


def evaluate(model, encoder: Encoder, examples: list[tuple[str, int]]) -> tuple[float, float]:
    """(accuracy, F1 of class 1) over `examples` in batches of 64."""
    model.eval()
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(examples), EVAL_BATCH):
            chunk = examples[start : start + EVAL_BATCH]
            ids, mask = encoder.batch([t for t, _ in chunk])
            predictions.extend(model(ids, mask).argmax(dim=1).tolist())
    model.train()
    labels = [label for _, label in examples]
    right = sum(p == l for p, l in zip(predictions, labels))
    tp = sum(p == 1 and l == 1 for p, l in zip(predictions, labels))
    fp = sum(p == 1 and l == 0 for p, l in zip(predictions, labels))
    fn = sum(p == 0 and l == 1 for p, l in zip(predictions, labels))
    f1 = 0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + fp + fn)
    return right / max(len(labels), 1), f1


def run(assets: Path) -> dict:
    started = time.perf_counter()
    config_path = repo_root() / CONFIG
    recipe = load_recipe(config_path)
    examples = read_binary_examples(movie_reviews(assets))
    train, held_out = train_test_split(examples, TEST_FRACTION, recipe["seed"])
    train = cap(train, recipe["train_examples"])
    held_out = cap(held_out, recipe["eval_examples"])
    encoder = Encoder(minilm_dir(assets) / "tokenizer.json", recipe["max_len"])
    model = build_model(assets, recipe)
    optimizer = adamw(
        model.parameters(),
        lr=recipe["lr"],
        weight_decay=recipe["weight_decay"],
        beta1=recipe["beta1"],
        beta2=recipe["beta2"],
        epsilon=recipe["epsilon"],
    )
    batch_size, epochs = recipe["batch_size"], recipe["epochs"]
    total_steps = epochs * math.ceil(len(train) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(recipe["schedule"], step, total_steps)
    )
    accuracy_before, _ = evaluate(model, encoder, held_out)

    train_s = 0.0
    losses = []
    tokens = 0
    model.train()
    for epoch in range(epochs):
        order = permutation(len(train), recipe["seed"] + epoch)
        epoch_started = time.perf_counter()
        for start in range(0, len(order), batch_size):
            chunk = [train[i] for i in order[start : start + batch_size]]
            ids, mask = encoder.batch([t for t, _ in chunk])
            labels = torch.tensor([label for _, label in chunk], dtype=torch.long)
            loss = F.cross_entropy(model(ids, mask), labels)
            value = loss.item()
            if not math.isfinite(value):
                raise PeerError(f"non-finite loss {value} at step {len(losses) + 1}")
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(value)
            tokens += int(mask.sum())
        train_s += time.perf_counter() - epoch_started

    eval_started = time.perf_counter()
    accuracy, f1 = evaluate(model, encoder, held_out)
    eval_s = time.perf_counter() - eval_started
    wall_s = time.perf_counter() - started
    return {
        "value": train_s,
        "unit": "s",
        "accuracy": accuracy,
        "f1": f1,
        "eval_s": eval_s,
        "wall_s": wall_s,
        "accuracy_before": accuracy_before,
        "train_examples": len(train),
        "eval_examples": len(held_out),
        "train_steps": len(losses),
        "mean_loss": sum(losses) / len(losses),
        "first_losses": losses[:5],
        "train_tokens": tokens,
        "config": str(CONFIG),
        "recipe": recipe,
    }
