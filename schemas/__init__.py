"""Data contracts of parmflow, importable without torch or Ray.

- ``schemas.config``: the job recipe (pydantic), YAML loading and ``--section.field`` overrides.
- ``schemas.prompts``: prompt sources (JSONL, text, Parquet on any fsspec URI) as a stream of
  ``PromptRecord`` and ``BadRow``.
- ``schemas.tables``: Arrow schemas of the samples, steps, errors and pairs tables.
- ``schemas.errors``: the errors that name the file, line and field of bad input.
"""
