"""history: what was asked and answered, per notebook and thread, in SQLite.

``store`` holds messages (one file, WAL, migrations by ``PRAGMA user_version`` in ``migrations``);
``thread`` is a conversation as a provider is sent it (trimmed to a budget); ``identity`` says
which notebook a kernel runs (its path, else a saved id) so a re-run does not double a thread.
"""
