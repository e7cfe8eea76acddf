"""widget: the chat, a front end over core and present (anywidget, files in ``static/``).

``chat`` is the ChatWidget (input, transcript, Stop, the error area); ``transcript`` and
``chatinput`` are its two anywidgets; ``entries`` makes each message's HTML through the one
rendering policy; ``saved_copy`` is the static copy a saved or exported notebook shows;
``agent_view`` shows an episode in the transcript. It does not import ``magic``.
"""

from .chat import ChatWidget

__all__ = ["ChatWidget"]
