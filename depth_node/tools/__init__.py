"""The tools side: the ``depth-node`` subcommands' command lines and the benchmarks.

Library code (models, backends, pipeline, node) never imports from here; the tools import the
library. ``bag`` and ``evaluate`` are tools too (:mod:`depth_node.bag`,
:mod:`depth_node.evaluate`); see ``doc/architecture.md``.
"""
