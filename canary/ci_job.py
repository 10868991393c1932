"""Which CI job runs this `canary promote`, read from the variables its CI documents (decision 387).

A promote's owner names its host and process (`promote#host:pidns:pid:...`): on GitHub Actions a runner's
machine name, under GitLab's Kubernetes executor, Argo Workflows and Tekton a pod's. On-call who finds a route
held ("busy", `canary status`, the sweep's `rollout.abandoned`) needs the job to cancel or re-run, so its
record carries `job` too: the job's URL where the CI gives one, the workflow's name for Argo Workflows.

Only the variables named here are read, each checked before it is used: a URL of http(s) with a host and no
user or password in it, no query or fragment, of URL-safe characters only (none a shell reads: no quote, `$`,
`(`, `;`, `&`), at most MAX_JOB characters. These
values land in a Kubernetes annotation and in log lines: a value that is not so is not recorded (its variable
is named in `promote.ci_job_unrecorded`, never its value). Nothing else of the environment (tokens, secrets) is
ever read here. Tekton sets no variable naming its TaskRun (its pod's name, `<taskrun>-pod`, is the owner's
host already). Pure: the environment is an argument.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

# on a CanaryRollout that `promote --via-controller` creates: the job it ran in, which the controller records as
# its rollout's `job` (checked again there: anyone who may edit the object may write it)
ANNOTATION = "modelcanary.dev/ci-job"
MAX_JOB = 300  # characters: a job URL is well under it; an annotation and a log line stay small
# RFC 3986's unreserved, ':' '/' '%' and the sub-delims no shell reads ('+' '=' ','): a job URL of GitHub, GitLab
# or Jenkins (which percent-encodes a job name's `!$&'()*;`) has no other. A quote, `$(...)`, ';' or '&' would
# reach a pipeline's shell through `-o json`'s `holder_job` or a log line, where the value is anyone's who may
# edit a CanaryRollout or the VirtualService's record (decision 401)
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/%+=,]+")
_GITHUB_REPO = re.compile(r"[A-Za-z0-9_.\-]{1,100}/[A-Za-z0-9_.\-]{1,100}")
_DIGITS = re.compile(r"[0-9]{1,20}")
_DNS_NAME = re.compile(r"[a-z0-9]([a-z0-9.\-]{0,251}[a-z0-9])?")
ARGO_PREFIX = "Argo Workflow "
# GitHub's job id (the workflow's `jobs.<job_id>` key: a letter or `_`, then letters, digits, `-`, `_`)
_GITHUB_JOB = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,99}")
# a record's `job_key` (`rerun_key`): the CI, a digest of the job's identity, the attempt's number in that job
JOB_KEY = re.compile(r"(github|gitlab):[0-9a-f]{32}:[0-9]{1,20}")


def _url(value: str, *, base: bool = False) -> str:
    """Why `value` is no URL to record ("" when it is one). `base`: a server's URL, a path prefix at most."""
    if not value:
        return "empty"
    if len(value) > MAX_JOB:
        return f"longer than {MAX_JOB} characters"
    # said before the character check, which `@ ? #` fail too: "characters ... quotes, $ ..." sent the user looking
    # for a space or a quote in a URL whose fault is the token in its query (decision 414)
    if "@" in value.partition("://")[2].partition("/")[0]:
        return "a user or password in it"
    if "?" in value or "#" in value:
        return "a query or fragment in it"
    if not _URL_CHARS.fullmatch(value):
        return "characters a job URL does not have (spaces, control characters, quotes, $ ( ) ; & ...)"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is none
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "not an http(s) URL with a host"
    if base and parts.path not in ("", "/") and not re.fullmatch(r"(/[A-Za-z0-9\-._~]+)+/?", parts.path):
        return "not a server's URL"
    return ""


