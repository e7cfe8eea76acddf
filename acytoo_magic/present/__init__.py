"""present: what both front ends draw with, and nothing that draws by itself.

``untrusted`` is the one rendering policy (a reply is untrusted input: Markdown to inert HTML);
``throttle`` turns a stream of chunks into few draws; ``steps`` makes an agent's steps, previews
and captions; ``approval`` is the one Run / Skip / Stop state machine and its view. Front ends
(``magic``, ``widget``) import this and ``core``, never each other.
"""
