"""core: the Assistant and everything that does not draw.

A request is built (``request``: what is sent, its preview and cost), passes the outbound boundary
(``outbound``: what a provider may be sent, masked and said on screen), is streamed on the caller's
loop (``stream``, ``loops``) into a ``frames.Renderer`` that a front end supplies, and is recorded
(``history``). ``context`` expands ``{name}`` and In/Out references; ``agent``, ``tools``,
``coderun``, ``readable`` and ``budget`` are agent mode; ``errors`` is the one error family.

Nothing here imports ipywidgets, anywidget or the Markdown renderer (an import contract in
pyproject.toml checks it): a script or a terminal uses core as it is.
"""
