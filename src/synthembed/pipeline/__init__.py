"""`synthembed run CONFIG.yaml`: one file describes a whole experiment as a list of stages.

Each stage is one SynthEmbed subcommand (``synthesize syncse``, ``train``, ``refine``, ``evaluate`` …) with
its flags written as YAML keys, so the config reads like the CLI reference and every stage can be re-run
by hand with the command line the plan prints. Stages exchange files: ``{stage:NAME}`` in a value is the
output of stage NAME, which also makes NAME a dependency.
"""
