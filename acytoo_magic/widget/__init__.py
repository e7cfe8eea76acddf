from .chat import ChatWidget

__all__ = ["ChatWidget"]