def from_env(env: Mapping[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """The CI job `env` names, and the variables that were set but could not be recorded: (job, [(variable,
    why)]). The job: GitHub Actions' run URL with its attempt (`GITHUB_ACTIONS=true`: GITHUB_SERVER_URL,
    GITHUB_REPOSITORY, GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT; a job's own id is in no variable), GitLab's CI_JOB_URL
    (`GITLAB_CI=true`), Jenkins' BUILD_URL (`JENKINS_URL` set), Argo Workflows' ARGO_WORKFLOW_NAME as
    `Argo Workflow <name>`; "" when none is, or when what is set is not valid. Gitea's and Forgejo's Actions
    set `GITHUB_ACTIONS=true` too (and GITHUB_SERVER_URL to their own server): Forgejo's run page is
    `/actions/runs/<GITHUB_RUN_NUMBER>` with no attempts (`_run_page`), Gitea's is not known from the environment
    (decision 475); `act` (`ACT=true`), a workflow run on a workstation, has no job to name (decision 455)."""
    if env.get("GITHUB_ACTIONS") == "true":
        forge = _forge(env)
        if forge:
            return _run_page(env, "GITHUB_RUN_NUMBER") if forge == "forgejo" else ("", [])
        return _run_page(env, "GITHUB_RUN_ID", env.get("GITHUB_RUN_ATTEMPT", ""))
    for on, name in ((env.get("GITLAB_CI") == "true", "CI_JOB_URL"), (bool(env.get("JENKINS_URL")), "BUILD_URL")):
        if on and name in env:
            url = env[name]
            why = _url(url)
            return ("", [(name, why)]) if why else (url, [])
    if "ARGO_WORKFLOW_NAME" in env:
        name = env["ARGO_WORKFLOW_NAME"]
        if _DNS_NAME.fullmatch(name):
            return ARGO_PREFIX + name, []
        return "", [("ARGO_WORKFLOW_NAME", "not a Kubernetes object name")]
    return "", []


def _forge(env: Mapping[str, str]) -> str:
    """Which runner, other than GitHub's, set `GITHUB_ACTIONS=true`: "forgejo" (Forgejo's runner sets
    FORGEJO_ACTIONS=true and GITEA_ACTIONS=true), "gitea" (Gitea's act_runner sets GITEA_ACTIONS=true), "act"
    (nektos/act sets ACT=true, and GITHUB_SERVER_URL to github.com for a run that is no run there), "" for GitHub
    Actions."""
    if env.get("FORGEJO_ACTIONS") == "true":
        return "forgejo"
    if env.get("GITEA_ACTIONS") == "true":
        return "gitea"
    return "act" if env.get("ACT") == "true" else ""


def _run_page(env: Mapping[str, str], number: str, attempt: str = "") -> tuple[str, list[tuple[str, str]]]:
    """An Actions run's page, `<GITHUB_SERVER_URL>/<owner>/<repo>/actions/runs/<run>[/attempts/<attempt>]`, `run`
    the variable `number` names, and the variables set but not recordable: (job, [(variable, why)]).

    GitHub's: GITHUB_RUN_ID with GITHUB_RUN_ATTEMPT. Forgejo's: GITHUB_RUN_NUMBER, no attempt (its
    `ActionRun.Link` is the repository's link and the run's index, which it sets as GITHUB_RUN_NUMBER; GITHUB_RUN_ID
    is the run's database id, and it has no `/attempts/`). Gitea's names none: since Gitea replaced indexes with
    database ids in its routes (go-gitea/gitea#36842) `/actions/runs/<n>` is read as an id first, then as an index,
    so the index's link shows an older run whose id it is, and an older Gitea reads an id as an index; which
    Gitea serves the job is in no variable (decision 475). `act` names none."""
    server = env.get("GITHUB_SERVER_URL", "").rstrip("/")
    checks = [("GITHUB_SERVER_URL", _url(server, base=True)),
              ("GITHUB_REPOSITORY", "" if _GITHUB_REPO.fullmatch(env.get("GITHUB_REPOSITORY", "")) else
               "not owner/name"),
              (number, "" if _DIGITS.fullmatch(env.get(number, "")) else "not a number")]
    if attempt and not _DIGITS.fullmatch(attempt):
        checks.append(("GITHUB_RUN_ATTEMPT", "not a number"))
    if bad := [(name, why) for name, why in checks if why]:
        return "", bad
    url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env[number]}"
    url += f"/attempts/{attempt}" if attempt else ""
    return ("", [("GITHUB_SERVER_URL", why)]) if (why := _url(url)) else (url, [])


# GitHub's runner cancels a step (a cancelled run, `timeout-minutes`) with SIGINT, SIGTERM 7.5 s later and SIGKILL
# 2.5 s after that (actions/runner's ProcessInvoker): a grace ending before the SIGTERM's 2.5 s are out
GITHUB_CANCEL_GRACE_S = 8.0


def cancel_grace_s(env: Mapping[str, str]) -> tuple[float, str] | None:
    """How long after its first signal the CI `env` names lets a cancelled step run before SIGKILL, less a margin,
    with the CI's name; None where that is not documented (GitLab's depends on the executor and its version,
    Jenkins', Argo's and Tekton's on the pod's grace) or not GitHub's runner (Gitea, Forgejo, `act`)."""
    if env.get("GITHUB_ACTIONS") == "true" and not _forge(env):
        return GITHUB_CANCEL_GRACE_S, "GitHub Actions"
    return None


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def rerun_key(env: Mapping[str, str]) -> str:
    """The identity of the CI job `env` runs in, with which attempt of it this is: `<ci>:<digest>:<n>`, "" where
    none is sound (decision 454). A later attempt of the same job may take over an earlier one's rollout at once
    (`earlier_attempt`), because the CI starts it only once that attempt has ended:

    * GitHub Actions: the server, repository, run id and GITHUB_JOB (the workflow's job id), attempt
      GITHUB_RUN_ATTEMPT. GitHub re-runs only a completed run (every job of the earlier attempt ended). A matrix's
      legs, and the jobs of a reusable workflow called twice, share GITHUB_JOB (no variable names a leg): one
      leg's later attempt takes another's earlier one over, which that run's end ended too.
    * GitLab CI: the server (CI_JOB_URL's), CI_PROJECT_ID, CI_PIPELINE_ID and CI_JOB_NAME (unique in a pipeline,
      a matrix leg's included), attempt CI_JOB_ID (a retry is a new job, with a larger id); GitLab retries only a
      job that has ended (succeeded, failed or canceled).

    None for Jenkins (a replay is a new build of the same job, which may run beside the earlier one: concurrent
    builds are allowed by default), Argo Workflows (`argo retry` keeps the workflow's name, with no attempt
    number), Gitea, Forgejo and `act`. Only variables checked by shape are used; the digest keeps names that a
    record need not show (a GitLab job name is free text) out of it."""
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "").rstrip("/")
        parts = (server, env.get("GITHUB_REPOSITORY", ""), env.get("GITHUB_RUN_ID", ""), env.get("GITHUB_JOB", ""))
        attempt = env.get("GITHUB_RUN_ATTEMPT", "")
        if (_forge(env) or _url(server, base=True) or not _GITHUB_REPO.fullmatch(parts[1])
                or not _DIGITS.fullmatch(parts[2]) or not _GITHUB_JOB.fullmatch(parts[3])
                or not _DIGITS.fullmatch(attempt)):
            return ""
        return f"github:{_digest(*parts)}:{int(attempt)}"
    if env.get("GITLAB_CI") == "true":
        url, name = env.get("CI_JOB_URL", ""), env.get("CI_JOB_NAME", "")
        parts = (env.get("CI_PROJECT_ID", ""), env.get("CI_PIPELINE_ID", ""))
        job_id = env.get("CI_JOB_ID", "")
        if (_url(url) or not all(_DIGITS.fullmatch(p) for p in parts) or not _DIGITS.fullmatch(job_id)
                or not name or len(name) > 255):
            return ""
        where = url.partition("://")[2].partition("/")[0].lower()
        return f"gitlab:{_digest(where, *parts, name)}:{int(job_id)}"
    return ""


