"""Thin helpers for Tenantry plugins written in Python (built with componentize-py).

The same rules and messages as the Rust SDK (crate ``tenantry-guest``)::

    from tenantry_guest import OrgResolver, OrgTarget, config, db_name, not_found, validate_org_id

    class Resolver(OrgResolver):            # the export `resolver`; a policy is `class Policy(TenantPolicy)`
        def resolve(self, org_id: str) -> OrgTarget:
            validate_org_id(org_id)         # raises Err(invalid(<the host's message>))
            if org_id == "retired":
                raise not_found()
            host = config.require("db-host")
            return target(f"postgresql://{host}/{db_name(org_id)}")

How the component model maps to Python: a ``result`` is returned on ok and raised as
``componentize_py_types.Err(error)`` on error; variants are dataclasses such as
``ResolveError_NotFound()`` (the helpers below build them); record fields are snake_case.

Subclassing :class:`OrgResolver` / :class:`TenantPolicy` wraps your method: a
:class:`ConfigError` or :class:`IdError` becomes ``invalid``, and any other exception is logged
with its traceback before it traps the call, so its message reaches the host's error report.

There is no WASI (the component is built with ``--stub-wasi``): ``print`` and ``sys.stderr``
are rerouted to the host log, and ``time.time()`` to the host clock (capability ``clock``).
Files, sockets and the other clocks are unavailable, and ``random`` is seeded when the
component is built, so every instance draws the same numbers: never use it for anything that
must be unpredictable.
"""

import json as _json
import sys
import time as _time
import traceback
from typing import Any, List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import clock as _clock
from wit_world.imports import config as _config
from wit_world.imports import http as _http
from wit_world.imports import log as _log
from wit_world.imports.types import (
    Denial_Forbidden,
    Denial_Invalid,
    Denial_NotFound,
    Denial_Unavailable,
    Isolation_Database,
    Isolation_Row,
    Isolation_Schema,
    OrgTarget,
    Principal,
    ResolveError_Invalid,
    ResolveError_NotFound,
    ResolveError_Unavailable,
    ScopeRequest,
    TenantScope,
)

__all__ = [
    "MAX_ID_LEN", "IdError", "ConfigError", "OrgResolver", "TenantPolicy", "OrgTarget",
    "TenantScope", "ScopeRequest", "Principal", "check_id", "validate_org_id",
    "validate_tenant_id", "db_name", "config", "log", "now_ms", "http_get", "not_found",
    "invalid", "unavailable", "denied_not_found", "forbidden", "denied_invalid",
    "denied_unavailable", "target", "scope", "row", "schema", "database", "claim",
]  # `property` is left out of `import *`: it would shadow the builtin

#: Longest id accepted: PostgreSQL's identifier limit, and a DNS label's.
MAX_ID_LEN = 63

Properties = List[Tuple[str, str]]

# ---- refusals (raise them) -------------------------------------------------------------


def not_found() -> Err:
    """Org resolver: ``not-found``, the org does not exist."""
    return Err(ResolveError_NotFound())


def invalid(message: str) -> Err:
    """Org resolver: ``invalid(message)``, the id or the configuration is malformed."""
    return Err(ResolveError_Invalid(str(message)))


def unavailable(message: str) -> Err:
    """Org resolver: ``unavailable(message)``, a dependency is down (the host retries)."""
    return Err(ResolveError_Unavailable(str(message)))


def denied_not_found() -> Err:
    """Tenant policy: ``not-found``, the tenant does not exist in this org."""
    return Err(Denial_NotFound())


def forbidden(message: str) -> Err:
    """Tenant policy: ``forbidden(message)``, the tenant exists but may not be served."""
    return Err(Denial_Forbidden(str(message)))


def denied_invalid(message: str) -> Err:
    """Tenant policy: ``invalid(message)``, the request or the configuration is malformed."""
    return Err(Denial_Invalid(str(message)))


def denied_unavailable(message: str) -> Err:
    """Tenant policy: ``unavailable(message)``, a dependency is down (the host retries)."""
    return Err(Denial_Unavailable(str(message)))


