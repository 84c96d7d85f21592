"""SmolLM2-135M-Instruct from the project's GGUF (Q4_1, dequantised to f32 as ours is), and the
workloads `smollm2_step_8x128_lora` and `smollm2_decode_32+64`.

How ours computes (models/llama/src, models/nn/src) and how this matches:

* Weights: our `GgufLlamaSource` dequantises every tensor to f32 and undoes llama.cpp's Q/K row
  permutation; hyper-parameters come from the GGUF metadata; the LM head is tied to the token
  embeddings (the file has no `output.weight`). Here: transformers' GGUF loader
  (`gguf_file=`, which does the same), or, if that fails, `load_own()` below: the `gguf`
  package's dequantiser and the same un-permutation into a LlamaForCausalLM. (With
  transformers 5.24 both give identical f32 weights and logits; transformers then flags the
  model as "quantised" in its config, but every parameter is plain f32.)
* Training step: LoRA rank 4, α 32 on `q_proj` and `v_proj` of every block, A seeded as ours
  (splitlm's generator, keyed `blocks.{i}.{q_proj|v_proj}.weight.lora.a`), B = 0. Ours also
  trains the "task head" part of the top, which for a tied causal LM is the final RMSNorm
  weight (the tied LM head has no weight of its own and the embeddings stay frozen); so that
  weight trains here too. Loss: mean next-token cross-entropy over positions 0..S-2 (ours
  weights the last position 0 and divides by the count of the others: the same number).
  AdamW with `OptimizerConfig::default()` (lr 1e-4, wd 0.01, betas (0.9, 0.999), eps 1e-8).
  Input: `synthetic_ids(8, 128, 1000)` from examples/common/mod.rs (the same helper as the
  MiniLM benchmark; plain token ids for this vocabulary), attention mask all ones.
* Decoding: ours (`splitlm_nn::generate::generate`, greedy, no stop token) runs the prompt once
  (that pass also yields the first new token: "prefill"), then one single-token forward per
  further token against the KV cache ("decode"); the rate it reports
  (`Generation::decode_rate`) is (new tokens - 1) / decode seconds. With 64 new tokens that is
  63 single-token forwards. The same loop here, under `torch.inference_mode()`, with HF's
  DynamicCache; logits of every prompt position are computed in both.

Known differences: transformers' attention implementation (SDPA by default) instead of ours'
explicit matmul/softmax; RoPE inverse frequencies computed in f32 by transformers (ours in f64
then rounded to f32); peft computes the LoRA branch beside the frozen matmul while Burn composes
`W + scale·A·B` first.
"""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import (
    DEFAULT_OPTIMIZER,
    PeerError,
    adamw,
    seed_lora_a,
    smollm2_gguf,
    synthetic_ids,
    time_training_steps,
)

LORA_TARGETS = ["q_proj", "v_proj"]
LORA_BLOCK_PATTERN = r"layers\.(\d+)\.self_attn\.(q_proj|v_proj)$"
PROMPT = [1000 + i * 37 for i in range(32)]
NEW_TOKENS = 64


def load(assets: Path):
    """(model, how it was loaded), f32, tied LM head."""
    path = smollm2_gguf(assets)
    try:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        loader = "transformers-gguf"
    except Exception as error:  # noqa: BLE001 - any failure falls back to our own loader
        print(f"transformers could not load the GGUF ({error!r}); dequantising with gguf", file=sys.stderr)
        model = load_own(path)
        loader = "own-gguf"
    # transformers flags a GGUF-loaded model as quantised (and refuses `.float()`), but its
    # weights are dequantised: check they are plain f32 like ours.
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise PeerError(f"SmolLM2 weights are {dtypes}, expected f32 only")
    # SmolLM2's file has no output.weight: the head must be the embeddings.
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        model.tie_weights()
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise PeerError("the LM head is not tied to the embeddings as in the GGUF")
    return model, loader


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.parts[field.data[0]]
    if value.dtype == np.uint8:  # strings are stored as bytes
        return bytes(value).decode()
    return value.item() if value.size == 1 else value.tolist()


def _unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undoes llama.cpp's Q/K row order: GGUF row h·hd + 2i + j holds HF row h·hd + j·hd/2 + i."""
    rows, width = weight.shape
    half = rows // heads // 2
    return weight.reshape(heads, half, 2, width).transpose(0, 2, 1, 3).reshape(rows, width)


