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
    (JOB.format(value="2024-01-01") + "  backoffLimit: 1:30\n", "'1:30': write integers in decimal, a file mode in "
                                                                 "octal with a leading 0"),
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


# Jobs as the Kubernetes documentation writes them (concepts/workloads/controllers/job: `pi`, the Pod failure
# policy example; tasks/job/indexed-parallel-processing-static; a Secret mounted as its docs mount one,
# concepts/configuration/secret, `defaultMode: 0400`), each loaded as `--retrain-job` is
DOCS_JOBS = {
    "pi": """apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  template:
    spec:
      containers:
      - name: pi
        image: perl:5.34.0
        command: ["perl",  "-Mbignum=bpi", "-wle", "print bpi(2000)"]
      restartPolicy: Never
  backoffLimit: 4
""",
    "indexed": """apiVersion: batch/v1
kind: Job
metadata:
  name: 'indexed-job'
spec:
  completions: 5
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      initContainers:
      - name: 'input'
        image: 'docker.io/library/bash'
        command:
        - "bash"
        - "-c"
        - |
          items=(foo bar baz qux xyz)
          echo ${items[$JOB_COMPLETION_INDEX]} > /input/data.txt
        volumeMounts:
        - mountPath: /input
          name: input
      containers:
      - name: 'worker'
        image: 'docker.io/library/busybox'
        command:
        - "rev"
        - "/input/data.txt"
        volumeMounts:
        - mountPath: /input
          name: input
      volumes:
      - name: input
        emptyDir: {}
""",
    "pod-failure-policy": """apiVersion: batch/v1
kind: Job
metadata:
  name: job-pod-failure-policy-example
spec:
  completions: 12
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: docker.io/library/bash:5
        command: ["bash"]        # example command simulating a bug which triggers the FailJob action
        args:
        - -c
        - echo "Hello world!" && sleep 5 && exit 42
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes:
        containerName: main      # optional
        operator: In             # one of: In, NotIn
        values: [42]
    - action: Ignore             # one of: Ignore, FailJob, Count
      onPodConditions:
      - type: DisruptionTarget   # indicates Pod disruption
""",
    "secret-volume": """apiVersion: batch/v1
kind: Job
metadata:
  name: retrain
spec:
  ttlSecondsAfterFinished: 100
  template:
    spec:
      restartPolicy: OnFailure
      containers:
      - name: train
        image: trainer:1
        volumeMounts:
        - name: foo
          mountPath: "/etc/foo"
          readOnly: true
      volumes:
      - name: foo
        secret:
          secretName: mysecret
          defaultMode: 0400
          items:
          - key: username
            path: my-group/my-username
            mode: 0777
""",
}


@pytest.mark.parametrize("name", DOCS_JOBS)
def test_a_job_as_the_kubernetes_docs_write_it_is_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(DOCS_JOBS[name])
    job = load_job_template(path)
    assert job["kind"] == "Job" and job["spec"]["template"]["spec"]["containers"], job


def test_a_file_mode_in_octal_is_read_as_kubectl_reads_it(tmp_path: Path) -> None:
    """`defaultMode: 0400` is the Kubernetes docs' way to write a mode (YAML 1.1 octal, as kubectl reads it: 256).
    Refused as a policy's `010` is, its hint ("write integers in plain decimal") led to `defaultMode: 400`, which
    the API server takes: mode 0620, a Secret's files writable by the group (decision 791)."""
    path = tmp_path / "job.yaml"
    path.write_text(DOCS_JOBS["secret-volume"])
    secret = load_job_template(path)["spec"]["template"]["spec"]["volumes"][0]["secret"]
    assert secret["defaultMode"] == 0o400 == 256 and secret["items"][0]["mode"] == 0o777, secret
