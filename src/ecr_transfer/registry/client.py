"""A small distribution-API client: manifest HEAD for digests and paginated tag lists.

Only what planning needs, plus one write skopeo cannot do (an index of a platform subset):
skopeo moves the bytes. HEAD, never GET, for digests: Docker Hub
counts manifest GETs against its pull rate limit but not HEADs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin

from ecr_transfer.errors import ConflictError, PermanentError, TransferError, TransientError
from ecr_transfer.references import DOCKER_HUB
from ecr_transfer.registry.credentials import Credential
from ecr_transfer.registry.http import HTTPError, Pool, Response, insecure_context
from ecr_transfer.registry.mediatypes import ACCEPT
from ecr_transfer.registry.trust import Trust, trust_hint

log = logging.getLogger(__name__)

API_HOSTS = {DOCKER_HUB: "registry-1.docker.io"}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_LINK_NEXT = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")
TAG_PAGE_SIZE = 1000
"""ECR rejects tag-list pages larger than 1000."""

RateLimitHook = Callable[[str, Mapping[str, str]], None]
CredentialLookup = Callable[[str], Credential | None]
"""Registry host -> its credential now (ECR tokens are refreshed behind this)."""


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    digest: str
    media_type: str | None
    size: int | None


NO_CREDENTIALS = (
    "no login found for it (looked in REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json and "
    "~/.docker/config.json with its credHelpers/credsStore); log in with docker/podman login, or set "
    "srcCredential/destCredential"
)


def tls_failure(what: str, host: str, exc: Exception) -> PermanentError | None:
    """A TLS failure that every retry would repeat: an untrusted certificate, or plain HTTP spoken back."""
    reason = getattr(exc, "reason", None) or exc
    while not isinstance(reason, ssl.SSLError) and getattr(reason, "__context__", None) is not None:
        reason = reason.__context__
    if isinstance(reason, ssl.SSLCertVerificationError):
        detail = reason.verify_message or str(reason)
        return PermanentError(f"{what}: the TLS certificate of {host} is not trusted ({detail}); {trust_hint(host)}")
    if isinstance(reason, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(reason):
        return PermanentError(
            f"{what}: {host} does not speak TLS (plain HTTP?); list it in insecureRegistries to use HTTP"
        )
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


MANIFEST_MEMO = 1024
"""Digest-addressed manifests kept per registry client (a few KB each)."""


class RegistryClient:
    """One registry host. Thread-safe; share one per host across the planner's worker pool."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: CredentialLookup | None = None,
        insecure: bool = False,
        endpoint: str | None = None,
        pool: Pool | None = None,
        timeout: float = 30.0,
        rate_limit_hook: RateLimitHook | None = None,
    ) -> None:
        self.registry = registry
        self._credentials = credentials or (lambda _host: None)
        self._insecure = insecure
        self._endpoint = endpoint
        self._pool = pool or Pool(maxsize=16, ssl_context=insecure_context() if insecure else None, timeout=timeout)
        self._base: str | None = None
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._base_lock = threading.Lock()
        self._rate_limit_hook = rate_limit_hook
        self._by_digest: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._tls_failure: PermanentError | None = None
        """A certificate this run cannot trust: every later request fails at once with the same cause."""

    # -- connection -------------------------------------------------------------------------
    def _candidates(self) -> list[str]:
        if self._endpoint:
            target = self._endpoint.rstrip("/")
            if "://" in target:
                return [target]
            host = target
        else:
            host = API_HOSTS.get(self.registry, self.registry)
        # An insecure registry may speak plain HTTP or HTTPS without verification; try both.
        return [f"https://{host}", f"http://{host}"] if self._insecure else [f"https://{host}"]

    def base_url(self) -> str:
        if self._base is not None:
            return self._base
        candidates = self._candidates()
        if len(candidates) == 1:
            # Nothing to choose: no /v2/ probe, the first real request says if the registry is there.
            self._base = candidates[0]
            return self._base
        # An insecure registry: probe once per client, not once per worker thread that gets here first.
        with self._base_lock:
            if self._base is not None:
                return self._base
            last: Exception | None = None
            for candidate in candidates:
                try:
                    self._pool.request("GET", candidate + "/v2/")
                except HTTPError as exc:
                    last = exc
                    continue
                self._base = candidate
                if candidate.startswith("https://"):
                    log.warning("%s: TLS certificate verification is off (insecureRegistries)", self.registry)
                return candidate
        raise TransientError(f"cannot reach registry {self.registry}: {last}")

    # -- auth -------------------------------------------------------------------------------
    def _auth_header(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token:
            return {"Authorization": token}
        return {}

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, _, params_text = challenge.partition(" ")
        credential = self._credentials(self.registry)
        if scheme.lower() == "basic":
            if credential is None:
                raise PermanentError(f"unauthorized: {self.registry} requires credentials; {NO_CREDENTIALS}")
            self._tokens[scope] = f"Basic {credential.basic()}"
            return
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        realm = params.pop("realm", None)
        if scheme.lower() != "bearer" or not realm:
            raise PermanentError(f"unauthorized: unsupported auth challenge from {self.registry}: {scheme}")
        params.setdefault("scope", scope)
        headers = {"Authorization": f"Basic {credential.basic()}"} if credential else {}
        try:
            resp = self._pool.request("GET", f"{realm}?{urlencode(params)}", headers=headers)
        except HTTPError as exc:
            what = f"token request to {realm}"
            raise tls_failure(what, realm.split("://", 1)[-1].split("/", 1)[0], exc) or TransientError(
                f"{what} failed: {exc}"
            ) from None
        if resp.status in (401, 403):
            if credential is None:
                raise PermanentError(f"unauthorized: {self.registry} refused anonymous access; {NO_CREDENTIALS}")
            raise PermanentError(f"unauthorized: {self.registry} rejected the credentials from {credential.origin}")
        if resp.status != 200:
            raise TransientError(f"token request to {realm} answered HTTP {resp.status}")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise PermanentError(f"unauthorized: token endpoint {realm} returned no token")
        self._tokens[scope] = f"Bearer {token}"

    def _request(
        self, method: str, url: str, scope: str, what: str, body: bytes | None = None, content_type: str | None = None
    ) -> Response:
        headers = {"Accept": ACCEPT} if content_type is None else {"Content-Type": content_type}
        retried = False
        if self._tls_failure is not None:
            raise PermanentError(f"{what}: {self._tls_failure}")
        for _ in range(2):
            headers.update(self._auth_header(scope))
            try:
                resp = self._pool.request(method, url, body=body, headers=headers)
            except HTTPError as exc:
                failure = tls_failure(what, url.split("://", 1)[-1].split("/", 1)[0], exc)
                if failure is not None:
                    self._tls_failure = PermanentError(str(failure).removeprefix(f"{what}: "))
                    raise failure from None
                raise TransientError(f"{what}: network error talking to {self.registry}: {exc}") from None
            if self._rate_limit_hook is not None:
                self._rate_limit_hook(self.registry, resp.headers)
            if resp.status == 401 and "WWW-Authenticate" in resp.headers and not retried:
                # First contact, or an expired token: (re)authenticate once, then give up.
                retried = True
                with self._lock:
                    self._tokens.pop(scope, None)
                    try:
                        self._authenticate(resp.headers["WWW-Authenticate"], scope)
                    except TransferError as exc:
                        raise type(exc)(f"{what}: {exc}", retry_after=exc.retry_after) from None
                headers.pop("Authorization", None)
                continue
            return resp
        return resp

    def _raise_for(self, resp: Response, what: str) -> None:
        status = resp.status
        if status in (401, 403):
            credential = self._credentials(self.registry)
            tried = f"with the credentials from {credential.origin}" if credential else f"anonymously: {NO_CREDENTIALS}"
            raise PermanentError(f"{what}: unauthorized (HTTP {status}) at {self.registry}, {tried}")
        if status == 429:
            raise TransientError(
                f"{what}: rate limited (HTTP 429) by {self.registry}", retry_after=_retry_after(resp.headers)
            )
        if status >= 500:
            raise TransientError(f"{what}: {self.registry} answered HTTP {status}")
        raise PermanentError(f"{what}: {self.registry} answered HTTP {status}")

    # -- API --------------------------------------------------------------------------------
    def head_manifest(self, repository: str, reference: str) -> ManifestInfo | None:
        """Digest of a tag or digest; None when the registry does not have it."""
        what = f"manifest {self.registry}/{repository}:{reference}"
        url = f"{self.base_url()}/v2/{repository}/manifests/{reference}"
        scope = f"repository:{repository}:pull"
        resp = self._request("HEAD", url, scope, what)
        if resp.status == 404:
            return None
        if resp.status != 200:
            self._raise_for(resp, what)
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:
            # Rare registries omit the header on HEAD; only then is a GET the sole way to know.
            resp = self._request("GET", url, scope, what)
            if resp.status != 200:
                self._raise_for(resp, what)
            digest = resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(resp.data).hexdigest()
        length = resp.headers.get("Content-Length")
        return ManifestInfo(digest, resp.headers.get("Content-Type"), int(length) if length else None)

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        """The manifest or index bytes; None when absent. A GET counts as a pull on Docker Hub."""
        what = f"manifest {self.registry}/{repository}:{reference}"
        url = f"{self.base_url()}/v2/{repository}/manifests/{reference}"
        key = (repository, reference)
        with self._lock:
            if key in self._by_digest:
                self._by_digest.move_to_end(key)
                return self._by_digest[key]
        resp = self._request("GET", url, f"repository:{repository}:pull", what)
        if resp.status == 404:
            return None
        if resp.status != 200:
            self._raise_for(resp, what)
        body: bytes = resp.data
        # Content addressed by its digest never changes: the blob scheduler, the copier and the
        # platform split all read the same manifests, over a WAN each read is a round trip.
        if reference.startswith("sha256:") and hashlib.sha256(body).hexdigest() == reference[7:]:
            with self._lock:
                self._by_digest[key] = body
                if len(self._by_digest) > MANIFEST_MEMO:
                    self._by_digest.popitem(last=False)
        return body

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT these exact bytes as repository:reference; returns their digest, as the registry confirmed.

        Used for what skopeo 1.9.3 cannot write (an index holding a subset of platforms), after every
        manifest it references is in place. An immutable tag holding other bytes is a ConflictError.
        """
        what = f"manifest {self.registry}/{repository}:{reference}"
        url = f"{self.base_url()}/v2/{repository}/manifests/{reference}"
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        resp = self._request("PUT", url, f"repository:{repository}:pull,push", what, body, media_type)
        if resp.status not in (200, 201):
            text = resp.data[:500].decode("utf-8", "replace")
            if re.search(r"tag is immutable|ImageTagAlreadyExists|cannot be overwritten", text, re.I):
                raise ConflictError(f"{what}: the destination tag is immutable ({text.strip()})")
            if 400 <= resp.status < 500 and resp.status not in (401, 403, 429):
                # ECR refuses some referrers (405 for one whose subject is an index): its words are the cause.
                raise PermanentError(
                    f"{what}: {self.registry} refused the manifest (HTTP {resp.status}): {text.strip()}"
                )
            self._raise_for(resp, what)
        confirmed = resp.headers.get("Docker-Content-Digest") or digest
        if confirmed != digest:
            raise TransientError(f"{what}: {self.registry} stored {confirmed} for bytes whose digest is {digest}")
        return digest

    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository has the blob (HEAD; a registry may hold it for other repositories only)."""
        what = f"blob {self.registry}/{repository}@{digest}"
        url = f"{self.base_url()}/v2/{repository}/blobs/{digest}"
        resp = self._request("HEAD", url, f"repository:{repository}:pull", what)
        if resp.status == 404:
            return False
        if resp.status != 200:
            self._raise_for(resp, what)
        return True

    def list_tags(self, repository: str) -> list[str]:
        """Every tag, following `Link: rel="next"` pagination."""
        what = f"tag list of {self.registry}/{repository}"
        scope = f"repository:{repository}:pull"
        url: str | None = f"{self.base_url()}/v2/{repository}/tags/list?n={TAG_PAGE_SIZE}"
        tags: list[str] = []
        while url:
            resp = self._request("GET", url, scope, what)
            if resp.status == 404:
                raise PermanentError(f"{what}: repository not found")
            if resp.status != 200:
                self._raise_for(resp, what)
            tags.extend(resp.json().get("tags") or [])
            match = _LINK_NEXT.search(resp.headers.get("Link", ""))
            url = urljoin(self.base_url() + "/", match.group(1)) if match else None
        return tags


class RegistryClients:
    """One client per registry host, built lazily with that host's credentials and settings."""

    def __init__(
        self,
        credentials: CredentialLookup,
        insecure: frozenset[str] | set[str] | tuple[str, ...] = (),
        endpoints: Mapping[str, str] | None = None,
        *,
        pool_size: int = 16,
        rate_limit_hook: RateLimitHook | None = None,
        trust: Trust | None = None,
    ) -> None:
        self._credentials = credentials
        self._trust = trust or Trust()
        self._insecure = frozenset(insecure)
        self._endpoints = dict(endpoints or {})
        self._pool_size = pool_size
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()
        self._rate_limit_hook = rate_limit_hook

    def get(self, registry: str) -> RegistryClient:
        with self._lock:
            client = self._clients.get(registry)
            if client is None:
                insecure = registry in self._insecure
                endpoint = self._endpoints.get(registry)
                if insecure:
                    pool = Pool(maxsize=self._pool_size, ssl_context=insecure_context())
                else:
                    hosts = [registry, endpoint.split("://", 1)[-1].rstrip("/")] if endpoint else [registry]
                    pool = Pool(maxsize=self._pool_size, ssl_context=self._trust.ssl_context(*hosts))
                client = RegistryClient(
                    registry,
                    credentials=self._credentials,
                    insecure=insecure,
                    endpoint=endpoint,
                    pool=pool,
                    rate_limit_hook=self._rate_limit_hook,
                )
                self._clients[registry] = client
            return client


def sleep_for_retry(attempt: int, base: float, retry_after: float | None, cap: float = 60.0) -> float:
    """Exponential backoff with Retry-After winning when the server said how long."""
    delay = retry_after if retry_after is not None else min(cap, base * (2 ** (attempt - 1)))
    time.sleep(delay)
    return delay
