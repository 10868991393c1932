"""`python -m canary` is the `canary` command; `main` is the installed `canary` (and `kubectl-canary`) script.

Its first line holds SIGINT, SIGTERM and SIGHUP until the command has its own handlers (decision 619): a CI cancel
while the modules load was a kill with nothing said (exit 143), where `promote` reports exit 3, nothing written."""

import sys

from canary import interrupts


def main() -> None:
    if sys.argv[1:] == ["--version"]:  # answered before the CLI's imports: 1.4 s of CPU (2.2 s wall here, 9 s
        # on a busy host) went to loading typer, rich, structlog and the policy models for one line (decision 958)
        from canary import streams

        def say() -> None:
            sys.stdout.write(streams.version_line() + "\n")
            sys.stdout.flush()  # here, inside the guard: `canary --version | head -c0` is still exit 0

        streams.guarded("stdout", say)
        return
    interrupts.hold_early()
    try:
        from canary import startup

        startup.import_structlog()  # before anything imports it: without the rich printers it never calls (985)
        from canary.cli import app

        app()
    finally:
        interrupts.release_early(deliver=False)  # a promote that ended before taking it: it had nothing to undo


if __name__ == "__main__":
    main()
