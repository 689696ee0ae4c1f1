"""The versions of the libraries that can change a result, recorded with every output.

``python -m synthembed.env`` prints them (the test command does, so CI logs say what was tested).
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

RESULT_LIBRARIES = (
    "synthembed",
    "sentence-transformers",
    "transformers",
    "torch",
    "accelerate",
    "datasets",
    "numpy",
    "peft",
    "mteb",
    "llama-cpp-python",
)


def library_versions() -> dict[str, str]:
    """Python's and each installed result library's version (libraries not installed are left out)."""
    out = {"python": platform.python_version()}
    for package in RESULT_LIBRARIES:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


if __name__ == "__main__":
    print("versions: " + ", ".join(f"{name} {value}" for name, value in library_versions().items()))
