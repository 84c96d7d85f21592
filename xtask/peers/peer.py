#!/usr/bin/env python3
"""The PyTorch peer of `cargo xtask bench --peer-python PATH`: runs one workload the way splitlm
runs it, with torch + transformers + peft, and prints one JSON line.

    PYTHON xtask/peers/peer.py --workload W --threads N [--steps K] [--assets DIR]

Workloads (same shapes, weights, initial values and optimizer settings as ours; see the
docstrings of minilm.py, smollm2.py and main_job.py for the details and every known difference):

  minilm_step_16x64_full, minilm_step_32x128_full   one full fine-tuning step, ms/step
  minilm_step_16x64_lora, minilm_step_32x128_lora   one LoRA step (r4, α32, query/value), ms/step
  smollm2_step_8x128_lora                           one causal-LM LoRA step (q_proj/v_proj), ms/step
  smollm2_decode_32+64                              greedy KV-cache decoding, tokens/s (+ prefill_ms)
  main_job                                          configs/sentiment.toml end to end, training s

Step workloads time `--steps` steps after one warm-up step and report the median as ours does
(`sorted[len / 2]`); the decode workload runs one warm-up generation and `--steps` timed ones
and reports the one with the median decode time, as examples/decode.rs. main_job runs once
(`--steps` is ignored).

The LAST line of stdout is the result:
  {"workload", "impl": "pytorch", "value", "unit", "peak_rss_mib", "threads", "versions", ...}
Everything else (library messages included) goes to stderr. Errors exit with status 1 and a
one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

WORKLOADS = [
    "minilm_step_16x64_full",
    "minilm_step_32x128_full",
    "minilm_step_16x64_lora",
    "minilm_step_32x128_lora",
    "smollm2_step_8x128_lora",
    "smollm2_decode_32+64",
    "main_job",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", required=True, choices=WORKLOADS)
    parser.add_argument("--threads", required=True, type=int, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up (default 5)")
    parser.add_argument(
        "--assets",
        type=Path,
        default=None,
        help="the asset cache (default: $SPLITLM_ASSETS_DIR, else ~/.cache/splitlm/assets)",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def limit_threads(threads: int) -> None:
    """Thread counts for every runtime torch may load; must run before torch is imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(threads)
    # Offline: every model and tokenizer comes from the asset cache.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def run_workload(name: str, assets: Path, steps: int) -> dict:
    if name.startswith("minilm_step_"):
        import minilm

        shape, strategy = name.removeprefix("minilm_step_").split("_")
        batch, seq = (int(x) for x in shape.split("x"))
        return minilm.step_workload(assets, batch, seq, strategy, steps)
    if name == "smollm2_step_8x128_lora":
        import smollm2

        return smollm2.step_workload(assets, 8, 128, steps)
    if name == "smollm2_decode_32+64":
        import smollm2

        return smollm2.decode_workload(assets, steps)
    if name == "main_job":
        import main_job

        return main_job.run(assets)
    raise AssertionError(name)


def versions() -> dict:
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def other_versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for package in ("tokenizers", "gguf", "numpy", "safetensors"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def peak_rss_mib() -> float:
    import resource

    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    limit_threads(args.threads)
    # Keep stdout for the result line only: anything written to fd 1 from here on (Python or
    # native code) lands on stderr.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import PeerError, default_assets_dir

    try:
        import torch

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
        torch.manual_seed(0)
        assets = args.assets or default_assets_dir()
        started = time.perf_counter()
        print(f"peer: {args.workload}, {args.threads} threads, assets {assets}", file=sys.stderr)
        extra = run_workload(args.workload, assets, args.steps)
        result = {
            "workload": args.workload,
            "impl": "pytorch",
            "value": extra.pop("value"),
            "unit": extra.pop("unit"),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "threads": args.threads,
            "versions": versions(),
            "versions_other": other_versions(),
            "steps": args.steps,
            "process_s": round(time.perf_counter() - started, 3),
            **extra,
        }
    except PeerError as error:
        print(f"peer.py: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - report and fail
        traceback.print_exc()
        print(f"peer.py: error: {args.workload} failed: {error!r}", file=sys.stderr)
        return 1
    with os.fdopen(result_fd, "w") as out:
        out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
