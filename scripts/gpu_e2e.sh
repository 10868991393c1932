#!/usr/bin/env bash
# The sandbox with the model on a GPU: good and slow scenarios, GPU metrics per arm.
#
#   scripts/gpu_e2e.sh fetch   # HERE (with network): cp312 wheels unpacked + haproxy + prometheus into .wheels/
#   scripts/gpu_e2e.sh run     # ON THE GPU MACHINE (no network), from the repo root, with
#                              # carry: [".wheels/site312.tar.xz", ".wheels/bin", ".wheels/lib"]
#
# Why two halves: the GPU machine has Python 3.12 with torch (CUDA) and numpy 2.x
# but no network, no PyTriton, no haproxy, no prometheus. PyTriton 0.7 needs
# numpy < 2, so numpy 1.26 (cp312) goes into a private site dir on PYTHONPATH that
# shadows the machine's numpy 2 (torch's numpy bridge works with 1.26: it is built
# against numpy 2, which is backward compatible at run time). The machine's own
# site-packages stay untouched. Everything carried must stay under 64 MiB, so the
# wheels travel unpacked, pruned and xz-compressed as one tar (no pip needed there),
# the binaries xz-compressed, and only the libraries haproxy misses.
# Results: a table on stdout and $OUT/gpu_e2e.json (when $OUT is set).
set -euo pipefail
cd "$(dirname "$0")/.."
W=.wheels

PLATFORMS=(--python-version 3.12 --implementation cp --only-binary=:all:
  --platform manylinux_2_35_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_31_x86_64
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
  --platform manylinux1_x86_64 --platform any)

fetch() {
  local py=${PYTHON:-.venv/bin/python}
  rm -rf "$W/dl" "$W/site312" "$W/bin" "$W/lib" "$W/site312.tar.xz" "$W"/*.whl
  mkdir -p "$W/dl" "$W/bin" "$W/lib"
  # Pinned to what the CPU sandbox is tested with; only what the GPU image lacks.
  # (Present there: aiohttp, attrs, grpcio, protobuf, prometheus-client, pyyaml,
  # requests, rich, typer, scipy, packaging, wrapt, typing-inspect, urllib3 ...)
  local pkgs=(
    nvidia-pytriton==0.7.0 numpy==1.26.4 pyzmq==27.3.0 sh==2.4.0 importlib_metadata==10.2.0 zipp==4.1.2
    tritonclient==2.73.0 python-rapidjson==1.25 geventhttpclient==2.6.1 gevent==26.9.0 greenlet==3.3.2
    zope.event==6.2 zope.interface==8.7 brotli==1.2.1 certifi==2026.10.19.post1
    kubernetes==37.0.2 durationpy==0.11 websocket-client==1.9.2 requests-oauthlib==2.0.0 oauthlib==4.0.1
    python-dateutil==4.0.0 kmock==0.8 lazy-importer==0.1.0 jsonpatch==1.48 jsonpointer==3.12
    ml_dtypes==0.5.4 urllib3==2.8.0
    structlog==26.1.0 tenacity==9.2.1 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
    typing-inspection==0.4.5 typing_extensions==4.16.0
    prometheus-api-client==0.7.2 dateparser==1.5.0 tzlocal==5.4.5 pytz==2026.6 aiohttp-retry==2.9.1
  )
  "$py" -m pip download -q --no-deps "${PLATFORMS[@]}" -d "$W/dl" "${pkgs[@]}"
  # Unpack here into one cp312 site dir and ship it as ONE xz stream: the carried tree is
  # capped at 64 MiB and the wheels alone are ~90 MB. Pruned: the libpython3.13 that
  # PyTriton grafts for its 3.13 stub (32 MB) and the stubs of other Pythons.
  "$py" -m pip install -q --no-deps --no-compile "${PLATFORMS[@]}" --target "$W/site312" "$W"/dl/*.whl
  rm -f "$W"/site312/nvidia_pytriton.libs/libpython3-*.13.so*
  for v in 3.8 3.9 3.10 3.11 3.13; do rm -rf "$W/site312/pytriton/tritonserver/python_backend_stubs/$v"; done
  find "$W/site312" -name __pycache__ -prune -exec rm -rf {} +
  rm -rf "$W"/site312/numpy/*/tests "$W"/site312/kubernetes/test "$W"/site312/bin
  tar -C "$W/site312" -cf - . | xz -T0 -9e > "$W/site312.tar.xz"
  rm -rf "$W/site312"
  # The data plane and the metrics store, as Debian built them (the GPU image has a newer glibc).
  xz -9e -c /usr/sbin/haproxy > "$W/bin/haproxy.xz"
  for lib in liblua5.3.so.0 libopentracing-c-wrapper.so.0 libopentracing.so.1; do
    cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')" "$W/lib/$lib"
  done
  xz -T0 -9e -c /usr/bin/prometheus > "$W/bin/prometheus.xz"
  du -ch "$W/site312.tar.xz" "$W/bin" "$W/lib" | tail -1
  echo "carry: [\"$W/site312.tar.xz\", \"$W/bin\", \"$W/lib\"]"
}

