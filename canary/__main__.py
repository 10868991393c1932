"""`python -m canary` is the `canary` command; `main` is the installed `canary` (and `kubectl-canary`) script.

Its first line holds SIGINT, SIGTERM and SIGHUP until the command has its own handlers (decision 619): a CI cancel
while the modules load was a kill with nothing said (exit 143), where `promote` reports exit 3, nothing written."""

from canary import interrupts


def main() -> None:
    interrupts.hold_early()
    try:
        from canary.cli import app

        app()
    finally:
        interrupts.release_early(deliver=False)  # a promote that ended before taking it: it had nothing to undo


if __name__ == "__main__":
    main()
