"""Which `canary promote` process an owner names, and whether it still runs on this machine.

A promote records itself as its rollout's owner (`promote#host:pidns:pid:nonce@boot.start`, `_identity`);
`canary status` and a second promote's take-over read it back (`promote_here`, `_here`). Apart from the Runner
so that `canary status` reads it without importing the judge (decision 226).
"""

from __future__ import annotations

import os
import socket
import uuid


def _pid_namespace() -> str:
    """This process's pid namespace (`/proc/self/ns/pid`'s inode; "" where there is no /proc): two
    containers may share a hostname, never a pid namespace and its pids."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def _boot_id() -> str:
    """This machine's boot, as the kernel names it (`/proc/sys/kernel/random/boot_id`, 12 hex digits: random at
    every boot, shared by its containers); "" where there is none."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip().replace("-", "")[:12]
    except OSError:
        return ""


def _started(stat: str) -> str:
    """A process's start time (clock ticks after boot, field 22 of `/proc/<pid>/stat` text `stat`); "" if unread."""
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 and fields[19].isdigit() else ""


def _identity() -> str:
    """A promote process: host, pid namespace, pid and a nonce (`promote_owner`); the nonce ends in
    `@<boot>.<start>` (`_boot_id`, `_started`) where /proc has them: a host name and the initial pid namespace's
    inode (4026531836 on every Linux machine) are shared by two machines named alike, and a pid is reused
    (decision 217). `_here` reads an owner without them as before."""
    nonce = uuid.uuid4().hex[:8]
    try:
        with open(f"/proc/{os.getpid()}/stat", encoding="ascii", errors="replace") as f:
            start = _started(f.read())
    except OSError:
        start = ""
    boot = _boot_id()
    mark = f"@{boot}.{start}" if boot and start else ""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{nonce}{mark}"


def promote_here(owner: str) -> str:
    """Whether the promote process `owner` names runs on this machine: "alive", "stopped" (job control's
    Ctrl-Z or a SIGSTOP, state T: it drives nothing until continued), "gone" or "" (cannot tell: another
    machine or container). `canary status` says so of a rollout nothing drives (decisions 205, 222)."""
    return _here(owner, stopped="stopped")


def owner_pid(owner: str) -> str:
    """The pid a promote owner (`promote#host:pidns:pid:nonce`) names, as written ("" when it names none): what
    `canary status` and `canary resume` show of a promote on this machine."""
    parts = owner.partition("#")[2].split(":")
    return parts[2] if len(parts) > 2 else ""


def resume_here(owner: str) -> str:
    """`promote_here` for `canary resume` (decision 546): which process will act on a resume of the rollout
    `owner` runs. This very process is "alive" (a Runner in it runs the rollout: a program embedding both, a
    test), where a take-over reads it as gone."""
    return _here(owner, stopped="stopped", this="alive")


def _here(owner: str, *, stopped: str = "alive", this: str = "gone") -> str:
    """Whether the promote process `owner` names (`promote#host:pidns:pid:nonce`) ran on this machine,
    in this pid namespace, and is "alive" (running, stopped or sleeping) or "gone" (no such pid, a
    zombie, or this very process: a rollout resumed in-process); "" when it cannot tell (another
    machine or container, no /proc, an owner of another shape): then its record's age decides. An owner
    that names its boot and start (`_identity`, decision 217) is another machine's (or from before this
    one's reboot: "") when the boot is not this one's, and "gone" when its pid now runs a process started at
    another time (the pid reused); the host name and pid namespace alone told neither. `stopped`: what a
    stopped process (state T, or t: traced) is said as; "alive" for a take-over, which must not run beside a
    process that can be continued. `this`: what this very process is said as: "gone" for a take-over (a rollout
    recorded by an earlier Runner in it), "alive" for `canary resume` (a Runner in it runs it: a program embedding
    both, a test)."""
    parts = owner.partition("#")[2].split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname() or not parts[1] or parts[1] != _pid_namespace():
        return ""
    boot, dot, start = parts[3].partition("@")[2].partition(".")
    if dot and boot != _boot_id():
        return ""
    try:
        pid = int(parts[2])
    except ValueError:
        return ""
    if pid == os.getpid():
        return this
    if not 0 < pid < 2**22:  # Linux's pid_max ceiling: anything else names no process
        return "gone"
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
        state = stat.rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "gone"
    if dot and start and _started(stat) != start:
        return "gone"  # another process has its pid now
    if state in ("T", "t"):
        return stopped
    return "gone" if state in ("Z", "X", "x") else "alive"
