"""A URL as a message may show it: no user:password@, no secret-looking query value.

Every URL the tool quotes (Prometheus's, a webhook's, the Kubernetes API server's) can carry
credentials: `http://user:pass@prometheus:9090`, `https://hooks/x?token=...`. Whatever quotes one --
an error message, a log field, a report, status, a Kubernetes Event, a Slack or webhook post -- goes to
people who must not read the password, so each quotes it through `redact_url` (or, for text that may
hold the URL, such as a library's exception, `scrub`). Shown as kubectl and Go's `url.Redacted` do:
the host, port and path stay (on-call must see which server failed), the userinfo becomes `***@`, and
the value of a query parameter whose name looks like a secret becomes `***`.
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"
# query parameter names whose values are credentials (OAuth, AWS/GCS/Azure signed URLs, Slack/Grafana
# tokens, API keys); matched as a whole name or as a word of it (`x-amz-signature`, `private_token`)
_SECRET_WORDS = ("token", "password", "passwd", "pass", "pwd", "secret", "key", "apikey", "auth", "sig",
                 "signature", "credential", "credentials", "code", "session", "jwt")
_SECRET_NAME = re.compile(r"(?:^|[-_.])(?:" + "|".join(_SECRET_WORDS) + r")(?:$|[-_.])", re.IGNORECASE)
# user:password@ (or token@) after a scheme's `//`, in any text: what urlsplit cannot parse is still cut. Up to
# the authority's LAST `@`, as urlsplit and requests read it: `//ops:p@ss@prom` is user ops, password p@ss
# (cut at the first `@`, "ss@prom" was shown: decision 975)
_USERINFO = re.compile(r"(//)[^/?#\s'\"]+@")


def secret_param(name: str) -> bool:
    """Whether a query parameter called `name` carries a credential (its value is not shown)."""
    return bool(_SECRET_NAME.search(name.strip()))


def redact_url(url: str) -> str:
    """`url` with its userinfo as `***@` and each secret-looking query value as `***`; the scheme,
    host, port, path and the other parameters as they were. Never raises: text that is no URL has
    any `//user:pass@` in it cut all the same."""
    text = str(url)
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    base, sep, rest = text.partition("?")
    if not sep:
        return text
    query, hash_, fragment = rest.partition("#")
    shown = []
    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        shown.append(f"{name}={MASK}" if eq and secret_param(urllib.parse.unquote_plus(name)) else pair)
    return f"{base}?{'&'.join(shown)}{hash_}{fragment}"


def bare_url(url: str) -> str:
    """scheme://host[:port]/path of `url`: no userinfo, and no query or fragment at all -- for a URL
    whose query is the secret whatever its parameters are called (a webhook's `?hook=...`)."""
    try:
        u = urllib.parse.urlsplit(str(url))
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return redact_url(str(url)).partition("?")[0].partition("#")[0]
    host = f"[{u.hostname}]" if ":" in (u.hostname or "") else u.hostname or ""  # IPv6 in its brackets (975)
    return f"{u.scheme}://{host}{port}{u.path}"


def scrub(text: str, *urls: str, whole_query: bool = False) -> str:
    """`text` (an exception's words, a message) with every credential of `urls` replaced as
    `redact_url` shows it, and any `//user:pass@` left in it cut: requests and urllib3 name the URL
    they failed on, sometimes whole, sometimes as their own parts (a password quoted alone).
    `whole_query`: each URL's query and fragment shown as `?...` and `#...` (as `bare_url` drops them)."""
    out = str(text)
    for url in filter(None, urls):
        try:
            parts = urllib.parse.urlsplit(url)
            secrets = [parts.password or "", urllib.parse.unquote(parts.password or "")]
            secrets += [v for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if secret_param(k)]
        except ValueError:
            parts, secrets = None, []
        if whole_query and parts is not None:
            for part, shown in ((f"?{parts.query}", "?..."), (f"#{parts.fragment}", "#...")):
                if len(part) > 2:  # with its delimiter: a short one must not blank out words of the message
                    out = out.replace(part, shown)
        out = out.replace(url, redact_url(url))
        for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
            out = out.replace(secret, MASK)  # short ones would blank out words of the message
    return _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", out)


def at_after_host(url: str) -> bool:
    """Whether `url` has an `@` after its host (in the path, query or fragment): a password with an unencoded
    `/`, `?` or `#` (`http://ops:ab/cd@prom:9090`), which urlsplit and requests read as host `ops`, port `ab`
    and a path; `redact_url` cannot tell it from a path, so a URL that must not have one is refused unquoted."""
    rest = str(url).partition("//")[2]
    after = re.search(r"[/?#]", rest)
    return bool(after) and "@" in rest[after.start():]


def unseen_host(url: str) -> str:
    """Why a request to `url` could go to a host other than the one a person reading it sees ("" when it cannot);
    the same rule for every URL this tool sends to (Prometheus, the notify webhooks and Slack, the retraining
    webhook; a Triton URL takes no user and no path at all, `triton.check_url`). Worded to follow the URL's name,
    never quoting it (it may hold a password or a token):

    * an `@` after the host (in the path, query or fragment, `at_after_host`): `http://ops:1234/s3cret@ci/x`
      is host `ops`, port 1234, not `ci` (decision 975);
    * a user name with no password before the host (`http://hooks.example@evil.example/x`): it reads as the
      host, and the request goes to the host after the `@` with the name as basic auth. A `user:password@` is
      credentials, plainly: honoured where the URL may carry them (sent as basic auth), unless it reads as a
      host:port (`http://hooks.example:443@evil.example/x` goes to `evil.example`; decision 1018)."""
    text = str(url)
    if at_after_host(text):
        return ("has an '@' after its host (in its path, query or fragment): an '@' that is data there (an e-mail "
                "address, `?to=ops@example.com`) is written %40, which the server reads as '@'; a user:password@ "
                "whose password has an unencoded '/', '?' or '#' is read as a host, a port and a path, and the "
                "request would go to that host: percent-encode them (%2F, %3F, %23)")
    netloc = text.partition("//")[2]
    netloc = re.split(r"[/?#]", netloc, maxsplit=1)[0]
    userinfo, at, _host = netloc.rpartition("@")
    if at and userinfo and ":" not in userinfo:
        return ("has a name and an '@' before its host but no password (name@host): it reads as the host, and the "
                "request would go to the host after the '@'; give user:password@ for basic auth (name:@ for a name "
                "alone, such as a token: sent as basic auth with an empty password), or leave it out")
    if at and _HOST_PORT.fullmatch(userinfo):
        return ("has a host:port and an '@' before its host (host.example:443@...): it reads as the host, and the "
                "request would go to the host after the '@', the host:port sent as a user and password; if they are "
                "credentials, percent-encode a character of the user name (a '.' as %2E)")
    return ""


# a user:password that reads as a host:port (`http://hooks.example:443@evil.example/x`): a dotted name, `localhost`
# or a bracketed IPv6 address, and a port's digits (decision 1018)
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+):[0-9]{1,5}")


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(`url` without its user:password@, (user, password) percent-decoded, or None when it had none),
    as requests reads a URL's credentials; the caller sends them as basic auth."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    # `http://@prom` or `http://:@prom`: no credentials, as requests reads it (`any(url_auth)`); it was sent as
    # basic auth with an empty user and password, and refused with --prometheus-token (decision 975)
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), ((user, password) if user or password else None)
