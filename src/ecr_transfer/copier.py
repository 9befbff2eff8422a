"""Copy one planned image: skopeo with retries and backoff, then verify the digest landed."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial

from ecr_transfer import envvars, subsets
from ecr_transfer.context import TransferContext
from ecr_transfer.errors import ConflictError, PermanentError, StoppedError, TransferError, TransientError
from ecr_transfer.model import Outcome, WorkItem, now
from ecr_transfer.platforms import copy_platforms, platform_copies, platforms
from ecr_transfer.processes import remove_stale_tempdirs
from ecr_transfer.references import DOCKER_HUB, ImageRef, parse_reference
from ecr_transfer.referrers import REFERRER_REASON, is_referrer_tag
from ecr_transfer.registry.credentials import Credential, temporary_authfile
from ecr_transfer.registry.exact import copy_exact
from ecr_transfer.skopeo import CopyRequest
from ecr_transfer.skopeo import copy as skopeo_copy
from ecr_transfer.subsets import Subset

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF = 2.0
MAX_BACKOFF = 120.0


def _backoff(attempt: int, base: float, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(MAX_BACKOFF, retry_after)
    # Full jitter: parallel workers that failed together must not retry together.
    return float(min(MAX_BACKOFF, base * (2 ** (attempt - 1)))) * (0.5 + random.random() / 2)


class _AlreadyThere(Exception):
    """An immutable destination tag already holds the source digest: nothing to copy."""


class Copier:
    """Copies work items for one run; shared by the CLI's worker pool and the Fargate task."""

    def __init__(
        self,
        context: TransferContext,
        run_id: str,
        *,
        max_attempts: int | None = None,
        backoff: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
        slots: int | None = None,
        demand: Mapping[str, int] | None = None,
    ) -> None:
        self.context = context
        self.run_id = run_id
        self.max_attempts = max_attempts or int(os.environ.get(envvars.MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS))
        self.backoff = backoff if backoff is not None else float(os.environ.get(envvars.BACKOFF_BASE, DEFAULT_BACKOFF))
        self._sleep = sleep
        self._stop = stop
        """Set when the run is being stopped (Ctrl-C, SIGTERM): no new attempt starts after that."""
        # Every skopeo process takes a slot: platforms copied side by side never push the run
        # past its concurrency, and a waiting image holds no slot, so nothing can deadlock.
        self._slots = threading.BoundedSemaphore(max(1, slots or context.settings.concurrency))
        self._platform_copies = platform_copies()
        self._demand = demand
        """Shared blob -> bytes of the run's images needing it (the run's blob schedule), to order platforms."""
        for stale in remove_stale_tempdirs():
            log.warning("removed %s, left behind by a process that was killed", stale)

    def authfile_entries(self, *registries: str) -> dict[str, Credential]:
        """The logins skopeo needs for these registries (and the endpoints they are reached at)."""
        entries: dict[str, Credential] = {}
        for registry in registries:
            cred = self.context.credentials(registry)
            if cred is not None:
                entries[registry] = cred
                # skopeo looks credentials up by the rewritten location too.
                endpoint = self.context.settings.registry_endpoints.get(registry)
                if endpoint:
                    entries[endpoint.split("://", 1)[-1].rstrip("/")] = cred
        return entries

    def _attempt(self, item: WorkItem) -> tuple[str, str]:
        """One try; returns (source digest copied, digest now at the destination)."""
        src = parse_reference(item.source)
        dst = parse_reference(item.target)
        expected = item.source_digest
        if expected is None:
            found = self.context.source.digests([src])[0]
            if isinstance(found, TransferError):
                raise found
            if found is None:
                raise PermanentError("not found at the source (manifest unknown)")  # the source is named beside it
            expected = found
        self.context.prepare_repository(dst.repository)
        self.context.before_copy(src, dst)
        all_platforms = self.context.settings.include_untagged
        # A signature, SBOM or referrers index: its exact bytes through the registry API, never skopeo.
        exact = is_referrer_tag(dst.tag) or item.reason.startswith(REFERRER_REASON)
        subset = None if exact else self._subset(src, dst, expected) or self._kept_exactly(src, expected)
        target, push_host = self.context.push_target(item.target, dst.registry)
        with temporary_authfile(self.authfile_entries(src.registry, dst.registry)) as authfile:
            request = partial(
                CopyRequest,
                src_insecure=self.context.is_insecure(src.registry),
                dest_insecure=self.context.is_insecure(dst.registry) or self.context.is_insecure(push_host),
                src_cert_dir=self.context.cert_dir(src.registry),
                dest_cert_dir=self.context.cert_dir(dst.registry, push_host),
                drop_env=(envvars.SSL_CERT_FILE,) if self.context.trust.replaces_env else (),
                authfile=authfile,
                registries_conf=self.context.registries_conf,
            )
            try:
                children = self._platforms(src, expected) if all_platforms and subset is None and not exact else None
                if exact:
                    written = copy_exact(
                        self.context.clients.get(src.registry),
                        self.context.clients.get(dst.registry),
                        src.repository,
                        dst.repository,
                        expected,
                        dst.tag,
                    )
                elif subset is not None:
                    written = self._copy_subset(src, dst, expected, target, subset, request)
                elif children:
                    written = self._copy_index(src, expected, target, children, request)
                else:
                    # skopeo rejects tag+digest references; the pinned digest is what counts.
                    source = f"{src.registry}/{src.repository}@{src.digest}" if src.digest else item.source
                    written = self._skopeo(request(source, target, all_platforms=all_platforms))
            except ConflictError:
                # ECR refuses to re-push an immutable tag even with the same digest: that is done, not a conflict.
                wanted = subset.digest if subset is not None else expected
                if self.context.destination.digests([dst])[0] == wanted:
                    raise _AlreadyThere(wanted) from None
                raise
        landed = self.context.destination.digests([dst])[0]
        if isinstance(landed, TransferError):
            raise TransientError(f"copied, but verifying the destination failed: {landed}")
        if landed != written:
            raise TransientError(
                f"digest mismatch after copy: destination {item.target} has {landed}, skopeo wrote {written}"
            )
        if subset is not None:
            # A new index on purpose: the ledger pairs the source index digest with the one written.
            return expected, landed
        if written != expected and self.context.settings.include_untagged:
            # With --all the copy is byte for byte, so a new digest means the source tag moved
            # during the run, or the manifest changed in transit. Only the first is a copy.
            now_at_source = self.context.source.digests([src])[0]
            rewrite = self._rewritten(src, expected) if now_at_source == expected else None
            if rewrite is not None:
                # The source did not move and skopeo changes such bytes on every run: retrying cannot help.
                raise PermanentError(
                    f"digest mismatch after copy: skopeo wrote {written} for {expected}: {rewrite}; not retried"
                )
            if now_at_source != written:
                raise TransientError(
                    f"digest mismatch after copy: copied {written} to {item.target}, but the source has {now_at_source}"
                )
        if not self.context.settings.include_untagged:
            # One platform of an index was copied on purpose: the ledger keeps the index digest it
            # came from next to the platform digest that landed, so the next plan can tell that
            # this destination is up to date (planner, `previous`).
            return expected, landed
        return written, landed

    def _skopeo(self, request: CopyRequest) -> str:
        if self._stopping():
            raise TransientError("the run is stopping: no new copy starts")
        with self._slots:
            return skopeo_copy(request)

    def _platforms(self, src: ImageRef, digest: str) -> list[str] | None:
        """The platforms to copy side by side when the source is a multi-arch index, else None."""
        if self._platform_copies < 2 or src.registry == DOCKER_HUB:
            # Docker Hub counts every manifest GET as a pull: reading the index first costs one.
            return None
        try:
            body = self.context.clients.get(src.registry).get_manifest(src.repository, digest)
        except TransferError as exc:
            log.debug("%s/%s@%s: index not read (%s); copied in one skopeo", src.registry, src.repository, digest, exc)
            return None
        return platforms(body) if body is not None else None

    def _subset(self, src: ImageRef, dst: ImageRef, digest: str) -> Subset | None:
        """The children `platforms` names when the source is an index holding others too, else None."""
        wanted = self.context.settings.platforms
        if not wanted:
            return None
        if not dst.tag:
            # A digest-pinned image is that digest: a subset index would have another one.
            log.info("%s/%s@%s: pinned by digest; copied with every platform", src.registry, src.repository, digest)
            return None
        # On Docker Hub this GET counts as a pull: choosing platforms needs the index itself.
        body = self.context.clients.get(src.registry).get_manifest(src.repository, digest)
        if body is None:
            return None
        subset = subsets.select(body, wanted, what=f"{src.registry}/{src.repository}@{digest}")
        return None if subset is None or subset.whole else subset

    def _rewritten(self, src: ImageRef, digest: str) -> str | None:
        """Why skopeo 1.9.3 cannot copy this source manifest byte for byte, or None (then the bytes
        changed in transit, and another attempt may do better). Read only after a mismatch."""
        try:
            body = self.context.clients.get(src.registry).get_manifest(src.repository, digest)
            doc = json.loads(body) if body else {}
        except (TransferError, ValueError):
            return None
        if isinstance(doc, dict) and doc.get("schemaVersion") == 1:
            return "skopeo re-signs a schema 1 manifest pushed under another repository name"
        if body and subsets.kept_exactly(body) is not None:
            return "skopeo drops artifactType from the descriptors of this index"
        return None

    def _kept_exactly(self, src: ImageRef, digest: str) -> Subset | None:
        """An index skopeo would rewrite, to be written as it is (subsets.kept_exactly), else None."""
        if not self.context.settings.include_untagged or src.registry == DOCKER_HUB:
            # Docker Hub: reading the index costs a pull; if skopeo rewrites it, the check after
            # the copy says so once, as a permanent failure.
            return None
        try:
            body = self.context.clients.get(src.registry).get_manifest(src.repository, digest)
        except TransferError:
            return None  # skopeo's own copy reports what is wrong
        return subsets.kept_exactly(body) if body is not None else None

    def _copy_subset(
        self,
        src: ImageRef,
        dst: ImageRef,
        digest: str,
        target: str,
        subset: Subset,
        request: Callable[..., CopyRequest],
    ) -> str:
        """The chosen children by digest (skopeo, byte for byte), then the narrowed index PUT by tag."""
        images = [c for c in subset.children if c not in subset.artifacts]
        self._copy_children(src, digest, target, images, request, max(1, self._platform_copies))
        for child in subset.artifacts:
            source, destination = self.context.clients.get(src.registry), self.context.clients.get(dst.registry)
            if destination.head_manifest(dst.repository, child) is None:
                copy_exact(source, destination, src.repository, dst.repository, child)
        if self._stopping():
            raise TransientError("the run is stopping: the index is not written")
        self.context.before_copy(src, dst)
        client = self.context.clients.get(dst.registry)
        return client.put_manifest(dst.repository, dst.tag or "", subset.body, subset.media_type)

    def _copy_index(
        self, src: ImageRef, digest: str, target: str, children: list[str], request: Callable[..., CopyRequest]
    ) -> str:
        """Every platform by digest at once, then the index read from the same digest."""
        self._copy_children(src, digest, target, children, request, self._platform_copies)
        return self._skopeo(request(f"{src.registry}/{src.repository}@{digest}", target, index_only=True))

    def _copy_children(
        self,
        src: ImageRef,
        digest: str,
        target: str,
        children: list[str],
        request: Callable[..., CopyRequest],
        parallel: int,
    ) -> None:
        """Each child manifest of the index `digest` by digest, `parallel` skopeo processes at once."""
        dst = parse_reference(target)
        units = [
            WorkItem(
                source=f"{src.registry}/{src.repository}@{child}",
                target=f"{dst.registry}/{dst.repository}@{child}",
                action="copy",
                reason=f"platform of {src.registry}/{src.repository}@{digest}",
                source_digest=child,
            )
            for child in children
        ]

        def one(unit: WorkItem) -> None:
            written = self._skopeo(request(unit.source, unit.target, all_platforms=False))
            if written != unit.source_digest:
                raise TransientError(f"digest mismatch after copy: platform {unit.source_digest} arrived as {written}")

        copy_platforms(self.context.clients, units, one, parallel, self._demand)

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    stopping = property(_stopping, doc="The run is being stopped: no new attempt starts.")

    @property
    def slots(self) -> threading.BoundedSemaphore:
        """Held by every skopeo process of the run (a batch's `skopeo sync` too): at most `slots` at once."""
        return self._slots

    def _interrupted(self, item: WorkItem, started: str, attempts: int, exc: TransferError) -> Outcome:
        # Ctrl-C also kills skopeo (same process group): that failure is the stop, not a fault to retry.
        log.warning("%s: stopped during attempt %d (%s)", item.source, attempts, exc)
        return item.ended(
            self.run_id,
            "interrupted",
            attempts=attempts,
            started_at=started,
            error=f"the run was stopped while this image was being copied ({exc}); the next run re-plans it",
        )

    def copy(self, item: WorkItem, on_retry: Callable[[WorkItem, int, TransferError], None] | None = None) -> Outcome:
        if item.error is not None:
            log.error("%s: failed: %s", item.source, item.error)
            return item.failed(self.run_id, item.error)
        return self._attempts(item, now(), 0, None, on_retry)

    def resume(self, item: WorkItem, failure: TransferError, started: str, attempts: int = 1) -> Outcome:
        """Go on after `attempts` tries made elsewhere (a batch) failed with `failure`: the
        same retry rules, backoff and attempt count as if this copier had made them."""
        return self._attempts(item, started, attempts, failure, None)

    def _attempts(
        self,
        item: WorkItem,
        started: str,
        attempts: int,
        failure: TransferError | None,
        on_retry: Callable[[WorkItem, int, TransferError], None] | None,
    ) -> Outcome:
        while True:
            if failure is not None:
                ended = self._after_failure(item, started, attempts, failure, on_retry)
                if ended is not None:
                    return ended
            attempts += 1
            try:
                written, landed = self._attempt(item)
            except _AlreadyThere as there:
                return self._already_there(item, str(there.args[0]), attempts, started)
            except TransferError as exc:
                failure = exc
                continue
            log.info("%s: copied %s to %s (attempt %d)", item.source, written, item.target, attempts)
            reason = item.reason
            platforms = self.context.settings.platforms
            if platforms and landed != written:
                # The planner reads this back (with the digests) to know the index is still what was asked.
                reason = f"{reason}; {subsets.signature(platforms)} written as a new index"
            elif platforms and not (item.reason or "").startswith(REFERRER_REASON):
                # Read back too: a later run must not copy it again to narrow it.
                reason = f"{reason}; {subsets.signature(platforms)}: every platform wanted, copied as it is"
            elif item.source_digest and written != item.source_digest and self.context.settings.include_untagged:
                reason = f"{reason}; source changed during the run (planned {item.source_digest})"
            return item.copied(
                self.run_id, written=written, landed=landed, attempts=attempts, started_at=started, reason=reason
            )

    def _after_failure(
        self,
        item: WorkItem,
        started: str,
        attempts: int,
        exc: TransferError,
        on_retry: Callable[[WorkItem, int, TransferError], None] | None,
    ) -> Outcome | None:
        """The final outcome after this failure, or None once the backoff before another attempt is slept."""
        if isinstance(exc, StoppedError):
            if self._stop is not None:
                self._stop.set()  # before the main thread does: no other worker starts a copy either
            return self._interrupted(item, started, attempts, exc)
        if not exc.transient or attempts >= self.max_attempts:
            log.error("%s: %s after %d attempt(s): %s", item.source, exc.status, attempts, exc)
            suffix = "" if not exc.transient else f" (gave up after {attempts} attempts)"
            return item.ended(
                self.run_id,
                exc.status,  # type: ignore[arg-type]
                attempts=attempts,
                started_at=started,
                error=f"{exc}{suffix}",
            )
        if self._stopping():
            return self._interrupted(item, started, attempts, exc)
        if on_retry is not None:
            on_retry(item, attempts, exc)
        delay = _backoff(attempts, self.backoff, exc.retry_after)
        log.warning("%s: attempt %d failed (%s); retrying in %.1fs", item.source, attempts, exc, delay)
        self._sleep(delay)
        if self._stopping():
            return self._interrupted(item, started, attempts, exc)
        return None

    def _already_there(self, item: WorkItem, held: str, attempts: int, started: str) -> Outcome:
        log.info("%s: immutable tag %s already holds this digest", item.source, item.target)
        reason = f"{item.reason}; the immutable destination tag already holds this digest"
        if held != item.source_digest and self.context.settings.platforms:
            reason += f"; {subsets.signature(self.context.settings.platforms)} written as a new index"
        elif self.context.settings.platforms:
            reason += f"; {subsets.signature(self.context.settings.platforms)}: the tag keeps the whole image"
        skipped = item.ended(self.run_id, "skipped", attempts=attempts, started_at=started)
        return replace(skipped, target_digest=held, reason=reason)
