"""Who may write what through the HTTP ingest endpoint: bearer tokens to scoped identities.

The server (``controller.ingest.server``) hands each request's bearer token to an
``Authenticator`` and gets an ``Identity`` (or None: 401); the identity says which experiments
(``fnmatch`` globs such as ``shop/*``) and optionally which arms it may write, and its name is
recorded with every batch it sends. Three authenticators:

- ``SharedToken``: the plain ``--token`` mode, one secret that may write anything (kept for
  small set-ups; scoped credentials are recommended).
- ``TokenFile``: a YAML file of tokens (or their SHA-256) and of service accounts, each with its
  scope; re-read when it changes; an unreadable new version keeps the last good one.
- ``TokenReviewer`` (``controller.ingest.tokenreview``): Kubernetes ServiceAccount tokens, whose
  account is then looked up in the file's ``serviceAccounts``.

This module decides nothing about rows and does no I/O beyond reading the file.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


class CredentialsError(ValueError):
    """The credentials file is unreadable or malformed (the message names the entry)."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """An authenticated sender and the experiments (and arms) it may write."""

    name: str
    experiments: tuple[str, ...] = ("*",)
    arms: tuple[str, ...] | None = None  # None: any arm

    def refusal(self, pairs: Iterable[tuple[str | None, str | None]]) -> str | None:
        """Why the batch with these (experiment, arm) pairs is out of scope, or None."""
        for experiment, arm in pairs:
            if experiment is None:
                continue  # such a row writes nothing: validation quarantines it
            if not any(fnmatch.fnmatchcase(experiment, g) for g in self.experiments):
                return f"{self.name} may not write experiment {experiment}"
            if self.arms is not None and arm is not None and arm not in self.arms:
                return f"{self.name} may not write arm {arm} of experiment {experiment}"
        return None


class Authenticator(Protocol):
    """Maps a bearer token to the identity it proves, or None."""

    def authenticate(self, token: str) -> Identity | None: ...


class SharedToken:
    """One shared secret that may write every experiment (the plain ``--token`` mode)."""

    def __init__(self, token: str, name: str = "shared-token") -> None:
        if not token:
            raise ValueError("token: the ingest endpoint needs a bearer token")
        self._expected = token.encode()
        self._identity = Identity(name)

    def authenticate(self, token: str) -> Identity | None:
        return self._identity if hmac.compare_digest(token.encode(), self._expected) else None


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A parsed credentials file: identities by token digest and by service account."""

    by_digest: Mapping[str, Identity]
    service_accounts: Mapping[str, Identity]


def digest(token: str) -> str:
    """The SHA-256 hex digest a credentials file may hold instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_credentials(text: str, where: str = "credentials") -> Credentials:
    """Parse the YAML credentials file (see docs/ingest.md, "Credentials")."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise CredentialsError(f"{where}: not valid YAML ({at}{problem})") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise CredentialsError(f"{where}: expected a mapping with tokens and serviceAccounts")
    unknown = set(doc) - {"tokens", "serviceAccounts"}
    if unknown:
        raise CredentialsError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    by_digest: dict[str, Identity] = {}
    for i, entry in enumerate(_list(doc, "tokens", where)):
        at = f"{where}: tokens[{i}]"
        _only(entry, {"token", "sha256", "identity", "experiments", "arms"}, at)
        if ("token" in entry) == ("sha256" in entry):
            raise CredentialsError(f"{at}: give exactly one of token and sha256")
        key = digest(_text(entry, "token", at)) if "token" in entry else _sha(entry, at)
        if key in by_digest:
            raise CredentialsError(f"{at}: the same token is listed twice")
        by_digest[key] = _identity(entry, _text(entry, "identity", at), at)
    accounts: dict[str, Identity] = {}
    for i, entry in enumerate(_list(doc, "serviceAccounts", where)):
        at = f"{where}: serviceAccounts[{i}]"
        _only(entry, {"name", "experiments", "arms"}, at)
        name = service_account_name(_text(entry, "name", at), at)
        if name in accounts:
            raise CredentialsError(f"{at}: {name} is listed twice")
        accounts[name] = _identity(entry, name, at)
    return Credentials(by_digest, accounts)


def service_account_name(name: str, at: str = "service account") -> str:
    """``ns/name`` or ``system:serviceaccount:ns:name``, as the latter."""
    if name.startswith(SERVICE_ACCOUNT_PREFIX):
        parts = name.removeprefix(SERVICE_ACCOUNT_PREFIX).split(":")
    else:
        parts = name.split("/")
    if len(parts) != 2 or not all(parts):
        raise CredentialsError(f"{at}: name {name!r} is not namespace/name")
    return f"{SERVICE_ACCOUNT_PREFIX}{parts[0]}:{parts[1]}"


def _list(doc: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise CredentialsError(f"{where}: {key} must be a list of mappings")
    return value


def _only(entry: dict[str, Any], allowed: set[str], at: str) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise CredentialsError(f"{at}: unknown key {sorted(unknown)[0]!r}")


def _text(entry: dict[str, Any], key: str, at: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise CredentialsError(f"{at}: {key} must be a non-empty string")
    return value


def _sha(entry: dict[str, Any], at: str) -> str:
    value = _text(entry, "sha256", at).lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise CredentialsError(f"{at}: sha256 must be 64 hex digits")
    return value


def _globs(entry: dict[str, Any], key: str, at: str) -> tuple[str, ...]:
    value = entry.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise CredentialsError(f"{at}: {key} must be a non-empty list of strings")
    return tuple(value)


def _identity(entry: dict[str, Any], name: str, at: str) -> Identity:
    experiments = _globs(entry, "experiments", at)
    arms = _globs(entry, "arms", at) if "arms" in entry else None
    return Identity(name, experiments, arms)


class TokenFile:
    """Identities from a credentials file, re-read when it changes (size, mtime or inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self.credentials = self._read()  # a bad file at start is an error, not a warning

    def _read(self) -> Credentials:
        try:
            stat = os.stat(self.path)
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CredentialsError(f"{self.path}: cannot read ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise CredentialsError(f"{self.path}: not UTF-8 text") from exc
        credentials = parse_credentials(text, str(self.path))
        self._stamp = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        return credentials

    def current(self) -> Credentials:
        """The credentials, re-read first when the file changed; a bad new version is ignored."""
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        except OSError:
            stamp = None
        if stamp is not None and stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self.credentials = self._read()
                        log.info("credentials re-read from %s", self.path)
                    except CredentialsError as exc:
                        self._stamp = stamp  # one log line per bad version
                        log.error("%s; keeping the previous credentials", exc)
        return self.credentials

    def authenticate(self, token: str) -> Identity | None:
        return self.current().by_digest.get(digest(token))

    def service_account(self, username: str) -> Identity | None:
        return self.current().service_accounts.get(username)


class AnyOf:
    """The first identity any of several authenticators finds (file tokens before TokenReview)."""

    def __init__(self, *authenticators: Authenticator) -> None:
        self.authenticators = authenticators

    def authenticate(self, token: str) -> Identity | None:
        for authenticator in self.authenticators:
            identity = authenticator.authenticate(token)
            if identity is not None:
                return identity
        return None
