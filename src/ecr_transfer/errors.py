"""Error types: configuration problems (exit 2) versus per-image transfer failures."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad configuration or input. Carries every problem found, so users fix them in one go."""

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))


class TransferError(Exception):
    """A failure while planning or copying one image. `transient` decides whether it is retried."""

    transient: bool = False
    status: str = "failed"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(TransferError):
    """Network errors, 5xx, 429: worth another attempt after a backoff."""

    transient = True


class StoppedError(TransientError):
    """skopeo was ended by a stop signal (Ctrl-C, SIGTERM) that its whole process group received.

    The run is being stopped: the image is interrupted, and no new attempt may start. A worker
    can see its skopeo die before the main thread has marked the run as stopping; without this
    class it would start the next attempt, a process the signal never reached.
    """


class PermanentError(TransferError):
    """Unauthorized, not found, invalid: retrying cannot help."""


class ConflictError(PermanentError):
    """The destination tag is immutable and holds a different digest."""

    status = "conflict"
