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
    `Argo Workflow <name>`; "" when none is, or when what is set is not valid."""
    bad: list[tuple[str, str]] = []
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "").rstrip("/")
        checks = [("GITHUB_SERVER_URL", _url(server, base=True)),
                  ("GITHUB_REPOSITORY", "" if _GITHUB_REPO.fullmatch(env.get("GITHUB_REPOSITORY", "")) else
                   "not owner/name"),
                  ("GITHUB_RUN_ID", "" if _DIGITS.fullmatch(env.get("GITHUB_RUN_ID", "")) else "not a number")]
        attempt = env.get("GITHUB_RUN_ATTEMPT", "")
        if attempt and not _DIGITS.fullmatch(attempt):
            checks.append(("GITHUB_RUN_ATTEMPT", "not a number"))
        bad = [(name, why) for name, why in checks if why]
        if not bad:
            url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
            url += f"/attempts/{attempt}" if attempt else ""
            if not (why := _url(url)):
                return url, []
            bad = [("GITHUB_SERVER_URL", why)]
        return "", bad
    for marker, name in (("GITLAB_CI", "CI_JOB_URL"), ("JENKINS_URL", "BUILD_URL")):
        if (env.get(marker) == "true" if marker == "GITLAB_CI" else bool(env.get(marker))) and name in env:
            url = env[name]
            why = _url(url)
            return ("", [(name, why)]) if why else (url, [])
    if "ARGO_WORKFLOW_NAME" in env:
        name = env["ARGO_WORKFLOW_NAME"]
        if _DNS_NAME.fullmatch(name):
            return ARGO_PREFIX + name, []
        return "", [("ARGO_WORKFLOW_NAME", "not a Kubernetes object name")]
    return "", []


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