run() {
  local py=${PY:-/opt/torch/.venv/bin/python3}
  local site=/tmp/canary-site out=${OUT:-/tmp/canary-gpu-out}
  mkdir -p "$out" /tmp/canary-bin "$site"
  tar -C "$site" -xJf "$W/site312.tar.xz"
  # Outside the interpreter's site-packages PyTriton believes it is an editable install
  # and looks for its libraries in tritonserver/external_libs: point that at the wheel's.
  ln -sfn "$site/nvidia_pytriton.libs" "$site/pytriton/tritonserver/external_libs"
  for b in haproxy prometheus; do xz -dc "$W/bin/$b.xz" > "/tmp/canary-bin/$b"; chmod +x "/tmp/canary-bin/$b"; done
  # $site must come first in EVERY Python of this interpreter, including the Python-backend
  # stub that Triton embeds (it ignores PYTHONPATH but reads the interpreter's site-packages,
  # found through PATH): a .pth there puts $site at the front, so numpy 1.26 and pyzmq win.
  # PyTriton 0.7 really needs numpy < 2 (with numpy 2 its proxy returns empty outputs).
  # The controller (`canary promote`) runs with CANARY_GPU_IMAGE_NUMPY=1: $site goes to the
  # END of its path, so it uses the image's numpy 2 and the scipy built for it (scipy >= 1.18
  # does not import on numpy 1.26) and still finds kubernetes, pydantic, tritonclient in $site.
  # (The machine is bare and given back afterwards; nothing else is changed in its venv.)
  local site_pkgs; site_pkgs=$("$py" -c 'import site; print(site.getsitepackages()[0])')
  echo "import os, sys; (sys.path.append if os.environ.get('CANARY_GPU_IMAGE_NUMPY') else (lambda p: sys.path.insert(0, p)))('$site')" \
    > "$site_pkgs/00-canary-gpu-e2e.pth"
  export PATH=/tmp/canary-bin:$PATH PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  local libdir; libdir=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
  # LIBDIR: PyTriton's Python-backend stub links libpython3.12 (see shared/reference/README.md);
  # $W/lib: the three libraries haproxy needs that the image lacks.
  export LD_LIBRARY_PATH=$libdir:$PWD/$W/lib:${LD_LIBRARY_PATH:-}
  ls "$libdir"/libpython3.12*.so* >/dev/null 2>&1 || echo "WARNING: no libpython3.12 shared library in $libdir"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  haproxy -v | sed -n 1p  # not head: with pipefail, SIGPIPE would end the script
  "$py" - "$out" <<'EOF'
import json, os, subprocess, sys, threading, time, urllib.request
from pathlib import Path

import numpy
DEVICE = os.environ.get("CANARY_GPU_DEVICE", "cuda")  # "cpu": a dry run of this script without a GPU
print(f"numpy {numpy.__version__} python {sys.version.split()[0]} device {DEVICE}", flush=True)
assert numpy.__version__.startswith("1."), "the carried numpy 1.26 did not shadow the image's numpy 2"
CONTROLLER_ENV = dict(os.environ, CANARY_GPU_IMAGE_NUMPY="1")  # see the .pth written above
print(subprocess.run([sys.executable, "-c", "import numpy, scipy; print('controller: numpy', numpy.__version__, "
                      "'scipy', scipy.__version__)"], env=CONTROLLER_ENV, capture_output=True, text=True).stdout,
      flush=True)
if DEVICE == "cuda":
    import torch
    print(f"torch {torch.__version__} cuda {torch.cuda.is_available()}", flush=True)
    assert torch.cuda.is_available(), "no CUDA device visible to torch"
from kubernetes import client, config
from canary.sandbox.env import Sandbox

out = Path(sys.argv[1])
GPU_NAMES = ("nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_power_usage")

def triton_gpu(url):
    """GPU series from one Triton's /metrics (needs DCGM in the server; may be absent)."""
    found = {}
    for line in urllib.request.urlopen(url, timeout=2).read().decode().splitlines():
        for name in GPU_NAMES:
            if line.startswith(name + "{") or line.startswith(name + " "):
                found[name] = max(found.get(name, 0.0), float(line.rsplit(" ", 1)[1]))
    return found

def smi(*args):
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""

def smi_by_pid():
    """Per-process GPU memory (MiB) from nvidia-smi (Triton's own GPU metrics need DCGM)."""
    text = smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
    return {int(p): float(m) for p, m in (l.split(",") for l in text.strip().splitlines() if "," in l)}

def group_of(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[2])
    except OSError:
        return -1

def sample(sb, stop, samples):
    while not stop.is_set():
        row = {"t": time.monotonic()}
        per_pid = smi_by_pid()
        util = smi("--query-gpu=utilization.gpu", "--format=csv,noheader,nounits")
        row["gpu_util_pct"] = float(util.splitlines()[0]) if util else None
        for s in (sb.stable, sb.canary):
            row[s.arm] = {"gpu_mem_mib": sum(m for p, m in per_pid.items() if group_of(p) == s.pid)}
            try:
                row[s.arm].update(triton_gpu(s.triton_metrics_url))
            except OSError:
                pass
        samples.append(row)
        stop.wait(1.0)

results = []
for scenario in ("good", "slow"):
    t0 = time.monotonic()
    with Sandbox(scenario, device=DEVICE, rate=60) as sb:
        started = time.monotonic() - t0
        stop, samples = threading.Event(), []
        th = threading.Thread(target=sample, args=(sb, stop, samples), daemon=True); th.start()
        cmd = [sys.executable, "-m", "canary", *sb.promote_args("policies/sandbox.yaml"), "--output", "json"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=CONTROLLER_ENV)
        stop.set(); th.join()
        try:
            state = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            state = {"phase": "?", "reason": (r.stdout + r.stderr)[-600:]}
        arms = {}
        for arm in ("stable", "canary"):
            rows = [s[arm] for s in samples if arm in s]
            arms[arm] = {k: round(max((r.get(k, 0.0) for r in rows), default=0.0), 1)
                         for k in ("gpu_mem_mib", *GPU_NAMES)}
        res = {"scenario": scenario, "exit_code": r.returncode, "phase": state.get("phase"),
               "reason": str(state.get("reason", ""))[:300], "sandbox_start_s": round(started, 1),
               "max_gpu_util_pct": max((s["gpu_util_pct"] or 0 for s in samples), default=None),
               "arms": arms, "summary": sb.summary()}
        results.append(res)
        print(json.dumps(res, indent=1), flush=True)

(out / "gpu_e2e.json").write_text(json.dumps(results, indent=1))
print("\nscenario  exit  phase        stable GPU MiB  canary GPU MiB  reason")
for r in results:
    print(f"{r['scenario']:<9} {r['exit_code']:<5} {str(r['phase']):<12} {r['arms']['stable']['gpu_mem_mib']:>14} "
          f"{r['arms']['canary']['gpu_mem_mib']:>15}  {r['reason'][:80]}")
ok = [r["phase"] for r in results] == ["promoted", "rolled_back"]
print("GPU E2E", "PASSED" if ok else "FAILED (expected good=promoted, slow=rolled_back)")
sys.exit(0 if ok else 1)
EOF
}

case "${1:-}" in
  fetch) fetch ;;
  run) run ;;
  *) echo "usage: $0 fetch|run" >&2; exit 2 ;;
esac
