"""Adapts the Triton checks (canary/triton.py) to the controller's Gate protocol.

The controller only asks two things of a gate: may the canary get traffic
(`preflight`, raising GateError), and is it still up (`ready`, never raising).

"Up" covers both servers. A rollback moves every request to stable, so the
probe asks stable too: a stable that stops answering mid-rollout ends the
rollout at stable 100% all the same (when in doubt, stable: the canary was not
shown good, and a canary compared with a stable that does not answer never
can be), and the one line that says so names stable (`failing`), never the
canary. A canary that fails while stable is down too says "stable is not ready
either": on-call learns from that line that the rollback lands on a dead stable.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse
from pathlib import Path
from typing import Any

from canary.errors import ConfigError
from canary.policy import TritonGate
from canary.triton import (ReadinessProbe, Signature, TritonEndpoint, check_url, connect, preflight,
                           require_client, signature)

# how each entry point names the two URLs (ConfigError messages name the field the user wrote)
CR_FIELDS = ("spec.triton.stableUrl", "spec.triton.canaryUrl")
STABLE_DOWN = ("no baseline answers, so the canary cannot be shown good: the rollout ends and stable gets 100% "
               "anyway; restore stable, then promote again")


def check_urls(protocol: str, *, stable_url: str | None, canary_url: str,
               url_fields: tuple[str, str] = CR_FIELDS) -> None:
    """ConfigError naming the field (`url_fields`: what the user calls the stable and canary URLs) if a
    Triton URL is one tritonclient would misread (`check_url`), or when both name one server: the gate then
    compared stable with itself and passed, and the probe that rolls a crashed canary back watched stable, so
    the canary was never looked at (decision 204). Told without a DNS lookup (`_server`: IP spellings,
    this machine's names, a Service's short and full names; decision 215)."""
    canary_at, _ = check_url(canary_url, protocol, field=url_fields[1])
    if not stable_url:
        return
    stable_at, _ = check_url(stable_url, protocol, field=url_fields[0])
    if _server(stable_at) == _server(canary_at):
        raise ConfigError.at(url_fields[1],
            f"{canary_url!r} and {url_fields[0]} {stable_url!r} name the same Triton server "
            f"({canary_at}): the gate would check stable against itself and its probe would watch stable, never "
            f"the canary; give {url_fields[1]} the address of the canary pods' Triton")


def _server(netloc: str) -> tuple[str, int | None]:
    """(host, port) of a `check_url` host:port, as two URLs are told to name one server without a DNS lookup:
    the host in lower case without a trailing dot (`HTTP://Triton.ml:8000`, `triton.ml.:8000`); an IP address
    as the client reads it (`getaddrinfo` with AI_NUMERICHOST, no lookup: `[0:0::1]` is `::1`, `127.1` is
    `127.0.0.1`, `[::ffff:10.0.0.6]` is `10.0.0.6`); this machine by any of its usual names (`localhost`,
    `*.localhost`, `127.0.0.1`, `::1`: `localhost` resolves to both, and a Triton bound to 0.0.0.0 answers on
    either); a Kubernetes Service as `name.namespace` (`rec-model.ml`, `rec-model.ml.svc`,
    `rec-model.ml.svc.cluster.local`). Decision 215: each of these pairs named one server and passed."""
    parts = urllib.parse.urlsplit("//" + netloc)
    host = (parts.hostname or "").lower().rstrip(".")
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        infos = []
    if infos:
        address = ipaddress.ip_address(str(infos[0][4][0]).partition("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        host = address.compressed
    if host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost"):
        host = "localhost"
    service = re.fullmatch(r"([^.]+\.[^.]+)\.svc(\..+)?", host)
    return (service.group(1) if service else host), parts.port


class TritonGates:
    def __init__(self, cfg: TritonGate, *, model: str, stable_url: str | None, canary_url: str, base_dir: Path,
                 samples: tuple[str, Any] | None = None, url_fields: tuple[str, str] = CR_FIELDS) -> None:
        """`samples`: the warm-up samples already read (where from, parsed JSON), else `cfg.sample_file`
        relative to `base_dir` (`triton.preflight`). `url_fields`: what the user called the stable and
        canary URLs (a bad one is a ConfigError naming it, raised here: before any traffic moves)."""
        require_client(cfg.protocol)  # ConfigError without the `triton` extra: refused before traffic moves
        check_urls(cfg.protocol, stable_url=stable_url, canary_url=canary_url, url_fields=url_fields)
        self.cfg = cfg
        self.base_dir = base_dir
        self.samples = samples
        self.canary = TritonEndpoint(url=canary_url, model=model, protocol=cfg.protocol, role="canary",
                                     source=url_fields[1])
        self.stable = (TritonEndpoint(url=stable_url, model=model, protocol=cfg.protocol, role="stable",
                                      source=url_fields[0]) if stable_url else None)
        self._contract: Signature | None = None  # stable's signature, as the gate compared the canary with it
        self._probe: ReadinessProbe | None = None
        self._stable_probe: ReadinessProbe | None = None
        self.failing = ""  # which server the last failed probe was about: "canary" or "stable"
        self._last_failure = ""
        # failed probes in a row, per server: a canary failing once and then stable once is not two in a
        # row of either (it ended the rollout, "stable Triton not ready (2 probes in a row ...)")
        self._streaks = {"canary": 0, "stable": 0}

    @property
    def probe_interval(self) -> float:
        return self.cfg.probe_interval

    @property
    def probe_failures(self) -> int:
        return self.cfg.probe_failures

    def preflight(self) -> dict[str, Any]:
        seen: dict[str, Signature] = {}
        report = preflight(self.stable, self.canary, self.cfg, base_dir=self.base_dir, samples=self.samples,
                           seen=seen).to_dict()
        self._contract = seen.get("stable")
        if self._probe is not None:
            self._probe.contract = self._contract
        return report

    def ready(self) -> bool:
        if self._probe is None:
            self._probe = ReadinessProbe(self.canary, contract=self._contract)
        if self._probe.contract is None and self.stable is not None:
            # resumed mid-rollout (a new process): hold the canary to stable's contract from now on
            self._probe.contract = self._contract = self._read_contract()
        canary_ok = self._probe.ready()
        stable_ok = True
        if self.stable is not None:
            if self._stable_probe is None:
                self._stable_probe = ReadinessProbe(self.stable)
            stable_ok = self._stable_probe.ready()
        self._streaks = {"canary": 0 if canary_ok else self._streaks["canary"] + 1,
                         "stable": 0 if stable_ok else self._streaks["stable"] + 1}
        if canary_ok and stable_ok:
            self.failing = self._last_failure = ""
            return True
        stable_why = "" if stable_ok else f"{self.stable}: {self._stable_probe.last_failure}"  # type: ignore[union-attr]
        # the server failing longest in a row is the one the line is about (the canary on a tie: its failure
        # is a verdict on it); a stable down longer than a canary that just failed ends the rollout ABORTED
        if not canary_ok and self._streaks["canary"] >= self._streaks["stable"]:
            self.failing = "canary"
            self._last_failure = self._probe.last_failure + (
                f"; stable is not ready either ({stable_why}): stable gets 100% all the same" if stable_why else "")
        else:
            self.failing = "stable"  # every line says so: `gate.probe_failed` logs this reason alone
            self._last_failure = f"stable {stable_why}; {STABLE_DOWN}" + (
                "" if canary_ok else f"; the canary is not ready either ({self._probe.last_failure})")
        return False

    @property
    def consecutive(self) -> int:
        """Failed probes in a row of the server the last failure is about (`failing`); 0 after a ready
        answer. The loops count failures in a row of the gate as a whole: they take the smaller."""
        return self._streaks.get(self.failing, 0) if self.failing else 0

    def _read_contract(self) -> Signature | None:
        """Stable's signature for the probe, or None (tried again at the next probe) when it cannot be read."""
        assert self.stable is not None
        client = None
        try:
            client = connect(self.stable, timeout=self._probe.timeout if self._probe else 0.5)
            return signature(client, self.stable, timeout=self._probe.timeout if self._probe else 0.5)
        except Exception:  # the stable probe says why, if it is down
            return None
        finally:
            try:
                if client is not None:
                    client.close()
            except Exception:
                pass

    @property
    def last_failure(self) -> str:
        """Why the last probe failed ("" when both answered ready): for the rollback's reason."""
        return self._last_failure
