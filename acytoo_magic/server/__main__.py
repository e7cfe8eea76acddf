"""``python -m acytoo_magic.server``: see ``app.main``."""

from .app import main

main()
