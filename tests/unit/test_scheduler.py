"""The copy loop shared by whole images (pipeline.copy_items) and platforms (platforms.copy_platforms)."""

from __future__ import annotations

import threading

import pytest

from ecr_transfer.model import WorkItem
from ecr_transfer.scheduler import CopyScheduler
from support.fakes import NoManifests


def _items(*names: str) -> list[WorkItem]:
    return [
        WorkItem(source=f"src.example/{n}:1", target=f"dst.example/{n}:1", action="copy", reason="new") for n in names
    ]


def _scheduler(items: list[WorkItem]) -> CopyScheduler[WorkItem, str]:
    return CopyScheduler(NoManifests(), items)  # type: ignore[arg-type]


def test_every_item_runs_once_and_no_more_than_workers_at_a_time() -> None:
    items = _items("a", "b", "c", "d", "e")
    lock = threading.Lock()
    running, most = 0, 0
    ended: list[str] = []

    def work(item: WorkItem) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.02)
        with lock:
            running -= 1
        return item.source

    def finished(item: WorkItem, result: str) -> bool:
        assert result == item.source
        ended.append(result)
        return True

    _scheduler(items).run(work, workers=2, finished=finished, stopped=lambda item: pytest.fail(f"{item} stopped"))
    assert sorted(ended) == sorted(i.source for i in items)
    assert most == 2


def test_a_stop_lets_running_work_end_keeps_its_result_and_reports_the_rest_stopped() -> None:
    items = _items("a", "b", "c")
    stop = threading.Event()
    started = threading.Event()
    finished: list[str] = []
    stopped: list[str] = []

    def work(item: WorkItem) -> str:
        if item.source.endswith("/a:1"):
            assert started.wait(5)
            raise KeyboardInterrupt  # as Ctrl-C would in the waiting thread, once b runs
        started.set()
        assert stop.wait(5), "the running copy is told to stop"
        return "ended after the stop"

    def on_finished(item: WorkItem, result: str) -> bool:
        finished.append(f"{item.source}: {result}")
        return True

    with pytest.raises(KeyboardInterrupt):
        _scheduler(items).run(
            work, workers=2, finished=on_finished, stopped=lambda item: stopped.append(item.source), stop=stop
        )
    assert stop.is_set()
    assert finished == ["src.example/b:1: ended after the stop"]
    assert stopped == ["src.example/a:1", "src.example/c:1"]  # a never ended, c never started


def test_an_error_in_finished_stops_the_loop_and_says_what_did_not_end() -> None:
    items = _items("a", "b", "c")
    stopped: list[str] = []

    def finished(item: WorkItem, result: str) -> bool:
        raise OSError("ledger is gone")

    with pytest.raises(OSError, match="ledger is gone"):
        _scheduler(items).run(
            lambda item: item.source, workers=1, finished=finished, stopped=lambda i: stopped.append(i.source)
        )
    assert stopped == ["src.example/b:1", "src.example/c:1"]
