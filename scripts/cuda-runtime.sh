#!/usr/bin/env bash
# Prepares what a `--features cuda` build of splitlm loads at run time besides the NVIDIA
# driver, from NVIDIA's PyPI wheels, with no CUDA toolkit: carry the directory to the GPU
# machine (or run this there) and point the environment at it.
#
#   DIR/lib/libnvrtc.so.12, libnvrtc-builtins.so.12.N   NVRTC, which compiles every kernel
#   DIR/include/                                        CUDA headers: cuda_fp16.h, mma.h, ...
#                                                       (runtime wheel), crt/ (nvcc wheel, its
#                                                       headers only) and CCCL (cuda/barrier)
#
# Usage: scripts/cuda-runtime.sh [DIR] [CUDA_RELEASE]
#   DIR           default: cuda-runtime (created; refilled if present)
#   CUDA_RELEASE  default: 12.8. The wheels' CUDA release, at most the driver's CUDA version
#                 (`nvidia-smi` prints it) and at least 12.8, the release splitlm-device pins
#                 cudarc to: NVRTC writes PTX for its own release, which an older driver refuses,
#                 and the kernels assume 12.8's headers.
#   PIP           default: pip3 (or pip). Needs PyPI, nothing else; not needed on the GPU machine.
#
# Then, on the GPU machine:
#   export CUDA_PATH=DIR LD_LIBRARY_PATH=DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
#   splitlm ... --device cuda
#
# The last step compiles a kernel that includes every header cubecl's CUDA dialect can ask for,
# with NVRTC and the options cubecl passes, so a broken directory shows here rather than at the
# first kernel on the GPU machine. That needs no GPU (skip it with CUDA_RUNTIME_CHECK=0).
set -euo pipefail

dir="${1:-cuda-runtime}"
release="${2:-12.8}"
pip="${PIP:-$(command -v pip3 || command -v pip || true)}"
[[ -n "$pip" ]] || { echo "cuda-runtime: no pip (set PIP)" >&2; exit 1; }
[[ "$release" =~ ^12\.([0-9]+)$ ]] && (( BASH_REMATCH[1] >= 8 )) || {
    echo "cuda-runtime: CUDA_RELEASE is 12.8 or newer 12.N (the -cu12 wheels), got '$release'" >&2
    exit 1
}
arch="$(uname -m)"

wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
# --platform/--python-version: the wheels for the target machine, whatever Python runs here.
"$pip" download --quiet --no-deps --only-binary=:all: -d "$wheels" \
    --platform "manylinux2014_$arch" --platform "manylinux_2_28_$arch" --python-version 3.11 \
    "nvidia-cuda-nvrtc-cu12==$release.*" \
    "nvidia-cuda-runtime-cu12==$release.*" \
    "nvidia-cuda-cccl-cu12==$release.*" \
    "nvidia-cuda-nvcc-cu12==$release.*"

rm -rf "$dir/lib" "$dir/include"
mkdir -p "$dir/lib" "$dir/include"
# One include directory laid out as a CUDA 12 toolkit's (runtime headers, crt/, CCCL side by
# side), and NVRTC's libraries; nothing else (no ptxas, libnvvm, libcudart, CMake files).
python3 - "$wheels" "$dir" <<'PY'
import pathlib, shutil, sys, zipfile
wheels, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for wheel in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            parts = name.split("/")
            # nvidia/<component>/{include,lib}/...
            if len(parts) < 4 or parts[0] != "nvidia" or parts[2] not in ("include", "lib"):
                continue
            rel = pathlib.Path(*parts[2:])
            if name.endswith("/") or rel.name == "__init__.py":
                continue
            # lib/: libnvrtc.so.12 and libnvrtc-builtins.so.12.N only (not the .alt builds).
            if parts[2] == "lib" and (not rel.name.startswith("libnvrtc") or ".alt." in rel.name):
                continue
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
# cudarc looks for libnvrtc.so first, then libnvrtc.so.12; NVRTC loads its builtins by name.
ln -sf libnvrtc.so.12 "$dir/lib/libnvrtc.so"
ls "$dir"/lib/libnvrtc.so.12 "$dir"/lib/libnvrtc-builtins.so.* "$dir/include/cuda_fp16.h" \
    "$dir/include/cuda/barrier" >/dev/null

if [[ "${CUDA_RUNTIME_CHECK:-1}" != 0 ]]; then
    LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" python3 - "$dir" <<'PY'
import ctypes, pathlib, sys
root = pathlib.Path(sys.argv[1]).resolve()
nvrtc = ctypes.CDLL(str(root / "lib" / "libnvrtc.so.12"))
major, minor = ctypes.c_int(), ctypes.c_int()
nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
# Every header cubecl-cpp 0.11's CUDA dialect includes (cuda/ty.rs, mma, tma, builtins).
source = b"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_fp6.h>
#include <cuda_fp4.h>
#include <mma.h>
#include <cuComplex.h>
#include <cooperative_groups.h>
#include <cooperative_groups/memcpy_async.h>
#include <cuda/barrier>
extern "C" __global__ void probe(__half* x, __nv_bfloat16* y, float* z) {
    __shared__ cuda::barrier<cuda::thread_scope_block> bar;
    x[threadIdx.x] = htanh(x[threadIdx.x]);
    y[threadIdx.x] = __float2bfloat16(z[threadIdx.x]);
}
"""
prog = ctypes.c_void_p()
assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source, b"probe.cu", 0, None, None) == 0
# The options cubecl-cuda 0.11 passes (compute/context.rs), for an H100/H200 (sm_90a).
opts = [b"--gpu-architecture=sm_90a", b"--include-path=" + bytes(root / "include"), b"-lineinfo"]
result = nvrtc.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
size = ctypes.c_size_t()
nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
log = ctypes.create_string_buffer(size.value)
nvrtc.nvrtcGetProgramLog(prog, log)
if result != 0:
    sys.exit(f"cuda-runtime: NVRTC {major.value}.{minor.value} failed:\n{log.value.decode()}")
nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size))
print(f"cuda-runtime: NVRTC {major.value}.{minor.value} compiled the header check "
      f"({size.value} bytes of PTX)")
PY
fi

echo "cuda-runtime: ready in $dir. On the GPU machine:"
echo "  export CUDA_PATH=$(cd "$dir" && pwd) LD_LIBRARY_PATH=$(cd "$dir" && pwd)/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
