"""The cost of one claim's look at the other VirtualServices from the informers' cache (decision 578, 601).

`IstioRouter.splits_elsewhere` against the Kubernetes API emulator, with the informer's cache holding
`--per-namespace` x `--namespaces` VirtualServices (each a copy of the fleet's `m0`, at 100/0: no split, so
every one of the namespace is read to the end), given what the controller hands it: every cached object
(`Informer.items`, before 601) or those of the rollout's namespace (`Informer.items_in`), the DestinationRule
GET or given from the cache too (606); and a rollout's look once claimed (602): the controller's from the cache,
`canary promote`'s with one LIST of the namespace from the emulator (which holds the rollout's namespace's
`--per-namespace` VirtualServices). Prints a table, exits 0.

    .venv/bin/python scripts/bench_other_splits.py --namespaces 50 --per-namespace 40 --repeat 50
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests.fleet`: the emulator's fleet

from canary.informer import Informer  # noqa: E402
from canary.model import Target  # noqa: E402
from canary.routing.istio import IstioRouter  # noqa: E402
from canary.routing.splits import canary_split_hosts, may_split  # noqa: E402
from tests import fleet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--per-namespace", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    api = fleet.start_api(1)
    try:
        client = api.api_client()
        router = IstioRouter(client, wait=None)
        vs = api.get("networking.istio.io", "virtualservices", "ml", "m0")
        cache = Informer(lambda **kw: None, kind="virtualservices", summary=canary_split_hosts)
        for n in range(args.namespaces):
            for i in range(args.per_namespace):
                obj = copy.deepcopy(vs)
                obj["metadata"].update(name=f"vs{i}", namespace="ml" if n == 0 else f"ns{n}", resourceVersion=str(i + 1))
                cache.put(obj)
                if n == 0:
                    api.handler.put_object(copy.deepcopy(obj))
        dr = api.get("networking.istio.io", "destinationrules", "ml", "m0")
        target = Target(namespace="ml", virtual_service="m0", model="m0",
                        stable_version="v1", canary_version="v2")
        print(f"| cached VirtualServices | namespaces | look | in the namespace | ms per look (median of {args.repeat}) |")
        print("|---|---|---|---|---|")
        rows = (("claim: items + the rule's GET (before 601)", lambda: router.splits_elsewhere(
                     target, listed=cache.items())[:2]),
                ("claim: items_in + the rule's GET (601)", lambda: router.splits_elsewhere(
                     target, listed=cache.items_in("ml"))[:2]),
                ("claim: items_in + the rule cached (606)", lambda: router.splits_elsewhere(
                     target, listed=cache.items_in("ml"), dr=dr)[:2]),
                ("look, controller: items_in + the rule cached", lambda: router.split_in_others(
                     target, listed=cache.items_in("ml"), dr=dr)),
                ("look, controller: those that split, the rule cached (602)", lambda: router.split_in_others(
                     target, listed=cache.items_in("ml", where=may_split), dr=dr)),
                ("claim, controller: those that split, the rule cached (602, 606)", lambda: router.splits_elsewhere(
                     target, listed=cache.items_in("ml", where=may_split), dr=dr)[:2]),
                ("look, promote: LIST + the rule's GET (602)", lambda: router.split_in_others(target)))
        for name, look in rows:
            took = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                why, unchecked = look()
                took.append(time.perf_counter() - t0)
                assert not why and not unchecked, (why, unchecked)
            took.sort()
            print(f"| {len(cache)} | {args.namespaces} | {name} | {args.per_namespace} | "
                  f"{1000 * took[len(took) // 2]:.2f} |")
        client.close()
    finally:
        api.stop()


if __name__ == "__main__":
    main()
