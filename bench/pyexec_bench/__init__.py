"""The pyexec benchmark harness, split by responsibility; ``bench/run.py`` drives it.

Layout (data flows one way: ``run.py`` -> the measurements -> ``common``):

- ``common``: paths, the scripts under test and their expected results,
  logging and percentile summaries; imports nothing of this package.
- ``proc_accounting``: CPU time and memory (PSS) of the service's process
  tree, read from /proc.
- ``service``: starting and stopping the pyexec binary, its /metrics.
- ``http_latency``: sequential requests over one keep-alive connection.
- ``http_throughput``: closed-loop client processes and k6 arrival-rate steps.
- ``cold_spawn``: the per-request nsjail + fresh Python design.
- ``floor``: ``main()`` in a warm interpreter without isolation.
- ``report``: machine description, target verdicts and the markdown table.

Standard library only; nothing here parses arguments or writes result files.
"""
