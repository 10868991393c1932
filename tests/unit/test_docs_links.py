"""Every relative link in README.md, docs/ and canary/ (canary/deploy/README.md) resolves: the file exists (from
the page's own folder, as GitHub resolves it) and, for a link to a heading (`page.md#anchor`), that heading is on the page under
GitHub's slug. A newcomer follows them; a renamed benchmark or heading must not leave a dead link."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "canary").rglob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (backticks, dots, parentheses),
    spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", page.read_text()), re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
    return {s if n == 0 else f"{s}-{n}" for s, count in seen.items() for n in range(count)}


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", page.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_every_relative_link_in_the_readme_and_docs_resolves_to_a_file_and_heading() -> None:
    broken = []
    for page in PAGES:
        for target in _links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{where}: no heading with that anchor")
    assert not broken, broken


def test_the_link_check_sees_the_readmes_links_and_catches_a_dead_one(tmp_path: Path) -> None:
    """The check is not vacuous: it finds the README's links to docs/, including one with an anchor,
    and a dead file or anchor is reported."""
    readme = _links(ROOT / "README.md")
    assert "docs/judge.md" in readme and "docs/drift.md#log-events-for-on-call" in readme
    assert "log-events-for-on-call" in _anchors(ROOT / "docs" / "drift.md")
    page = tmp_path / "p.md"
    page.write_text("# A `b` (c)\n\n[x](p.md#a-b-c) [y](p.md#nope) [z](gone.md)\n```\n[w](fenced.md)\n```\n")
    assert _links(page) == ["p.md#a-b-c", "p.md#nope", "gone.md"]
    assert _anchors(page) == {"a-b-c"}


def test_the_readme_is_a_guide_that_links_every_reference_page() -> None:
    """The README was 1,512 lines and a newcomer could not find how to start (decision 995): it is the guide now,
    short enough to read through, with the two commands as CI runs them, and every page of docs/reference/ (the
    reference moved out of it) linked from it, so nothing moved out is out of reach."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    assert len(text.splitlines()) <= 300, "README.md is the guide: move reference text to docs/reference/"
    linked = {(readme.parent / t.partition("#")[0]).resolve() for t in _links(readme) if t.partition("#")[0]}
    pages = sorted((ROOT / "docs" / "reference").glob("*.md"))
    assert len(pages) >= 10
    unlinked = [p.relative_to(ROOT).as_posix() for p in pages if p.resolve() not in linked]
    assert not unlinked, f"docs/reference pages the README does not link: {unlinked}"
    the_two = re.search(r"^## The two commands\n(.*?)^## ", text, re.S | re.M).group(1)  # type: ignore[union-attr]
    assert "| run the tests (unit, integration, end to end) | `bash scripts/test.sh` |" in the_two
    assert "`bash scripts/demo.sh --scenario good`" in the_two
    assert "exec bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()  # CI runs exactly the README's command


def test_every_docs_page_the_code_and_manifests_name_exists() -> None:
    """A message, comment or manifest that sends a reader to `docs/...md` names a page that is there: with the
    README's reference moved to docs/reference/ (decision 995), "(README)" in an error about Prometheus replicas
    or a comment's "README, Log events" would have sent them to a page that no longer says it."""
    named = re.compile(r"(?<![\w/.])docs/[\w./-]+?\.(?:md|json)\b")
    sources = [*(ROOT / "canary").rglob("*.py"), *(ROOT / "canary" / "deploy").rglob("*.yaml"),
               *(ROOT / "policies").glob("*.yaml"), *(ROOT / "scripts").glob("*.py"), *(ROOT / "scripts").glob("*.sh")]
    missing = sorted({f"{src.relative_to(ROOT)}: {path}" for src in sources for path in named.findall(src.read_text())
                      if not (ROOT / path).exists()})
    assert not missing, missing
    assert any("docs/reference/events.md" in src.read_text() for src in sources)  # not vacuous


def _section(page: Path, anchor: str) -> str:
    """The text under the heading whose anchor this is, up to the next heading of the same or a higher level."""
    text = FENCE.sub(lambda m: m.group(0).replace("#", ""), page.read_text())  # a shell comment is no heading
    headings = list(re.finditer(r"^(#{1,6})\s+(.+?)\s*#*$", text, re.M))
    for i, h in enumerate(headings):
        if _slug(h.group(2)) == anchor:
            end = next((n.start() for n in headings[i + 1:] if len(n.group(1)) <= len(h.group(1))), len(text))
            return text[h.end():end]
    raise AssertionError(f"{page.relative_to(ROOT)} has no heading #{anchor}")


# what a newcomer looks up, reviewing the split (decision 1010): each is one link of the README's text (not its page
# map) away, and the section that link lands on says it
LOOKUPS = [
    ("what a route must be", "docs/reference/cluster.md#what-the-cluster-needs", "exactly two destinations"),
    ("the rights a CD job's identity needs", "docs/reference/cluster.md#rbac-the-rights-it-needs",
     "get/update/patch on `virtualservices`"),
    ("what canary writes, in order", "docs/reference/cluster.md#what-canary-writes-and-in-which-order",
     "records a `pending` rollout"),
    ("Prometheus credentials and TLS", "docs/reference/cluster.md#connection-settings-kubernetes-and-prometheus",
     "`--prometheus-ca-file`"),
    ("why a good canary is rolled back unproven", "docs/reference/cluster.md#latency-buckets-fine-enough-for-the-limit",
     "sidecar.istio.io/statsHistogramBuckets"),
    ("what exit 75 leaves on traffic", "docs/reference/cli.md#exit-codes", "| 75 |"),
    ("a policy field", "docs/reference/policy.md", "`no_data_deadline`"),
    ("an event name", "docs/reference/events.md", "`rollback.completed`"),
    ("a GitLab job", "docs/reference/pipelines.md#gitlab-ci", "retry:"),
    ("a cancelled CI job", "docs/reference/pipelines.md#what-a-cancelled-job-leaves", "stable 100%"),
    ("a busy route", "docs/reference/pipelines.md#busy-routes-exit-75", "--wait-busy"),
]


