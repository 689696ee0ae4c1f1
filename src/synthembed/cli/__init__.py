"""The `synthembed` command line: thin subcommands that turn arguments into calls of the library.

Each module in this package (not starting with ``_``) defines ``register(subparsers)``, adding one
subcommand whose handler is stored as ``handler`` in the parser defaults. Handlers import heavy
libraries lazily so ``synthembed --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import pkgutil
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from synthembed import __version__
from synthembed.errors import SynthEmbedError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthembed",
        description="Train and refine sentence-embedding models on LLM-synthesized data.",
    )
    parser.add_argument("--version", action="version", version=f"synthembed {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # for messages that print the command that resumes a run
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    previous = _stop_on_sigterm()
    try:
        return int(args.handler(args) or 0)
    except SynthEmbedError as exc:
        print(f"synthembed: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRORS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"synthembed: error: {where}{exc.strerror or exc}; what was written before is kept: free space "
              "(or fix the file system) and run the same command again to resume", file=sys.stderr)
        return 2
    except Terminated:
        print("synthembed: stopped by SIGTERM; what was written is kept: run the same command again to resume",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("synthembed: interrupted; what was written is kept: run the same command again to resume",
              file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # the disk, not a bug: one line, not a traceback


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`), raised like Ctrl-C so that runs flush what they hold and exit cleanly."""


def _stop_on_sigterm() -> Any:
    """Turn SIGTERM into `Terminated` in the main thread; returns the previous handler (None if not set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)
