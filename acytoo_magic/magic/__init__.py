"""magic: ``%%acytoo`` and ``%acytoo``, a front end over core and present.

``magics`` parses a cell and asks; ``subcommands`` holds history, reset, threads, use, export,
explain and chat; ``output`` is the notebook output area one answer updates in place;
``agent_view`` shows an episode's steps and approvals; ``listing`` and ``codeblocks`` are what
``%acytoo history`` and ``-f code`` show. The extension loader (``acytoo_magic``) joins it to the
widget for ``%acytoo chat``; this package does not import ``widget``.
"""