def earlier_attempt(theirs: object, ours: str) -> bool:
    """Whether `theirs` (a record's `job_key`) is an earlier attempt of the very job `ours` is (`rerun_key`):
    same CI, same job, a smaller attempt. False for any key out of shape, a record without one, another job."""
    if not (isinstance(theirs, str) and JOB_KEY.fullmatch(theirs) and JOB_KEY.fullmatch(ours)):
        return False
    their_ci, their_job, their_n = theirs.split(":")
    our_ci, our_job, our_n = ours.split(":")
    return (their_ci, their_job) == (our_ci, our_job) and int(their_n) < int(our_n)


def readable(job: object) -> str:
    """`job` as read back from a record (`RolloutState.job`): kept when it is a job this module would record
    (a URL as checked above, or `Argo Workflow <name>`), "" otherwise: a record edited by hand must not put
    control characters or a megabyte into `canary status` and the log lines that name its holder."""
    if not isinstance(job, str) or not job:
        return ""
    if job.startswith(ARGO_PREFIX):
        return job if _DNS_NAME.fullmatch(job[len(ARGO_PREFIX):]) else ""
    return "" if _url(job) else job


def described(job: str) -> str:
    """How a holder's job is said after its owner ("" when none is recorded)."""
    return f", CI job {job}" if job else ""
