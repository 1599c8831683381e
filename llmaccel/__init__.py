"""The ``llmaccel`` command line: the top layer, which gathers the subcommands each package
contributes (hw, sw, compiler, sim, boards) and the flows that span them (demo, run)."""
