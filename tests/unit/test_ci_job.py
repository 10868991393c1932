"""The CI job a promote records with its owner (decision 387): only the variables each CI documents, each
checked (an http(s) URL with a host, no user or password, no query, URL characters, bounded), since they land
in an annotation and in log lines; a record's job read back is checked again."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from canary import ci_job
from canary import rollout as rl
from canary.model import Weights
from canary.reconcile import describe_owner
from canary.sweep import why_abandoned

GITHUB = {"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/models",
          "GITHUB_RUN_ID": "9876543210", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_TOKEN": "ghs_secret"}


@pytest.mark.parametrize(("env", "job"), [
    (GITHUB, "https://github.com/acme/models/actions/runs/9876543210/attempts/2"),
    ({**GITHUB, "GITHUB_RUN_ATTEMPT": ""}, "https://github.com/acme/models/actions/runs/9876543210"),
    ({**GITHUB, "GITHUB_SERVER_URL": "https://ghe.acme.example/"}, "https://ghe.acme.example/acme/models/actions/runs/9876543210/attempts/2"),
    ({"GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.acme.example/ml/models/-/jobs/4242", "CI_JOB_TOKEN": "x"},
     "https://gitlab.acme.example/ml/models/-/jobs/4242"),
    ({"JENKINS_URL": "https://ci.acme.example/", "BUILD_URL": "https://ci.acme.example/job/deploy/17/"},
     "https://ci.acme.example/job/deploy/17/"),
    ({"ARGO_WORKFLOW_NAME": "deploy-rec-model-x7k2p"}, "Argo Workflow deploy-rec-model-x7k2p"),
    ({"BUILD_URL": "https://ci.acme.example/job/deploy/17/"}, ""),  # no JENKINS_URL: not known to be Jenkins's
    ({"CI_JOB_URL": "https://gitlab.acme.example/ml/models/-/jobs/4242"}, ""),  # no GITLAB_CI=true
    ({"GITHUB_RUN_ID": "1"}, ""),  # no GITHUB_ACTIONS=true
    ({}, ""),
], ids=["github", "github-no-attempt", "ghes", "gitlab", "jenkins", "argo", "build-url-alone", "job-url-alone",
        "run-id-alone", "none"])
def test_the_job_is_read_from_each_cis_own_variables(env: dict[str, str], job: str) -> None:
    assert ci_job.from_env(env) == (job, [])


@pytest.mark.parametrize(("env", "variable"), [
    ({"GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.example/j/1\n\x1b[31mFAKE LOG LINE"}, "CI_JOB_URL"),
    ({"GITLAB_CI": "true", "CI_JOB_URL": "https://user:hunter2@gitlab.example/j/1"}, "CI_JOB_URL"),
    ({"GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.example/j/1?private_token=abc"}, "CI_JOB_URL"),
    ({"GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.example/" + "a" * 400}, "CI_JOB_URL"),
    ({"GITLAB_CI": "true", "CI_JOB_URL": "javascript:alert(1)"}, "CI_JOB_URL"),
    ({"GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.example/j/<1>"}, "CI_JOB_URL"),
    ({"JENKINS_URL": "x", "BUILD_URL": "ftp://ci.example/job/1"}, "BUILD_URL"),
    ({**GITHUB, "GITHUB_REPOSITORY": "acme/models/../../x"}, "GITHUB_REPOSITORY"),
    ({**GITHUB, "GITHUB_RUN_ID": "12; rm -rf"}, "GITHUB_RUN_ID"),
    ({**GITHUB, "GITHUB_RUN_ATTEMPT": "2a"}, "GITHUB_RUN_ATTEMPT"),
    ({**GITHUB, "GITHUB_SERVER_URL": "https://tok@github.com"}, "GITHUB_SERVER_URL"),
    ({**GITHUB, "GITHUB_SERVER_URL": "https://github.com/x?y"}, "GITHUB_SERVER_URL"),
    ({"ARGO_WORKFLOW_NAME": "Deploy Me\t"}, "ARGO_WORKFLOW_NAME"),
], ids=["control-characters", "userinfo", "query", "too-long", "not-http", "angle-brackets", "ftp", "repo-path",
        "run-id", "attempt", "server-userinfo", "server-query", "argo-name"])
def test_a_variable_that_is_no_clean_job_is_not_recorded_and_only_its_name_is_said(env: dict[str, str],
                                                                                    variable: str) -> None:
    job, bad = ci_job.from_env(env)
    assert job == "" and [name for name, _ in bad] == [variable], bad
    assert not any(env[variable] in why for _, why in bad)  # the value is never repeated


@pytest.mark.parametrize("value", [
    "https://gitlab.example/ml/-/jobs/1'\''",  # a single quote: out of a quoted string
    "https://gitlab.example/ml/-/jobs/$(id)",
    "https://gitlab.example/ml/-/jobs/1;reboot",
    "https://gitlab.example/ml/-/jobs/1&reboot",
    "https://gitlab.example/ml/-/jobs/!!",
    "https://gitlab.example/ml/-/jobs/*",
], ids=["single-quote", "command-substitution", "semicolon", "ampersand", "history", "glob"])
def test_a_job_with_what_a_shell_reads_is_neither_recorded_nor_read_back(value: str) -> None:
    """`holder_job` reaches a pipeline's shell (README's `case`), and the value read back is anyone's who may
    edit a CanaryRollout's annotation or the route's record: a quote (which the check said it refused),
    `$(...)`, ';', '&' are in no job URL of GitHub, GitLab or Jenkins (decision 401)."""
    job, bad = ci_job.from_env({"GITLAB_CI": "true", "CI_JOB_URL": value})
    assert job == "" and [name for name, _ in bad] == ["CI_JOB_URL"], bad
    assert ci_job.readable(value) == ""
    rec = json.loads(_state().to_json())
    rec["job"] = value
    assert rl.RolloutState.from_json(json.dumps(rec)).job == ""


def test_job_urls_as_the_cis_write_them_stay_recorded() -> None:
    """Jenkins percent-encodes a job name's spaces and reserved characters; folders, ports and a GitLab under a
    relative root are plain path segments."""
    for url in ("https://ci.acme.example:8443/job/ml%20models/job/deploy%28prod%29/17/",
                "http://jenkins.internal:8080/job/team/job/deploy/17/",
                "https://acme.example/gitlab/ml/rec-model.v2/-/jobs/4242"):
        assert ci_job.readable(url) == url, url


def _state(**kw: object) -> rl.RolloutState:
    return rl.RolloutState(model="m", stable_version="v1", canary_version="v2", phase=rl.PROGRESSING,
                           weights=Weights(80, 20), owner="promote#runner-7:4026531836:311:ab12cd34", **kw)


def test_the_record_keeps_the_job_and_reads_a_hand_edited_one_as_none() -> None:
    url = "https://gitlab.acme.example/ml/models/-/jobs/4242"
    back = rl.RolloutState.from_json(_state(job=url).to_json())
    assert back.job == url
    assert "job" not in json.loads(_state().to_json())  # none known: the record is as before
    for edited in ("https://x.example/\n\x1b[2J", "x" * 5000, "not a url"):
        rec = json.loads(_state().to_json())
        rec["job"] = edited
        assert rl.RolloutState.from_json(json.dumps(rec)).job == ""


def test_the_holder_is_named_with_its_job_in_refusals_status_and_the_sweeps_reason() -> None:
    url = "https://github.com/acme/models/actions/runs/9876543210/attempts/2"
    said = describe_owner(_state().owner, url)
    assert said == f"run by `canary promote` (runner-7:4026531836:311:ab12cd34), CI job {url}"
    assert describe_owner(_state().owner) == "run by `canary promote` (runner-7:4026531836:311:ab12cd34)"
    reason = why_abandoned(_state(job=url, heartbeat_s=1.0), 10_000.0, lambda owner: False)
    assert reason is not None and f"CI job {url}" in reason


@pytest.mark.parametrize("owner", [
    "promote#runner-7:1:2:ab\nerror: the canary is bad, rolled back\x1b[2J",
    "CanaryRollout ml/r0\r\x1b]0;pwned\x07",
    "promote#" + "h" * 100_000,
    "CanaryRollout ml/ré0#uid",
], ids=["promote-newline-escape", "canaryrollout-osc", "huge", "non-ascii"])
def test_an_owner_edited_by_hand_is_shown_escaped_and_cut_wherever_the_holder_is_named(owner: str) -> None:
    """The owner beside the checked `job`: read back as recorded (it decides who holds the route), shown
    escaped and cut in messages (the busy refusal, `canary status`, the sweep's reason) and `-o json`'s
    `holder` (decision 401)."""
    from canary.reconcile import shown_owner

    for said in (describe_owner(owner), shown_owner(owner),
                 why_abandoned(replace(_state(heartbeat_s=1.0), owner=owner), 10_000.0, lambda o: True) or ""):
        assert said.isascii() and said.isprintable() and len(said) < 600, said[:200]
    assert rl.RolloutState.from_json(replace(_state(), owner=owner).to_json()).owner == owner  # as recorded, still


def test_the_owners_canary_writes_are_shown_as_they_are() -> None:
    from canary.reconcile import crd_owner, shown_owner

    for owner in ("promote#runner-7:4026531836:311:ab12cd34@5f1e2d3c-aaaa-bbbb-cccc-0123456789ab.1733390000",
                  crd_owner("ml", "rec-model-v2", "0e9d8c7b-1111-2222-3333-444455556666")):
        assert shown_owner(owner) == owner


@pytest.mark.parametrize(("value", "why"), [
    ("https://user:hunter2@gitlab.example/j/1", "a user or password in it"),
    ("https://gitlab.example/j/1?private_token=abc", "a query or fragment in it"),
    ("https://gitlab.example/j/1#log", "a query or fragment in it"),
    ("https://gitlab.example/j/1 x", "characters a job URL does not have"),
], ids=["userinfo", "query", "fragment", "space"])
def test_the_why_of_a_job_not_recorded_names_what_is_wrong_with_it(value: str, why: str) -> None:
    """`promote.ci_job_unrecorded`'s `why` said "characters a job URL does not have (spaces, control characters,
    quotes, $ ( ) ; & ...)" of a job URL with a token in its query or a password in it: `?`, `#` and `@` failed
    the character check first, so the user looked for a space or a quote that was not there; the README's (now
    docs/reference/events.md's `promote.ci_job_unrecorded`) "a user or password in it", "a query" were never said
    (decision 414)."""
    job, bad = ci_job.from_env({"GITLAB_CI": "true", "CI_JOB_URL": value})
    assert job == "" and len(bad) == 1 and bad[0][1].startswith(why), bad


GH_RUN = {**GITHUB, "GITHUB_JOB": "deploy"}
GITLAB = {"GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.acme.example/ml/models/-/jobs/4242",
          "CI_PROJECT_ID": "17", "CI_PIPELINE_ID": "9001", "CI_JOB_NAME": "deploy: [eu, gpu]", "CI_JOB_ID": "4242"}


@pytest.mark.parametrize(("earlier", "later"), [
    (GH_RUN, {**GH_RUN, "GITHUB_RUN_ATTEMPT": "3"}),  # a re-run: the same run and job, a later attempt
    (GITLAB, {**GITLAB, "CI_JOB_ID": "4250",
              "CI_JOB_URL": "https://gitlab.acme.example/ml/models/-/jobs/4250"}),  # a retry: a new job id
], ids=["github-re-run", "gitlab-retry"])
def test_a_re_run_of_the_same_job_is_known_as_its_later_attempt(earlier: dict[str, str], later: dict[str, str]
                                                               ) -> None:
    """A GitHub re-run (same GITHUB_RUN_ID and GITHUB_JOB, a larger GITHUB_RUN_ATTEMPT) and a GitLab retry (same
    pipeline and job name, a larger CI_JOB_ID) are the same job, later; the earlier attempt is not the later one's
    re-run (decision 454)."""
    theirs, ours = ci_job.rerun_key(earlier), ci_job.rerun_key(later)
    assert ci_job.JOB_KEY.fullmatch(theirs) and ci_job.JOB_KEY.fullmatch(ours)
    assert ci_job.earlier_attempt(theirs, ours) and not ci_job.earlier_attempt(ours, theirs)
    assert not ci_job.earlier_attempt(ours, ours)


@pytest.mark.parametrize("other", [
    {**GH_RUN, "GITHUB_RUN_ATTEMPT": "3", "GITHUB_JOB": "deploy-eu"},  # another job of the run
    {**GH_RUN, "GITHUB_RUN_ATTEMPT": "3", "GITHUB_RUN_ID": "9876543211"},  # another run
    {**GH_RUN, "GITHUB_RUN_ATTEMPT": "3", "GITHUB_REPOSITORY": "acme/other"},
    {**GH_RUN, "GITHUB_RUN_ATTEMPT": "3", "GITHUB_SERVER_URL": "https://ghe.acme.example"},
    {**GITLAB, "CI_JOB_ID": "4250", "CI_JOB_NAME": "deploy: [us, gpu]"},  # another leg of the matrix
    {**GITLAB, "CI_JOB_ID": "4250", "CI_PIPELINE_ID": "9002"},  # a new pipeline of the same commit
    {**GITLAB, "CI_JOB_ID": "4250", "CI_JOB_URL": "https://gitlab.other.example/ml/models/-/jobs/4250"},
], ids=["github-other-job", "github-other-run", "github-other-repo", "github-other-server", "gitlab-other-name",
        "gitlab-other-pipeline", "gitlab-other-server"])
def test_another_job_is_never_an_earlier_attempt(other: dict[str, str]) -> None:
    base = GH_RUN if "GITHUB_ACTIONS" in other else GITLAB
    assert ci_job.rerun_key(other) and not ci_job.earlier_attempt(ci_job.rerun_key(base), ci_job.rerun_key(other))


@pytest.mark.parametrize("env", [
    {**GH_RUN, "GITHUB_RUN_ATTEMPT": ""},  # no attempt known
    {**GH_RUN, "GITHUB_JOB": ""},  # which job unknown
    {**GH_RUN, "GITHUB_JOB": "a b"},
    {**GH_RUN, "GITEA_ACTIONS": "true", "GITHUB_RUN_NUMBER": "5"},
    {**GH_RUN, "FORGEJO_ACTIONS": "true", "GITEA_ACTIONS": "true", "GITHUB_RUN_NUMBER": "5"},
    {**GH_RUN, "ACT": "true"},
    {**GITLAB, "CI_JOB_NAME": ""},
    {**GITLAB, "CI_PIPELINE_ID": "x"},
    {**GITLAB, "CI_JOB_URL": "https://gitlab.acme.example/j?x=1"},
    {"JENKINS_URL": "https://ci.acme.example/", "BUILD_URL": "https://ci.acme.example/job/deploy/17/",
     "BUILD_NUMBER": "17", "JOB_NAME": "deploy"},  # a replay may run beside the build it replays
    {"ARGO_WORKFLOW_NAME": "deploy-x7k2p"},  # `argo retry` keeps the name, with no attempt number
    {},
], ids=["github-no-attempt", "github-no-job", "github-bad-job", "gitea", "forgejo", "act", "gitlab-no-name",
        "gitlab-bad-pipeline", "gitlab-bad-url", "jenkins", "argo", "none"])
def test_no_attempt_is_known_where_the_identity_is_not_sound(env: dict[str, str]) -> None:
    assert ci_job.rerun_key(env) == ""


def test_the_record_keeps_the_attempt_and_reads_a_hand_edited_one_as_none() -> None:
    key = ci_job.rerun_key(GH_RUN)
    assert rl.RolloutState.from_json(_state(job_key=key).to_json()).job_key == key
    assert "job_key" not in json.loads(_state().to_json())
    rec = json.loads(_state().to_json())
    rec["job_key"] = "github:zz:1\n"
    assert rl.RolloutState.from_json(json.dumps(rec)).job_key == ""


@pytest.mark.parametrize(("env", "job"), [
    ({**GITHUB, "GITEA_ACTIONS": "true", "GITHUB_SERVER_URL": "https://gitea.acme.example", "GITHUB_RUN_ID": "812",
      "GITHUB_RUN_NUMBER": "41"}, ""),
    ({**GITHUB, "FORGEJO_ACTIONS": "true", "GITEA_ACTIONS": "true", "GITHUB_SERVER_URL": "https://codeberg.org/",
      "GITHUB_RUN_ID": "812", "GITHUB_RUN_NUMBER": "41"}, "https://codeberg.org/acme/models/actions/runs/41"),
    ({**GITHUB, "FORGEJO_ACTIONS": "true", "GITHUB_SERVER_URL": "https://forgejo.acme.example",
      "GITHUB_RUN_NUMBER": "41"}, "https://forgejo.acme.example/acme/models/actions/runs/41"),
    ({**GITHUB, "ACT": "true"}, ""),
], ids=["gitea", "forgejo", "forgejo-alone", "act"])
def test_gitea_forgejo_and_act_runs_are_not_named_as_github_runs(env: dict[str, str], job: str) -> None:
    """Gitea's and Forgejo's runners set GITHUB_ACTIONS=true too: the run was recorded as
    `<their server>/.../actions/runs/<their database id>/attempts/<n>`, a page they do not have; their run's page
    is its number (GITHUB_RUN_NUMBER) on Forgejo. Gitea's `/actions/runs/<n>` is read as a run's database id first
    since Gitea replaced indexes with ids in its routes (go-gitea/gitea#36842), falling back to the index: an older
    run whose id is that number is shown instead, and an older Gitea reads the id as an index: no link is sure, none
    is recorded (decision 475). `act` runs a workflow on a workstation, with github.com as its server: no job to
    name (decision 455)."""
    assert ci_job.from_env(env) == (job, [])


def test_a_forge_run_number_out_of_shape_is_not_recorded() -> None:
    job, bad = ci_job.from_env({**GITHUB, "FORGEJO_ACTIONS": "true", "GITHUB_RUN_NUMBER": "41; x"})
    assert job == "" and [name for name, _ in bad] == ["GITHUB_RUN_NUMBER"]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_an_owner_edited_by_hand_to_a_megabyte_is_cut_in_every_log_line_naming_it(fmt: str) -> None:
    """The record's owner (anyone's who may edit the VirtualService) was escaped in log lines (decision 405) but
    not cut: one edited to a megabyte made `rollout.split_unrecorded`, `rollout.abandoned`, `rollout.taken_over`,
    `sweep.left_alone`, `rollback.completed` (`ended_owner`) a megabyte each, past a log shipper's line limit. Cut
    as `shown_owner` cuts it in messages (its first 100 characters), then escaped (decision 457)."""
    import io
    import sys

    from canary import logs
    from canary.reconcile import say_split_unrecorded

    owner = "promote#" + "h" * 1_000_000 + "\x1b[2J"
    out = io.StringIO()
    logs.configure(fmt=fmt, stream=out)
    try:
        log = logs.get(model="m")
        say_split_unrecorded(log, "r", replace(_state(), owner=owner), Weights(80, 20))
        log.warning("rollout.abandoned", owner=owner)
        log.bind(ended_owner=owner).info("rollback.completed")
        log.info("sweep.left_alone", owner="promote#runner-7:1:2:ab")  # as canary writes it: whole
    finally:
        logs.configure(fmt="console", stream=sys.__stderr__)  # as tests/conftest.py has it
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all(len(line) < 1000 for line in lines[:3]), [len(x) for x in lines]
    assert all(owner[:100] + "..." in line for line in lines[:3]) and "\x1b" not in out.getvalue()
    assert "promote#runner-7:1:2:ab" in lines[3]


@pytest.mark.parametrize(("env", "grace"), [
    (GH_RUN, (8.0, "GitHub Actions")),
    ({**GH_RUN, "GITEA_ACTIONS": "true"}, None),  # act_runner's cancel is its own
    ({**GH_RUN, "ACT": "true"}, None),
    (GITLAB, None),  # by executor and runner version: docs/reference/pipelines.md, "GitLab CI" says to set it
    ({"JENKINS_URL": "https://ci.acme.example/"}, None),
    ({}, None),
], ids=["github", "gitea", "act", "gitlab", "jenkins", "none"])
def test_only_githubs_documented_cancel_sets_promotes_grace(env: dict[str, str], grace: object) -> None:
    """GitHub's runner sends SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that: promote's default 25 s grace
    outlived it (decision 458); elsewhere the kill's delay is not known from the environment."""
    assert ci_job.cancel_grace_s(env) == grace