def test_a_newcomer_finds_each_lookup_one_link_from_the_readmes_text() -> None:
    """Reviewing the split as a newcomer (decision 1010): the README sent "the RBAC it needs" to the whole of
    cluster.md, whose first 197 lines were one section with no heading, and named the policy's fields nowhere but in
    its page map. Each lookup is now a link in the README's running text to the heading that answers it."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    prose = FENCE.sub("", text[:text.index("\n## Where the rest is\n")])  # the text, not the page map
    links = set(LINK.findall(prose))
    missing = [f"{what}: {target}" for what, target, _ in LOOKUPS if target not in links]
    assert not missing, f"the README's text does not link: {missing}"
    for what, target, says in LOOKUPS:
        path, _, anchor = target.partition("#")
        body = _section(ROOT / path, anchor) if anchor else (ROOT / path).read_text()
        assert says in body, f"{what}: {target} does not say {says!r}"


def test_the_via_controller_refusal_of_a_sample_file_names_the_section_that_says_what_to_do(tmp_path: Path) -> None:
    """`promote --via-controller` with a policy whose Triton gate names a `sample_file` is refused (exit 2: the
    controller cannot read this machine's file) with what to do, "put the policy and the samples in one ConfigMap",
    and it sent the reader to "(README, controller)", which shows a `policyRef` but not how samples go in it. It
    names docs/triton.md's section that does (`kubectl create configmap ... --from-file=warmup.json`) (decision
    1011)."""
    import copy

    import yaml
    from typer.testing import CliRunner

    from canary.cli import app
    from tests import fleet

    policy = copy.deepcopy(fleet.FAST_POLICY)
    policy["gates"] = {"triton": {"enabled": True, "warmup_requests": 4, "sample_file": "warmup.json"}}
    (tmp_path / "warmup.json").write_text("[]")
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    res = CliRunner().invoke(app, ["promote", "m0", "--canary-version", "v2", "-n", "ml", "--via-controller",
                                   "--policy", str(tmp_path / "policy.yaml"),
                                   "--kubeconfig", str(tmp_path / "no-kubeconfig"),
                                   "--triton-canary", "http://127.0.0.1:9", "--triton-stable", "http://127.0.0.1:8"],
                           terminal_width=400)
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "gates.triton.sample_file" in said, res.output
    page, heading = re.search(r'\((docs/[\w./-]+\.md), "([^"]+)"\)', said).groups()  # type: ignore[union-attr]
    assert f"**{heading}.**" in (ROOT / page).read_text(), (page, heading)
    assert "--from-file=warmup.json" in (ROOT / page).read_text()


def test_every_docs_section_the_code_and_manifests_quote_is_on_that_page() -> None:
    """A message or comment that sends the reader to `docs/PAGE.md, "Section"` names words that page has: the
    split moved sections between pages (decision 995), and a pointer to the right page but a section it lacks, or
    to a page with no section at all (the Prometheus replicas error said "(docs/reference/cluster.md)", a
    328-line page), leaves the reader to search it (decision 1011)."""
    quoted = re.compile(r"(?<![\w/.])(docs/[\w./-]+\.md)(?:,|'s)? ?\\?\"([^\"\\\n]{3,80})\\?\"")
    sources = [*(ROOT / "canary").rglob("*.py"), *(ROOT / "canary" / "deploy").rglob("*.yaml"),
               *(ROOT / "policies").glob("*.yaml"), *(ROOT / "scripts").glob("*.py")]
    found = [(src, page, words) for src in sources for page, words in quoted.findall(src.read_text())]
    assert len(found) >= 10, found  # not vacuous
    missing = [f"{src.relative_to(ROOT)}: {page}, {words!r}" for src, page, words in found
               if not (ROOT / page).exists()
               or " ".join(words.lower().split()) not in " ".join((ROOT / page).read_text().lower().split())]
    assert not missing, missing


def test_the_prometheus_replicas_refusal_names_the_section_that_says_what_to_do() -> None:
    """The look that reads a metric's families from two Prometheus replicas behind one address, never agreeing,
    measures nothing and says "point canary at one replica, or at Thanos Query": it sent the reader to "(README)",
    then to the whole of docs/reference/cluster.md; it names that page's "Prometheus with replicas" section, which
    recommends Thanos Query and how (decision 1011)."""
    import pytest

    from canary.errors import MetricsUnavailable
    from canary.metrics import batch as b
    from tests.unit.test_batch import T, chk, policy
    from tests.unit.test_batch_replicas import TwoReplicas, _take

    snap, _ = _take(TwoReplicas(behind=b.REASKS + 1))
    pol = policy(checks=[{"name": "err", "kind": "error_rate", "max_rate_pct": 5}])
    with pytest.raises(MetricsUnavailable, match="Thanos Query") as said:
        snap.arm(pol, chk(pol, "err"), T, "canary")
    page, heading = re.search(r'\((docs/[\w./-]+\.md), "([^"]+)"\)', str(said.value)).groups()  # type: ignore[union-attr]
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", (ROOT / page).read_text()), re.M)
    named = next((h for h in headings if h.startswith(heading)), None)
    assert named, f"{page} has no heading {heading!r}"
    assert "Thanos Query" in _section(ROOT / page, _slug(named))
