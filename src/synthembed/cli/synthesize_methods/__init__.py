"""Method subcommands of `synthembed synthesize`.

Each module here (name not starting with ``_``) defines ``register(method_subparsers)`` that adds one
method (``syncse``, ``chains``, ``graded`` ...) with ``set_defaults(handler=...)``; the argument
helpers to reuse are in `synthembed.cli.synthesize`.
"""
