"""What the peer workloads share: splitlm's seeded draws, the benchmark's token ids, timing,
asset paths, and the LoRA set-up that mirrors ours.

Nothing here imports torch at module level except through functions, so that `peer.py` can set
the thread environment before torch is first loaded.
"""

from __future__ import annotations

import math
import os
import re
import struct
import time
from pathlib import Path

MASK64 = (1 << 64) - 1


class PeerError(Exception):
    """An error worth a one-line message (missing asset, bad setting), not a traceback."""


# --- splitlm's portable random draws (models/nn/src/seeded.rs, crates/tasks/src/dataset.rs) ---


class SplitMix64:
    """The SplitMix64 generator of `splitlm_nn::seeded`, bit for bit."""

    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self) -> float:
        """Uniform in (0, 1]."""
        return ((self.next_u64() >> 11) + 1.0) / float(1 << 53)

    def normal(self) -> float:
        """Standard normal by Box-Muller (cosine branch only, as ours)."""
        u1, u2 = self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(math.tau * u2)


def _fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def _to_f32(x: float) -> float:
    # Rust's `as f32`: round to nearest.
    return struct.unpack("f", struct.pack("f", x))[0]


def seeded_normal(seed: int, key: str, n: int, std: float) -> list[float]:
    """`splitlm_nn::seeded::normal`: n draws from N(0, std²) keyed by (seed, key), as f32."""
    rng = SplitMix64(seed ^ _fnv1a(key.encode()))
    return [_to_f32(rng.normal() * std) for _ in range(n)]


def permutation(n: int, seed: int) -> list[int]:
    """`splitlm_tasks::dataset::permutation`: Fisher-Yates over SplitMix64."""
    order = list(range(n))
    rng = SplitMix64(seed)
    for i in range(n - 1, 0, -1):
        j = rng.next_u64() % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def synthetic_ids(rows: int, seq: int, first_id: int) -> list[list[int]]:
    """`examples/common/mod.rs::synthetic_ids`: [CLS] pseudo-random pieces [SEP], no padding."""

    def token(b: int, i: int) -> int:
        if i == 0:
            return 101
        if i + 1 == seq:
            return 102
        return first_id + (b * 7919 + i * 104_729) % 20_000

    return [[token(b, i) for i in range(seq)] for b in range(rows)]


# --- LoRA as ours sets it up (crates/partition/src/trainability.rs, burn-core LoRA) ---


def seed_lora_a(model, block_pattern: str, seed: int, rank: int) -> int:
    """Overwrites every peft `lora_A` with the values our `SeededLoraInit` draws.

    Ours keeps A as `[d_in, rank]` (Burn's `Linear` is input-major) and draws it row-major from
    N(0, (1/rank)²) keyed by the weight's global path, `blocks.{i}.{target}.weight.lora.a`;
    peft keeps `lora_A.weight` as `[rank, d_in]`, so it gets the transpose. B starts at zero in
    both. `block_pattern` is a regex over module names with groups (block id, target name).
    Returns the number of adapters seeded.
    """
    import torch

    pattern = re.compile(block_pattern)
    seeded = 0
    for name, module in model.named_modules():
        match = pattern.search(name)
        if not match or not hasattr(module, "lora_A"):
            continue
        block, target = match.group(1), match.group(2)
        weight = module.lora_A["default"].weight  # [rank, d_in]
        d_in = weight.shape[1]
        values = seeded_normal(seed, f"blocks.{block}.{target}.weight.lora.a", d_in * rank, 1.0 / rank)
        with torch.no_grad():
            weight.copy_(torch.tensor(values, dtype=weight.dtype).reshape(d_in, rank).T)
            module.lora_B["default"].weight.zero_()
        seeded += 1
    if seeded == 0:
        raise PeerError(f"no LoRA adapter matched {block_pattern!r}")
    return seeded


# --- optimizer (crates/party/src/optim.rs) ---

# `OptimizerConfig::default()`: AdamW, lr 1e-4, decoupled weight decay 0.01, betas (0.9, 0.999),
# eps 1e-8, constant schedule. Burn's AdamW update is the same formula as torch's.
DEFAULT_OPTIMIZER = {"lr": 1e-4, "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}


def adamw(params, lr=1e-4, weight_decay=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8):
    import torch

    params = [p for p in params if p.requires_grad]
    # foreach=None lets torch pick its fastest single-device implementation (the default).
    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=epsilon, weight_decay=weight_decay)


def count_trainable(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


# --- timing ---


def median_upper(values: list[float]) -> float:
    """The median as `examples/split_step.rs::median_ms` takes it: `sorted[len / 2]` (for an
    even count, the upper of the two middle values, not their mean)."""
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def time_training_steps(model, optimizer, compute_loss, steps: int) -> dict:
    """One warm-up step, then `steps` timed ones, each `compute_loss()` → backward → optimizer
    step → zero_grad, the loss read back each step (ours reads it back too). Returns the fields
    every step workload reports: the median, each time, each loss, the parameter counts."""
    losses = []

    def step() -> None:
        loss = compute_loss()
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1e3)
    trainable, total = count_trainable(model)
    return {
        "value": median_upper(times),
        "unit": "ms/step",
        "times_ms": times,
        "losses": losses,
        "trainable_params": trainable,
        "total_params": total,
    }


# --- assets ---


def default_assets_dir() -> Path:
    """`splitlm_assets::assets_dir`: `$SPLITLM_ASSETS_DIR`, else `$XDG_CACHE_HOME/splitlm/assets`,
    else `~/.cache/splitlm/assets` (empty variables count as unset)."""
    env = os.environ.get("SPLITLM_ASSETS_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) if cache else Path.home() / ".cache"
    return base / "splitlm" / "assets"


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise PeerError(
            f"missing asset: {what} at {path} (fetch it with `cargo xtask assets` "
            "or point --assets / SPLITLM_ASSETS_DIR at the asset cache)"
        )
    return path


def minilm_dir(assets: Path) -> Path:
    d = assets / "minilm"
    for leaf in ("config.json", "model.safetensors", "tokenizer.json"):
        require(d / leaf, f"MiniLM {leaf}")
    return d


def smollm2_gguf(assets: Path) -> Path:
    return require(assets / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2 GGUF")


def movie_reviews(assets: Path) -> Path:
    return require(assets / "sentiment" / "movie_reviews.txt", "movie-review sentiment")


def repo_root() -> Path:
    # xtask/peers/common.py -> repository root
    return Path(__file__).resolve().parents[2]
