"""Typed, readable errors of the ComfyUI layer.

Each failure mode a caller must tell apart has its own class, so the pool can decide by type
whether a failure is the server's fault (retry elsewhere) or the job's own (report it), and the
UI can show `str(error)` as is. `error_from_response` turns an HTTP error body of ComfyUI
(shapes captured in tests/fixtures/comfy/prompt_errors.json) into the matching class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class ComfyError(Exception):
    """Base of every error raised by the comfy client and pool."""


class ComfyConnectionError(ComfyError):
    """The server could not be reached at all (refused, DNS, unreachable)."""


class ComfyDisconnected(ComfyError):
    """The server went away while a prompt was running and its outcome could not be learned."""


class ComfyTimeout(ComfyError):
    """The server accepted the connection but did not answer in time (hung or overloaded)."""


class ComfyProtocolError(ComfyError):
    """The server answered something we must not trust: malformed JSON, missing fields, a hostile
    file name, an oversize image."""


class ComfyServerError(ComfyError):
    """An HTTP error status that is not a prompt validation failure (e.g. 500 text/plain)."""

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ComfyInvalidPrompt(ComfyError):
    """ComfyUI refused the prompt as a whole (`invalid_prompt`, `no_prompt`, `prompt_no_outputs`...)."""

    def __init__(self, message: str, *, error_type: str, details: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.details = details


@dataclass(frozen=True)
class NodeError:
    """One entry of ComfyUI's `node_errors[node_id].errors`, flattened."""

    node_id: str
    class_type: str
    error_type: str
    message: str
    details: str = ""
    input_name: str | None = None
    received_value: Any = None

    def describe(self) -> str:
        """One readable line, e.g. "CheckpointLoaderSimple #4: ckpt_name 'x' not in list"."""
        where = f"{self.class_type} #{self.node_id}"
        if self.error_type == "value_not_in_list":
            return f"{where}: {self.input_name} {self.received_value!r} not in list"
        what = self.message
        if self.details and self.details != self.input_name:
            what = f"{what} ({self.details})"
        subject = f"{self.input_name}: " if self.input_name else ""
        return f"{where}: {subject}{what}"


MODEL_FILE_INPUTS = ("ckpt_name", "lora_name", "unet_name", "clip_name", "clip_name1", "clip_name2", "clip_name3",
                     "vae_name")  # the loaders' inputs that name a model file


def _missing_model(error: NodeError) -> bool:
    return error.error_type == "value_not_in_list" and error.input_name in MODEL_FILE_INPUTS


class ComfyValidationError(ComfyError):
    """`prompt_outputs_failed_validation`: one or more nodes have bad inputs."""

    def __init__(self, node_errors: list[NodeError], *, details: str = "") -> None:
        lines = [e.describe() for e in node_errors] or [details or "prompt failed validation"]
        super().__init__("; ".join(lines))
        self.node_errors = node_errors
        self.details = details

    def missing_models(self) -> set[str]:
        """Model file names (checkpoint, LoRA, split-model files) the server says it does not have
        (its inventory was stale)."""
        return {str(e.received_value) for e in self.node_errors if _missing_model(e)}

    def only_missing_models(self) -> bool:
        """True when every problem is a model missing on this server, i.e. another server with that
        model could run the very same prompt."""
        return bool(self.node_errors) and all(_missing_model(e) for e in self.node_errors)


class ComfyExecutionError(ComfyError):
    """The prompt passed validation but a node raised while running (`execution_error`)."""

    def __init__(
        self,
        *,
        prompt_id: str,
        node_id: str | None,
        node_type: str | None,
        exception_message: str,
        exception_type: str = "",
    ) -> None:
        super().__init__(f"{node_type} #{node_id} failed: {exception_message.strip()}")
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.exception_message = exception_message
        self.exception_type = exception_type


class ComfyInterrupted(ComfyError):
    """The prompt was interrupted (`execution_interrupted`), usually by our own cancel."""

    def __init__(self, prompt_id: str, node_id: str | None = None, node_type: str | None = None) -> None:
        where = f" at {node_type} #{node_id}" if node_type else ""
        super().__init__(f"prompt {prompt_id} was interrupted{where}")
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type


def parse_node_errors(node_errors: dict[str, Any]) -> list[NodeError]:
    """Flatten ComfyUI's `node_errors` mapping into NodeError values, in node order as sent."""
    flat: list[NodeError] = []
    for node_id, entry in node_errors.items():
        class_type = str(entry.get("class_type", "?"))
        for err in entry.get("errors", []):
            extra = err.get("extra_info") or {}
            flat.append(
                NodeError(
                    node_id=str(node_id),
                    class_type=class_type,
                    error_type=str(err.get("type", "")),
                    message=str(err.get("message", "")),
                    details=str(err.get("details", "")),
                    input_name=extra.get("input_name"),
                    received_value=extra.get("received_value"),
                )
            )
    return flat


def error_from_response(status: int, body: str) -> ComfyError:
    """Map a non-2xx HTTP answer of ComfyUI to the most specific error class."""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        text = body.strip().replace("\n\n", ": ") or "<empty body>"
        return ComfyServerError(f"HTTP {status}: {text}", status=status, body=body)
    error_type = str(error.get("type", ""))
    details = str(error.get("details", ""))
    if error_type == "prompt_outputs_failed_validation":
        return ComfyValidationError(parse_node_errors(payload.get("node_errors") or {}), details=details)
    message = str(error.get("message", error_type))
    if details and details != message:
        message = f"{message} ({details})"
    return ComfyInvalidPrompt(message, error_type=error_type, details=details)
