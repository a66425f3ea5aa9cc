"""Service errors, each mapped to one HTTP status so REST and UI report the same thing."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: `str(error)` is the readable message shown to the user."""

    status_code = 400


class InvalidRequest(ServiceError):
    """Bad input (422): nothing was written."""

    status_code = 422


class NotFound(ServiceError):
    """Unknown id — or another user's, which must look the same (404, never 403)."""

    status_code = 404


class NoServerOnline(ServiceError):
    """No ComfyUI server can take work right now (503)."""

    status_code = 503


class Gone(ServiceError):
    """The image is known but its file was removed by the retention policy (410)."""

    status_code = 410
