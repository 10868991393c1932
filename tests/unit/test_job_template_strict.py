"""The retraining Job template is read as a policy is: strictly, within bounds, errors naming the file (decision 770).

`yaml.safe_load` sent `value: yes` as true (the API server then refused the Job, at the episode, not at start),
a date as a `datetime.date` (no JSON body could hold it), kept a duplicate key's last value silently, and
expanded an alias bomb."""

from __future__ import annotations

from pathlib import Path

import pytest

from canary.drift.retrain import load_job_template
from canary.errors import ConfigError

JOB = """apiVersion: batch/v1
kind: Job
metadata: {{name: retrain}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: train
        image: trainer:1
        env:
        - {{name: FULL, value: {value}}}
"""


@pytest.mark.parametrize(("text", "says"), [
    (JOB.format(value="yes"), "line 12, column 31: 'yes': write true or false (or quote it for a string)"),
    (JOB.format(value="2024-01-01") + "  backoffLimit: 010\n", "'010': write integers in plain decimal"),
    (JOB.format(value='"1"') + "kind: Pod\n", "duplicate key 'kind'"),
])
def test_a_job_template_is_read_strictly_naming_the_file(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_job_template(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read the Job template: not valid YAML") and says in message, message


def test_a_job_template_that_expands_past_the_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n")
    with pytest.raises(ConfigError) as err:
        load_job_template(path)
    assert str(err.value) == f"{path}: cannot read the Job template: too large: more than 10000 values (YAML aliases " \
                             "expanding?)", err.value


def test_a_date_stays_the_text_written(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(value="2024-01-01"))
    env = load_job_template(path)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "FULL", "value": "2024-01-01"}]
