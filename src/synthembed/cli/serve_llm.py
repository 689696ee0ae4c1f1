"""`synthembed serve-llm MODEL`: serve a GGUF model with llama.cpp's OpenAI-compatible server, on loopback.

For users with no LLM server of their own: prints the exact ``python -m llama_cpp.server ...`` command
it runs and the ``--backend openai --base-url ... --model ...`` flags that reach it, waits until the
server answers, and runs until Ctrl-C. The chat template is the GGUF's own.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve-llm",
        help="serve a GGUF model (default: the packaged SmolLM2) with llama.cpp's OpenAI-compatible server",
        description=__doc__.splitlines()[0] + " Needs the extra llamacpp (llama-cpp-python[server]).",
    )
    parser.add_argument("model", nargs="?", default="embedded-llm",
                        help="'embedded-llm' (the packaged SmolLM2-135M-Instruct, default) or a .gguf file")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000, the --base-url default; 0 = any free port)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context length in tokens, prompt + answer")
    parser.add_argument("--threads", default="auto",
                        help="CPU threads: a number, 'default' (llama.cpp's), or 'auto' = 1 when the machine is oversubscribed")
    parser.add_argument("--alias", default=None, help="model name to pass as --model (default: 'embedded-llm' or the file's stem)")
    parser.add_argument("--print-only", action="store_true", help="print the command and flags, start nothing")
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for the server to answer")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthembed.llm.llamacpp_server import LlamaServer

    if not 0 <= args.port <= 65535:
        from synthembed.errors import SynthEmbedError

        raise SynthEmbedError(f"--port must be in 0..65535, got {args.port}")
    server = LlamaServer(args.model, host=args.host, port=args.port, n_ctx=args.n_ctx, threads=args.threads,
                         alias=args.alias)
    print(f"command:  {server.command_line()}")
    print(f"base URL: {server.base_url}")
    print(f"use it:   synthembed synthesize ... --backend openai --base-url {server.base_url} --model {server.alias}")
    sys.stdout.flush()
    if args.print_only:
        return 0
    try:
        server.start(timeout=args.ready_timeout)
        print(f"ready:    {server.base_url} (pid {server.process.pid}); Ctrl-C stops it", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        server.stop()
        print("stopped", file=sys.stderr)
        return 0
    finally:
        server.stop()
