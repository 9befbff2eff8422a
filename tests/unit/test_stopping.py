"""A skopeo ended by the run's stop signal is the stop, not a fault: interrupted, and no new attempt.

The race this guards: Ctrl-C reaches the CLI and its skopeo children together; a worker sees its
skopeo die before the main thread has marked the run as stopping. It used to classify the death
as transient and start the next attempt (or the batch's per-image resume), a skopeo the signal
never reached, which then hung the stop on a stalled blob. The fake skopeo is a shell script
that kills itself: only the signal matters here, not the copy.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from tests.support.emf import work

from ecr_transfer import envvars, skopeo
from ecr_transfer.copier import Copier
from ecr_transfer.errors import StoppedError, TransientError


def fake_skopeo(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "skopeo"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_skopeo_ended_by_a_stop_signal_is_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    monkeypatch.setenv(envvars.SKOPEO, str(fake_skopeo(tmp_path, f"kill -{sig.name[3:]} $$; sleep 5")))
    request = skopeo.CopyRequest(source="quay.io/a:1", target="example.com/a:1")

    with pytest.raises(StoppedError) as raised:
        skopeo.copy(request)
    assert str(raised.value) == f"skopeo copy was ended by {sig.name}: the run is stopping"


def test_other_deaths_stay_ordinary_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(envvars.SKOPEO, str(fake_skopeo(tmp_path, "kill -SEGV $$")))
    with pytest.raises(TransientError) as raised:
        skopeo.copy(skopeo.CopyRequest(source="quay.io/a:1", target="example.com/a:1"))
    assert not isinstance(raised.value, StoppedError)


def test_the_copier_stops_the_run_when_its_skopeo_was_stopped() -> None:
    stop = threading.Event()
    copier = Copier(None, "r1", stop=stop, slots=1, max_attempts=3, sleep=lambda _: pytest.fail("no backoff"))  # type: ignore[arg-type]
    item = work("team/app:v4")

    outcome = copier.resume(item, StoppedError("skopeo sync was ended by SIGINT: the run is stopping"), "t0")

    assert stop.is_set(), "the other workers must not start a copy either"
    assert outcome.status == "interrupted"
    assert outcome.attempts == 1
    assert outcome.error == (
        "the run was stopped while this image was being copied (skopeo sync was ended by SIGINT: "
        "the run is stopping); the next run re-plans it"
    )