def load_own(path: Path):
    """A LlamaForCausalLM from the GGUF, dequantised to f32 with the `gguf` package."""
    from gguf import GGUFReader, dequantize
    from transformers import LlamaConfig, LlamaForCausalLM

    reader = GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise PeerError(f"{path}: architecture {arch!r}, expected llama")
    key = lambda name: f"llama.{name}"  # noqa: E731
    heads = _field(reader, key("attention.head_count"))
    kv_heads = _field(reader, key("attention.head_count_kv"), heads)
    hidden = _field(reader, key("embedding_length"))
    tensors = {t.name: t for t in reader.tensors}

    def load_tensor(name: str) -> np.ndarray:
        t = tensors[name]
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # GGUF lists ne0 first
        return np.array(dequantize(t.data, t.tensor_type).reshape(shape), dtype=np.float32)  # a writable copy

    config = LlamaConfig(
        vocab_size=int(tensors["token_embd.weight"].shape[1]),
        hidden_size=hidden,
        intermediate_size=_field(reader, key("feed_forward_length")),
        num_hidden_layers=_field(reader, key("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=_field(reader, key("rope.dimension_count"), hidden // heads),
        rope_theta=float(_field(reader, key("rope.freq_base"), 10_000.0)),
        rms_norm_eps=float(_field(reader, key("attention.layer_norm_rms_epsilon"), 1e-5)),
        max_position_embeddings=_field(reader, key("context_length"), 8192),
        tie_word_embeddings="output.weight" not in tensors,
        attention_bias=False,
        mlp_bias=False,
    )
    names = {
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    state = {
        "model.embed_tokens.weight": load_tensor("token_embd.weight"),
        "model.norm.weight": load_tensor("output_norm.weight"),
    }
    if "output.weight" in tensors:
        state["lm_head.weight"] = load_tensor("output.weight")
    for block in range(config.num_hidden_layers):
        for gguf_name, hf_name in names.items():
            w = load_tensor(f"blk.{block}.{gguf_name}.weight")
            if gguf_name == "attn_q":
                w = _unpermute(w, heads)
            elif gguf_name == "attn_k":
                w = _unpermute(w, kv_heads)
            state[f"model.layers.{block}.{hf_name}.weight"] = w
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    missing = [m for m in missing if m != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise PeerError(f"own GGUF loader: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


def step_workload(assets: Path, batch: int, seq: int, steps: int, rank: int = 4, alpha: float = 32.0) -> dict:
    """Milliseconds per LoRA training step of the causal LM (median after one warm-up)."""
    from peft import LoraConfig, get_peft_model

    base, loader = load(assets)
    lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none")
    model = get_peft_model(base, lora)
    seed_lora_a(model, LORA_BLOCK_PATTERN, 0, rank)
    # Ours trains the top's final norm with the adapters (see the module docstring).
    base.model.norm.weight.requires_grad_(True)
    model.train()
    optimizer = adamw(model.parameters(), **DEFAULT_OPTIMIZER)
    input_ids = torch.tensor(synthetic_ids(batch, seq, 1000), dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)

    def loss():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        vocab = logits.shape[-1]
        return F.cross_entropy(logits[:, :-1].reshape(-1, vocab), input_ids[:, 1:].reshape(-1))

    return {
        **time_training_steps(model, optimizer, loss, steps),
        "batch": batch,
        "seq": seq,
        "loader": loader,
        "attn_implementation": base.config._attn_implementation,
    }


def _cache_kwarg(model) -> str:
    """transformers >= 5.x names the KV-cache argument `cache` (`past_key_values` before)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _generate(model) -> tuple[list[int], float, float]:
    """Greedy decoding of NEW_TOKENS after PROMPT: (tokens, prefill s, decode s)."""
    from transformers import DynamicCache

    # One cache object, filled in place by every forward.
    cache = DynamicCache(config=model.config)
    with_cache = {_cache_kwarg(model): cache, "use_cache": True}
    prompt = torch.tensor([PROMPT], dtype=torch.long)
    started = time.perf_counter()
    logits = model(input_ids=prompt, **with_cache).logits
    token = int(logits[0, -1].argmax())
    prefill = time.perf_counter() - started
    tokens = [token]
    while len(tokens) < NEW_TOKENS:
        logits = model(input_ids=torch.tensor([[token]], dtype=torch.long), **with_cache).logits
        token = int(logits[0, -1].argmax())
        tokens.append(token)
    decode = time.perf_counter() - started - prefill
    # Every step but the last fed its token through the cache.
    if cache.get_seq_length() != len(PROMPT) + NEW_TOKENS - 1:
        raise PeerError(f"the KV cache holds {cache.get_seq_length()} positions, not {len(PROMPT) + NEW_TOKENS - 1}")
    return tokens, prefill, decode


def decode_workload(assets: Path, steps: int) -> dict:
    """Decode tokens/s (prefill excluded) of the median generation of `steps`, after one warm-up.

    As examples/decode.rs: the generations are sorted by decode time and the one at index
    `steps / 2` is reported (its rate and its prefill), so for an even count the slower of the
    two middle ones.
    """
    model, loader = load(assets)
    model.eval()
    runs = []
    with torch.inference_mode():
        reference, _, _ = _generate(model)  # warm-up
        for _ in range(steps):
            tokens, prefill, decode = _generate(model)
            if tokens != reference:
                raise PeerError("greedy decoding is not deterministic across runs")
            runs.append((decode, prefill))
    decode, prefill = sorted(runs)[len(runs) // 2]
    return {
        "value": (NEW_TOKENS - 1) / decode,
        "unit": "tokens/s",
        "prefill_ms": prefill * 1e3,
        "rates": [(NEW_TOKENS - 1) / d for d, _ in runs],
        "prefills_ms": [p * 1e3 for _, p in runs],
        "prompt_tokens": len(PROMPT),
        "new_tokens": NEW_TOKENS,
        "decode_forwards": NEW_TOKENS - 1,
        "generations": steps,
        "tokens": reference,
        "loader": loader,
        "attn_implementation": model.config._attn_implementation,
    }
