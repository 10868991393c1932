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
    the character check first, so the user looked for a space or a quote that was not there; the README's
    "a user or password in it", "a query" were never said (decision 414)."""
    job, bad = ci_job.from_env({"GITLAB_CI": "true", "CI_JOB_URL": value})
    assert job == "" and len(bad) == 1 and bad[0][1].startswith(why), bad
