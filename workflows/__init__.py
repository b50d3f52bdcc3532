"""The driver side of parmflow: entry points at the top (``label.py``, ``pairs.py``), their wings below.

- ``search/``: the strategies, written against the two clients;
- ``serving/``: calling models: batching, the clients, Ray replicas, image handles, backends;
- ``output/``: what a run writes and reads back: rows, the sink, the shard writer, commit
  records, the readers, the run record;
- ``driver/``: the label loop, its progress report and the failures that stop a run.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The tree holding ``schemas``, ``actors`` and ``workflows``: what a local Ray's workers must be
able to import, and the checkout whose version a run records."""
