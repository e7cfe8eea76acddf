"""Driving a real ipykernel from tests: execute code, collect every iopub message of that request."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import KernelManager


def is_waiting(plain: str) -> bool:
    """Whether a magic's output (its text/plain) is the waiting line drawn before the first text."""
    return plain.startswith("… contacting")


@dataclass
class Execution:
    status: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    payload: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m["content"] for m in self.messages if m["msg_type"] in types]

    @property
    def stdout(self) -> str:
        return "".join(c["text"] for c in self.of_type("stream") if c["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(c["text"] for c in self.of_type("stream") if c["name"] == "stderr")

    @property
    def shown(self) -> str:
        """What the output area shows as text: printed lines and each display's text/plain, in order."""
        parts = []
        for m in self.messages:
            if m["msg_type"] == "stream":
                parts.append(m["content"]["text"])
            elif m["msg_type"] in ("display_data", "execute_result"):
                parts.append(m["content"]["data"].get("text/plain", "") + "\n")
        return "".join(parts)

    @property
    def saved_outputs(self) -> list[dict[str, Any]]:
        """The outputs a save writes: each display as its last update left it (with its metadata),
        printed text as streams; the display ids themselves are not saved."""
        outputs: list[dict[str, Any]] = []
        shown: dict[str, dict[str, Any]] = {}
        for m in self.messages:
            kind, content = m["msg_type"], m["content"]
            display_id = (content.get("transient") or {}).get("display_id")
            if kind == "stream":
                outputs.append({"output_type": "stream", "name": content["name"], "text": content["text"]})
            elif kind == "display_data":
                output = {"output_type": kind, "data": content["data"], "metadata": content["metadata"]}
                outputs.append(output)
                if display_id:
                    shown[display_id] = output
            elif kind == "update_display_data" and display_id in shown:
                shown[display_id].update(data=content["data"], metadata=content["metadata"])
        return outputs

    @property
    def error(self) -> dict[str, Any] | None:
        errors = self.of_type("error")
        return errors[0] if errors else None

    @property
    def display_updates(self) -> list[dict[str, Any]]:
        return self.of_type("update_display_data")

    @property
    def final_display(self) -> dict[str, Any]:
        """The data the output area shows at the end (the last display or update)."""
        return self.of_type("display_data", "update_display_data")[-1]["data"]


class Kernel:
    def __init__(self, km: KernelManager, kc: Any) -> None:
        self.km = km
        self.kc = kc

    def execute(
        self, code: str, timeout: float = 60, on_message: Any = None, cell_id: str | None = None
    ) -> Execution:
        """Run ``code``; ``cell_id`` sends it as JupyterLab does, with the cell's id in the metadata."""
        if cell_id is None:
            msg_id = self.kc.execute(code)
        else:
            content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                       "allow_stdin": False, "stop_on_error": True}
            msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
            self.kc.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
        result = Execution(status="unknown")
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"]["execution_state"] == "idle":
                    break
                continue
            result.messages.append(msg)
            if on_message is not None:
                on_message(msg)
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        result.status = reply["content"]["status"]
        result.payload = reply["content"].get("payload", [])
        return result

    def execute_interrupted(
        self, code: str, timeout: float = 60, after_interrupt: Callable[[], object] | None = None
    ) -> tuple[Execution, str]:
        """Run ``code`` and interrupt the kernel as soon as the answer shows text, as a user would;
        then call ``after_interrupt`` (release a held stream, say).

        Returns the execution and the text that was showing ("" if no text ever showed).
        """
        shown: list[str] = []

        def interrupt_on_first_text(msg: dict[str, Any]) -> None:
            text = msg["content"].get("data", {}).get("text/plain", "")
            # The first text may create the output area (no waiting line before it) or update it.
            drawn = msg["msg_type"] in ("display_data", "update_display_data")
            streaming = drawn and text and not is_waiting(text)
            if streaming and not shown:
                shown.append(text)
                self.km.interrupt_kernel()
                if after_interrupt is not None:
                    after_interrupt()

        out = self.execute(code, timeout=timeout, on_message=interrupt_on_first_text)
        return out, shown[0] if shown else ""

    def history(self, thread: str = "default") -> list[dict[str, Any]]:
        """The thread as the notebook's Assistant has stored it, as JSON dicts."""
        out = self.execute(
            "import acytoo_magic, json\n"
            "a = acytoo_magic._magics.assistant\n"
            f"print(json.dumps([m.to_json() for m in a.conversation({thread!r}).messages()]))"
        )
        return json.loads(out.stdout)

    def restart(self) -> None:
        self.kc.stop_channels()
        self.km.restart_kernel(now=True)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)


@contextmanager
def kernel(stderr: Any = None, **env: str) -> Iterator[Kernel]:
    """A real kernel with ``env`` added to its environment, stopped on exit; ``stderr``: its log file.

    Over IPC (files in a directory of its own), not TCP: jupyter_client picks five free ports and
    closes them before the kernel binds, and another process can take one in between ("Address
    already in use", seen when two suites ran at once); a socket file cannot be taken that way."""
    extra = {"stderr": stderr} if stderr is not None else {}
    with tempfile.TemporaryDirectory(prefix="acytoo-kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "k"))
        with running(km, env={**os.environ, **env}, **extra) as started:
            yield started


@contextmanager
def running(km: KernelManager, **start: Any) -> Iterator[Kernel]:
    """``km``'s kernel started (``start``: ``start_kernel``'s arguments), ready, and stopped on exit."""
    km.start_kernel(**start)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        yield Kernel(km, kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
