"""The ``genstudio`` command's subcommands, one small module each (the parser lives in ``genstudio_async.cli``).

- ``errors``: exit codes and the one-line error report;
- ``console``: stdout/stderr, the rich-or-plain decision, tables;
- ``display``: live progress of one task (``run``, ``demo``) or of a batch;
- ``services``: which service a command talks to (``--service``, ``GENSTUDIO_SERVICE``) and what differs on each;
- ``client``: the client a command talks through, ``AsyncGenStudio`` or ``AsyncGPUGeek`` (key, base URL,
  ``--api-key`` warning);
- ``prompt``: ``--prompt``, ``--set`` and ``--image`` into one checked prompt (overrides, or a whole workflow);
- ``events``: ``--events``, the JSON-lines stream of ``run``, ``batch`` and ``watch`` (its JSON Schema beside it);
- ``run``, ``demo``, ``watch``, ``tasks`` (status, cancel, upload), ``batch`` with ``jobs`` and ``journal``.

Nothing here is public API: use ``genstudio_async.cli.main`` or the ``genstudio`` command.
"""
