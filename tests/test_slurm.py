"""The tiny demo DAG through `workflow/profiles/slurm` on a single-node SLURM started here
(munged, slurmctld, slurmd; two fake GPUs as gres), as a user submits to a cluster.

Needs root and Debian's `slurmctld slurmd slurm-client munge` (.ci/run installs them); skipped
without them, except where UNIEGO_REQUIRE_SLURM=1 (CI) makes their absence a failure. The
daemons use their own ports and state folder and are stopped by PID. The config must be
/etc/slurm/slurm.conf: the plugin's job step drops SLURM_CONF before its `srun`. So the test
refuses to run where a slurm.conf of another cluster exists, and removes its own at the end."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_workflow

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")


def _unavailable(reason: str):
    if os.environ.get("UNIEGO_REQUIRE_SLURM") == "1":
        pytest.fail(f"UNIEGO_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


def _which(name: str):
    return shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d, name)).exists()), None)


def _munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
        return cred.returncode == 0 and subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _wait(check, what: str, timeout: float = 30.0):
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"SLURM test cluster: {what} did not come up within {timeout:.0f} s")


ETC = Path("/etc/slurm")
SLURM_CONF = """ClusterName=uniegotest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={d}/spool/ctld
SlurmdSpoolDir={d}/spool/d
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={d}/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [d for d in DAEMONS if _which(d) is None]
    if missing:
        _unavailable(f"SLURM is not installed (missing {', '.join(missing)}; apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        _unavailable("starting slurmd needs root")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        _unavailable("snakemake-executor-plugin-slurm is not installed")
    conf = ETC / "slurm.conf"
    if conf.exists() and "ClusterName=uniegotest" not in conf.read_text():
        _unavailable(f"{conf} exists (a real SLURM setup); the test will not replace it")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("spool/ctld", "spool/d", "log"):
        (d / sub).mkdir(parents=True)
    host = socket.gethostname().split(".")[0]
    mem = int(int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1024 * 0.8)
    ETC.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    procs = []
    try:
        conf.write_text(SLURM_CONF.format(host=host, d=d, cpus=os.cpu_count(), mem=mem))
        (ETC / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/tty[0-1]\n")  # two fake GPUs
        if not _munge_works():
            Path("/run/munge").mkdir(exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            procs.append(subprocess.Popen([_which("munged"), "--foreground"], user="munge", group="munge",
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait(_munge_works, "munged")
        for daemon in ("slurmctld", "slurmd"):
            procs.append(subprocess.Popen([_which(daemon), "-D", "-f", str(conf)], env=env,
                                          stdout=open(d / f"log/{daemon}.out", "w"), stderr=subprocess.STDOUT))
        _wait(lambda: subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip() == "idle",
              "the node (sinfo: idle)")
        yield {"env": env, "dir": d}
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in ("slurm.conf", "gres.conf"):
            (ETC / f).unlink(missing_ok=True)


def test_profile_keys_name_real_rules():
    """Every rule the profile sizes exists (a typo would silently drop its resources)."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    rules = set(re.findall(r"(?m)^rule (\w+):", "".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))))
    assert profile["executor"] == "slurm"
    for section in ("set-resources", "set-threads"):
        assert set(profile[section]) <= rules, set(profile[section]) - rules


def _test_profile(work: Path) -> Path:
    """The repository's profile sized down to this 2-core node (same rules, same keys), with
    the squeue status query (no accounting here) and a short first status check."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    for res in [profile["default-resources"], *profile["set-resources"].values()]:
        if "mem_mb" in res:
            res["mem_mb"] = 500
        if "cpus_per_gpu" in res:
            res["cpus_per_gpu"] = 1
        res["runtime"] = 30
    profile["set-threads"] = {k: 1 for k in profile["set-threads"]}
    profile["default-resources"]["slurm_partition"] = "debug"
    profile.update({"slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 1, "latency-wait": 5,
                    "jobs": 4, "slurm-keep-successful-logs": True})
    out = work / "profiles" / "test"
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(profile))
    return out


def _jobcomp(path: Path) -> dict:
    jobs = {}
    for line in path.read_text().splitlines():
        f = dict(re.findall(r"(\w+)=(\S*)", line))
        jobs[f["JobId"]] = {"state": f["JobState"], "start": datetime.fromisoformat(f["StartTime"]),
                            "end": datetime.fromisoformat(f["EndTime"])}
    return jobs


def test_tiny_dag_through_the_slurm_profile(slurm, tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    copy_workflow(work, "tests")
    profile = _test_profile(work)
    targets = ["results/tiny/proxies/ego_dino.pt", "results/tiny/proxies/exo_dino.pt"]
    r = subprocess.run([sys.executable, "-m", "snakemake", "--profile", str(profile), *targets,
                        "--configfile", "tests/configs/tiny.yaml"], cwd=work, env=slurm["env"], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert all((work / t).is_file() for t in targets)
    jobs = _jobcomp(slurm["dir"] / "log/jobcomp.txt")
    # every non-local job was a SLURM job: demo data, check, clips x2, extract x2, train_proxy x2,
    # and the pretraining they use: the corpus, the DINOv2 stand-in and the student start
    assert len(jobs) == 11 and all(j["state"] == "COMPLETED" for j in jobs.values()), jobs
    gpu = {}
    for log in [*work.glob("logs/tiny/extract/*.log"), *work.glob("logs/tiny/train_proxy/*.log")]:
        m = re.search(r"CUDA_VISIBLE_DEVICES=(\S+) was set by the scheduler \(SLURM job (\d+)\)", log.read_text())
        assert m, f"{log} does not show a SLURM-assigned device"
        gpu[m.group(2)] = m.group(1)
    assert len(gpu) == 4 and set(gpu) <= set(jobs)
    assert set(gpu.values()) == {"0", "1"}
    pairs = [(a, b) for a in gpu for b in gpu if a < b and jobs[a]["start"] < jobs[b]["end"] and jobs[b]["start"] < jobs[a]["end"]]
    assert pairs, "no two GPU jobs ran at the same time"
    assert all(gpu[a] != gpu[b] for a, b in pairs), [(a, b, gpu[a], gpu[b]) for a, b in pairs]