# ---- ids -------------------------------------------------------------------------------------


class IdError(ValueError):
    """An id that breaks the contract's rule; its message is the host's, word for word."""


def _shown(raw: str) -> str:
    """Untrusted input for a message: escaped like Rust's escape_debug, at most 40 chars."""
    special = {"\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"', "'": "\\'", "\0": "\\0"}
    out = []
    for c in raw[:40]:
        if c in special:
            out.append(special[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + ("\u2026" if len(raw) > 40 else "") + '"'


def check_id(kind: str, id: str) -> None:
    """Check ``id`` against the contract's id rule: 1-63 characters of a-z, 0-9 and '-',
    starting and ending with a letter or digit. Raises :class:`IdError`; ``kind`` ("org",
    "tenant") names the id in the message."""
    if not id:
        raise IdError(f"{kind} id is empty: pass a non-empty id such as `acme-corp`")
    if len(id) > MAX_ID_LEN:
        raise IdError(f"{kind} id is {len(id)} characters long; the limit is {MAX_ID_LEN}")
    last = len(id) - 1
    for position, c in enumerate(id):
        if not ("a" <= c <= "z" or "0" <= c <= "9" or (c == "-" and 0 < position < last)):
            raise IdError(
                f"{kind} id {_shown(id)} is invalid at position {position}: use 1-{MAX_ID_LEN} "
                "characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
            )


def validate_org_id(org_id: str) -> None:
    """Check an org id; raises ``Err(invalid(<the host's message>))``."""
    try:
        check_id("org", org_id)
    except IdError as e:
        raise invalid(str(e)) from None


def validate_tenant_id(tenant_id: str) -> None:
    """Check a tenant id; raises ``Err(Denial invalid(<the host's message>))``."""
    try:
        check_id("tenant", tenant_id)
    except IdError as e:
        raise denied_invalid(str(e)) from None


def db_name(id: str) -> str:
    """The form of a validated id used in ``{org}``/``{tenant}`` templates: acme-corp -> acme_corp."""
    return id.replace("-", "_")


# ---- host imports ----------------------------------------------------------------------------


class ConfigError(Exception):
    """A config key that is missing or holds an unusable value. The message never repeats the
    value (config values routinely carry passwords). Becomes ``invalid`` in OrgResolver/TenantPolicy."""

    def __init__(self, key: str, problem: Optional[str] = None):
        self.key = key
        if problem is None:
            message = f"config key `{key}` is not set: add it to this plugin's [config] table"
        else:
            message = f"config key `{key}` is invalid: {problem}"
        super().__init__(message)


class _Config:
    """This plugin's own configuration (capability ``config``; not granted = the call fails)."""

    @staticmethod
    def get(key: str) -> Optional[str]:
        """The raw value of ``key``, or None."""
        return _config.get(key)

    def require(self, key: str) -> str:
        """The raw value of ``key``; raises :class:`ConfigError` when it is not set."""
        value = self.get(key)
        if value is None:
            raise ConfigError(key)
        return value

    def json(self, key: str) -> Any:
        """The value of ``key`` parsed as JSON, or None when not set; ConfigError if malformed."""
        raw = self.get(key)
        if raw is None:
            return None
        try:
            return _json.loads(raw)
        except ValueError as e:
            raise ConfigError(key, f"not valid JSON: {e}") from None


config = _Config()


class _Log:
    """Lines in the host's log (capability ``log``). Not granted: dropped, but the last warning
    or error still reaches the report if the call traps."""

    trace = staticmethod(lambda message: _log.write(_log.Level.TRACE, str(message)))
    debug = staticmethod(lambda message: _log.write(_log.Level.DEBUG, str(message)))
    info = staticmethod(lambda message: _log.write(_log.Level.INFO, str(message)))
    warn = staticmethod(lambda message: _log.write(_log.Level.WARN, str(message)))
    error = staticmethod(lambda message: _log.write(_log.Level.ERROR, str(message)))


log = _Log()


class _LogStream:
    """A text stream that sends each line to the host log (stdout and stderr have no WASI)."""

    def __init__(self, level):
        self.level = level
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            _log.write(self.level, line)
        return len(text)

    def flush(self) -> None:
        if self.pending:
            _log.write(self.level, self.pending)
            self.pending = ""


sys.stdout = _LogStream(_log.Level.INFO)
sys.stderr = _LogStream(_log.Level.ERROR)


def now_ms() -> int:
    """Wall-clock milliseconds since the Unix epoch (capability ``clock``)."""
    return _clock.now_ms()


# Without WASI, time.time() would trap: read the host clock instead (capability ``clock``).
_time.time = lambda: now_ms() / 1000
_time.time_ns = lambda: now_ms() * 1_000_000


def http_get(url: str):
    """GET an allowlisted URL (capability ``http``): a response with ``status`` and ``body``.
    Raises ``RuntimeError`` when the host refuses or the request fails."""
    try:
        return _http.get(url)
    except Err as e:
        raise RuntimeError(f"GET failed: {e.value}") from None


# ---- answers ---------------------------------------------------------------------------------


def property(pairs: Properties, key: str) -> Optional[str]:
    """The value of ``key`` in a list of (key, value) pairs (labels, claims), or None."""
    for k, v in pairs:
        if k == key:
            return v
    return None


def claim(request: ScopeRequest, name: str) -> Optional[str]:
    """The principal's claim ``name``, or None."""
    return property(request.principal.claims, name) if request.principal else None


def target(url: str, region: Optional[str] = None, ttl_ms: Optional[int] = None,
           labels: Optional[Any] = None) -> OrgTarget:
    """An org target; ``labels`` is a list of pairs or a dict."""
    if isinstance(labels, dict):
        labels = list(labels.items())
    return OrgTarget(url=url, region=region, ttl_ms=ttl_ms, labels=list(labels or []))


def row():
    """Shared tables; row-level security keyed on the tenant id."""
    return Isolation_Row()


def schema(name: str):
    """A dedicated schema (the name, unquoted)."""
    return Isolation_Schema(name)


def database(url: str):
    """A dedicated database (its URL)."""
    return Isolation_Database(url)


def scope(isolation, settings: Optional[Any] = None, read_only: bool = False,
          max_connections: Optional[int] = None, ttl_ms: Optional[int] = None) -> TenantScope:
    """A tenant scope; ``settings`` is a list of pairs or a dict."""
    if isinstance(settings, dict):
        settings = list(settings.items())
    return TenantScope(isolation=isolation, settings=list(settings or []), read_only=read_only,
                       max_connections=max_connections, ttl_ms=ttl_ms)


def _describe(e: BaseException) -> str:
    """An exception and where it was raised, innermost frame first. Built from the frames
    alone: the traceback module would read the source files, which a plugin cannot open."""
    frames = [f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{line} in {frame.f_code.co_name}"
              for frame, line in traceback.walk_tb(e.__traceback__)]
    where = f" (at {', called from '.join(reversed(frames))})" if frames else ""
    return f"uncaught exception: {type(e).__name__}: {e}{where}"


def _guarded(method, to_invalid):
    def call(self, arg):
        try:
            return method(self, arg)
        except Err:
            raise
        except (ConfigError, IdError) as e:
            raise to_invalid(str(e)) from None
        except BaseException as e:
            # A bug: say what it was (the host keeps the last error for the trap report),
            # then let it trap the call.
            log.error(_describe(e))
            raise

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class OrgResolver(getattr(_exports, "Resolver", object)):
    """Base class of the export ``resolver``: ``class Resolver(OrgResolver)`` with a
    ``resolve(self, org_id) -> OrgTarget`` method."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "resolve" in cls.__dict__:
            cls.resolve = _guarded(cls.__dict__["resolve"], invalid)


class TenantPolicy(getattr(_exports, "Policy", object)):
    """Base class of the export ``policy``: ``class Policy(TenantPolicy)`` with a
    ``scope(self, request) -> TenantScope`` method."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "scope" in cls.__dict__:
            cls.scope = _guarded(cls.__dict__["scope"], denied_invalid)
