"""accelmri benchmarks: one entry point, ``python benchmarks/run.py`` (``make bench``); see docs/performance.md.

Modules: :mod:`benchmarks.common` (process isolation, timing, memory, environment), :mod:`benchmarks.cases`
(reference cases, variants, batches), one module per section (:mod:`~benchmarks.gemm`, :mod:`~benchmarks.flops`,
:mod:`~benchmarks.forward`, :mod:`~benchmarks.training`, :mod:`~benchmarks.pipeline`, :mod:`~benchmarks.scaling`,
:mod:`~benchmarks.fastpath`), :mod:`benchmarks.targets` and :mod:`benchmarks.report` (targets and Markdown).
"""
