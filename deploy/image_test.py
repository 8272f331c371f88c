#!/usr/bin/env python3
"""Runs the CPU image as the CPU overlay's Deployment would, beside Redis, and measures it.

    deploy/image_test.py [--image lic:cpu] [--redis-image lic-redis:bookworm] [--long-timeout-s 300]
                         [--out benchmarks/image_test.json]

(`make image-test` builds both images and runs this; it is not part of `make test`.)

What the container gets comes from `kubectl kustomize deploy/k8s/overlays/cpu`, not from a copy here:
the ConfigMap and Secret as its environment; the Deployment's user and group, read-only root, dropped
capabilities, no privilege escalation (`--security-opt no-new-privileges`), Docker's default seccomp
profile (RuntimeDefault), /tmp as a tmpfs of the emptyDir's sizeLimit, its memory limit and its CPU
limit (at most the machine's cores: Docker refuses more), no swap; Redis gets the Redis Deployment's
arguments, user, read-only root and memory limit, on a network of its own under the Service's name
(lic-redis), so LIC_REDIS_URL is the manifest's own. Only lic's port is published, on 127.0.0.1; every
request goes there.

Then, per run: wait for /readyz (the startup probe's budget), round-trip tests/data/kodim01.png (twice:
the second decode is served from Redis) and a 12 MP photo-like image (the one
benchmarks/service_memory.py makes), then --uploads (4) concurrent 12 MP round trips, scrape /metrics,
check the pod's constraints from inside (uid, no capabilities, read-only root), send SIGTERM with a
request in flight and another sent during the drain, and check the drain: /readyz 503 at once, both
requests served, the listener closed after LIC_DRAIN_SECONDS and a clean exit (status 0) within
terminationGracePeriodSeconds. Memory comes from the container's cgroup, sampled every 0.2 s (usage,
and the working set: usage less inactive file pages, what `docker stats` and the kubelet show; peak per
step and overall) and the kernel's own high-water mark (memory.max_usage_in_bytes or memory.peak), and
each process's RSS after each step.

Two runs: the overlay's settings as they are and, when a 12 MP request of the first run passed its
deadline (503: the 2-core machine is slow, and under concurrent load queued requests wait), the same
with LIC_REQUEST_TIMEOUT_S raised (--long-timeout-s, 0 to skip), so that the memory of 12 MP requests
that all run to completion is measured too. Exits non-zero when a check fails (a status other than 200,
or 503 for 12 MP requests in the first run; a missing metric; Redis unused; a constraint not in force;
an OOM kill; a drain that is not clean); writes benchmarks/image_test.json either way.
"""
from __future__ import annotations

import argparse
import glob
import http.client
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.service_memory import photo_12mp  # noqa: E402  the same 12 MP image as the service measurement
KODIM01 = ROOT / "tests" / "data" / "kodim01.png"
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "cpu"
MIB = 2**20


def sh(*args: str, check: bool = True, timeout: float | None = 120) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode:
        raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip()


def quantity(value: str) -> float:
    """A Kubernetes quantity as a number (bytes for memory, cores for CPU)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for unit, factor in units.items():
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    return float(value)


def overlay() -> dict:
    docs = [d for d in yaml.safe_load_all(sh("kubectl", "kustomize", str(OVERLAY))) if d]

    def find(kind: str, name: str) -> dict:
        return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)

    lic = find("Deployment", "lic")["spec"]["template"]["spec"]
    redis = find("Deployment", "lic-redis")["spec"]["template"]["spec"]
    env = dict(find("ConfigMap", "lic-config")["data"])
    env.update(find("Secret", "lic-api-keys").get("stringData", {}))
    return {"lic": lic, "redis": redis, "env": env}


def psnr(a: bytes, b: bytes) -> float:
    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.float64)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float64)
    return float(10 * np.log10(255**2 / np.mean((x - y) ** 2)))


class Client:
    def __init__(self, port: int):
        self.port = port

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 10) -> tuple[int | str, bytes, dict, float]:
        """(status or the error's name, body, headers, seconds)."""
        start = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            return response.status, data, {k.lower(): v for k, v in response.headers.items()}, time.monotonic() - start
        except (OSError, http.client.HTTPException) as exc:
            return type(exc).__name__, b"", {}, time.monotonic() - start
        finally:
            connection.close()

    def status(self, path: str, timeout: float = 2) -> int | str:
        return self.request("GET", path, timeout=timeout)[0]


class CgroupMemory:
    """The container's memory cgroup (v1 or v2, cgroupfs or systemd driver), sampled in a thread."""

    def __init__(self, container_id: str):
        candidates = [f"/sys/fs/cgroup/memory/docker/{container_id}", f"/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope",
                      f"/sys/fs/cgroup/docker/{container_id}", f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope"]
        candidates += glob.glob(f"/sys/fs/cgroup/**/*{container_id}*", recursive=True)
        self.path = next(Path(c) for c in candidates if Path(c, "memory.usage_in_bytes").exists() or Path(c, "memory.current").exists())
        self.v2 = (self.path / "memory.current").exists()
        self.peak_usage = self.peak_working_set = self.peak_anon = 0
        self.kernel: int | None = None  # the kernel's high-water mark, read while the cgroup exists
        self.window_peak = 0  # peak working set since the last window()
        self._since = (time.monotonic(), self.cpu_seconds())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def sample(self) -> dict:
        usage = int(self._read("memory.current" if self.v2 else "memory.usage_in_bytes"))
        stat = dict(line.split() for line in self._read("memory.stat").splitlines())
        inactive_file = int(stat.get("inactive_file" if self.v2 else "total_inactive_file", 0))
        anon = int(stat.get("anon", 0)) if self.v2 else int(stat.get("total_rss", 0))
        shmem = int(stat.get("shmem", 0) if self.v2 else stat.get("total_shmem", 0))
        return {"usage": usage, "working_set": usage - inactive_file, "anon": anon, "shmem": shmem}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                s = self.sample()
            except OSError:  # the container is gone
                return
            self.peak_usage = max(self.peak_usage, s["usage"])
            self.peak_working_set = max(self.peak_working_set, s["working_set"])
            self.window_peak = max(self.window_peak, s["working_set"])
            self.peak_anon = max(self.peak_anon, s["anon"])
            self.kernel = self.kernel_peak() or self.kernel
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time the container's processes used (cgroup v2 cpu.stat, or v1 cpuacct.usage)."""
        if self.v2:
            return int(dict(line.split() for line in self._read("cpu.stat").splitlines())["usage_usec"]) / 1e6
        relative = str(self.path).split("/sys/fs/cgroup/memory/", 1)[1]
        for controller in ("cpuacct", "cpu,cpuacct"):
            usage = Path("/sys/fs/cgroup", controller, relative, "cpuacct.usage")
            if usage.exists():
                return int(usage.read_text()) / 1e9
        return float("nan")

    def window(self) -> dict:
        """Since the previous call: the peak working set (MiB), the wall and CPU seconds and the mean cores busy."""
        peak, self.window_peak = max(self.window_peak, self.sample()["working_set"]), 0
        now, cpu = time.monotonic(), self.cpu_seconds()
        wall, used = now - self._since[0], cpu - self._since[1]
        self._since = (now, cpu)
        return {"peak_working_set_mib": round(peak / MIB, 1), "wall_s": round(wall, 1), "cpu_s": round(used, 1),
                "mean_cores": round(used / wall, 2) if wall else None}

    def kernel_peak(self) -> int | None:
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            try:
                return int(self._read(name))
            except OSError:
                continue
        return None

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        kernel = self.kernel_peak() or self.kernel
        return {
            "cgroup": "v2" if self.v2 else "v1",
            "kernel_peak_mib": round(kernel / MIB, 1) if kernel is not None else None,
            "sampled_peak_usage_mib": round(self.peak_usage / MIB, 1),
            "sampled_peak_working_set_mib": round(self.peak_working_set / MIB, 1),
            "sampled_peak_anon_mib": round(self.peak_anon / MIB, 1),
        }


def processes(container: str) -> dict:
    """RSS of each process in the container (from the host's /proc), gateway first."""
    out = {}
    for line in sh("docker", "top", container, "-eo", "pid,args").splitlines()[1:]:
        pid, args = line.strip().split(None, 1)
        try:
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
        role = ("worker" if "spawn_main" in args else "gateway" if "lic serve" in args
                else "resource_tracker" if "resource_tracker" in args else args.split()[0])
        out.setdefault(role, []).append(round(rss / MIB, 1))
    return out


def roundtrip(client: Client, image: bytes, deadline_s: float, quality: int = 4) -> dict:
    status, lic, headers, t_compress = client.request("POST", f"/compress?quality={quality}", image,
                                                      {"Content-Type": "image/png"}, timeout=deadline_s + 120)
    result = {"compress_status": status, "compress_s": round(t_compress, 2)}
    if status != 200:
        return result
    result |= {"bytes": len(lic), "bpp": float(headers.get("x-lic-bpp", "nan")), "tiles": int(headers.get("x-lic-tiles", 0))}
    status, png, _, t_decompress = client.request("POST", "/decompress", lic, {"Content-Type": "application/vnd.lic"},
                                                  timeout=deadline_s + 120)
    result |= {"decompress_status": status, "decompress_s": round(t_decompress, 2)}
    if status == 200:
        result["psnr_db"] = round(psnr(image, png), 2)
    return result


def metric_values(text: str, names: tuple[str, ...]) -> dict:
    values = {}
    for line in text.splitlines():
        if line.startswith(names):
            key, value = line.rsplit(" ", 1)
            if float(value):
                values[key] = float(value)
    return values


class Run:
    def __init__(self, name: str, args, spec: dict, env_overrides: dict):
        self.name, self.args, self.spec = name, args, spec
        self.env = {**spec["env"], **env_overrides}
        self.suffix = f"{os.getpid()}-{len(name)}"
        self.network = f"lic-image-test-{self.suffix}"
        self.lic = f"lic-image-test-{self.suffix}"
        self.redis = f"lic-redis-image-test-{self.suffix}"
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
            print(f"  FAIL: {what}", file=sys.stderr)
        return ok

    def docker_args(self) -> tuple[list[str], list[str], dict]:
        pod = self.spec["lic"]
        container = pod["containers"][0]
        security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        limits = container["resources"]["limits"]
        cpus = min(quantity(limits["cpu"]), os.cpu_count() or 1)
        tmp_size = next(v.get("emptyDir", {}).get("sizeLimit", "1Gi") for v in pod["volumes"] if v["name"] == "tmp")
        lic = [
            "--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}",
            "--cap-drop", "ALL", "--memory", str(int(quantity(limits["memory"]))), "--memory-swap", str(int(quantity(limits["memory"]))),
            "--cpus", f"{cpus:g}", "--stop-timeout", str(pod["terminationGracePeriodSeconds"]),
            "--tmpfs", f"/tmp:rw,nosuid,nodev,size={int(quantity(tmp_size))},mode=1777",
        ]
        if security.get("readOnlyRootFilesystem"):
            lic.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            lic += ["--security-opt", "no-new-privileges"]
        for key, value in self.env.items():
            lic += ["--env", f"{key}={value}"]
        rpod = self.spec["redis"]
        rcontainer = rpod["containers"][0]
        rsecurity = {**rpod.get("securityContext", {}), **rcontainer.get("securityContext", {})}
        redis = ["--user", str(rsecurity["runAsUser"]), "--cap-drop", "ALL", "--tmpfs", "/data:rw,size=64m",
                 "--memory", str(int(quantity(rcontainer["resources"]["limits"]["memory"])))]
        if rsecurity.get("readOnlyRootFilesystem"):
            redis.append("--read-only")
        if rsecurity.get("allowPrivilegeEscalation") is False:
            redis += ["--security-opt", "no-new-privileges"]
        described = {
            "lic": {"user": f"{security['runAsUser']}:{security.get('runAsGroup')}", "read_only_root": bool(security.get("readOnlyRootFilesystem")),
                    "capabilities": "none (drop ALL)", "no_new_privileges": security.get("allowPrivilegeEscalation") is False,
                    "seccomp": "docker default (RuntimeDefault)", "memory_limit": limits["memory"],
                    "cpu_limit": limits["cpu"], "cpus_given": cpus, "tmp": f"tmpfs {tmp_size}",
                    "memory_request": container["resources"]["requests"]["memory"], "cpu_request": container["resources"]["requests"]["cpu"]},
            "redis": {"image": self.args.redis_image, "args": rcontainer.get("args", []), "user": rsecurity["runAsUser"],
                      "memory_limit": rcontainer["resources"]["limits"]["memory"]},
        }
        return lic, redis + [self.args.redis_image] + rcontainer.get("args", []), described

    def cleanup(self) -> None:
        for name in (self.lic, self.redis):
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", self.network], capture_output=True, check=False)

    def execute(self, kodak: bytes, big: bytes) -> dict:
        print(f"run: {self.name}", file=sys.stderr)
        lic_args, redis_args, described = self.docker_args()
        deadline = float(self.env["LIC_REQUEST_TIMEOUT_S"])
        result: dict = {"name": self.name, "env": self.env, "container": described}
        self.cleanup()
        try:
            sh("docker", "network", "create", self.network)
            sh("docker", "run", "-d", "--name", self.redis, "--network", self.network, "--network-alias", "lic-redis", *redis_args)
            started = time.monotonic()
            container_id = sh("docker", "run", "-d", "--name", self.lic, "--network", self.network, "-p", "127.0.0.1::8000",
                              *lic_args, self.args.image)
            memory = CgroupMemory(container_id)
            port = int(sh("docker", "port", self.lic, "8000/tcp").splitlines()[0].rsplit(":", 1)[1])
            client = Client(port)
            result["steps"] = steps = {}

            startup_budget = self.spec["lic"]["containers"][0]["startupProbe"]
            budget = startup_budget["periodSeconds"] * startup_budget["failureThreshold"]
            while client.status("/readyz") != 200:
                if time.monotonic() - started > budget or sh("docker", "inspect", "-f", "{{.State.Running}}", self.lic) != "true":
                    self.check(False, f"/readyz not 200 within the startup probe's {budget} s")
                    raise RuntimeError(sh("docker", "logs", "--tail", "30", self.lic, check=False))
                time.sleep(0.25)
            steps["ready"] = {"seconds": round(time.monotonic() - started, 1), "healthz": client.status("/healthz"),
                              "processes_rss_mib": processes(self.lic),
                              "working_set_mib": round(memory.sample()["working_set"] / MIB, 1)} | memory.window()
            print(f"  ready after {steps['ready']['seconds']} s", file=sys.stderr)

            probe = ("import json, os, pathlib; status = dict(l.split(':', 1) for l in open('/proc/1/status')); "
                     "pathlib.Path('/tmp/probe').write_text('x'); "
                     "print(json.dumps({'uid_gid': f'{os.getuid()}:{os.getgid()}', 'CapPrm': status['CapPrm'].strip(), "
                     "'CapEff': status['CapEff'].strip(), 'NoNewPrivs': status['NoNewPrivs'].strip(), "
                     "'root_mount': next(l.split()[3] for l in open('/proc/self/mounts') if l.split()[1] == '/').split(',')[0], "
                     "'root_writable': os.access('/', os.W_OK) or os.access('/app', os.W_OK), 'tmp_writable': True}))")
            inside = steps["constraints"] = json.loads(sh("docker", "exec", self.lic, "python", "-c", probe))
            self.check(inside["uid_gid"] == described["lic"]["user"], f"uid:gid {inside['uid_gid']}")
            self.check(inside["CapPrm"] == inside["CapEff"] == "0000000000000000" and inside["NoNewPrivs"] == "1", f"capabilities {inside}")
            self.check(not inside["root_writable"] and inside["root_mount"] == "ro", f"root filesystem {inside}")

            steps["kodak"] = roundtrip(client, kodak, deadline) | {"image": "tests/data/kodim01.png (768x512)"}
            steps["kodak"]["working_set_after_mib"] = round(memory.sample()["working_set"] / MIB, 1)
            steps["kodak"] |= memory.window()
            self.check(steps["kodak"].get("decompress_status") == 200, f"Kodak round trip {steps['kodak']}")
            print(f"  kodak: {steps['kodak']}", file=sys.stderr)
            steps["kodak_again"] = roundtrip(client, kodak, deadline)  # the tile cache's second look
            steps["12mp"] = roundtrip(client, big, deadline) | {"image": "4000x3000 synthetic photo (benchmarks/service_memory.py)"}
            steps["12mp"]["processes_rss_mib_after"] = processes(self.lic)
            steps["12mp"]["working_set_after_mib"] = round(memory.sample()["working_set"] / MIB, 1)
            steps["12mp"] |= memory.window()
            print(f"  12 MP: {steps['12mp']}", file=sys.stderr)
            self.check(steps["12mp"].get("compress_status") == 200, "12 MP compress")
            self.check(steps["12mp"].get("decompress_status") in (200, 503), "12 MP decompress: neither 200 nor 503 (deadline)")

            # Load: concurrent 12 MP round trips (as benchmarks/service_memory.py), for the memory under a queue.
            # On 2 cores most pass their deadline (503): the statuses are recorded, and only others fail.
            # Beside them, a whole-image job (rate control on Kodak) keeps the image lane's worker busy too.
            started_load = time.monotonic()
            with ThreadPoolExecutor(self.args.uploads + 1) as pool:
                rate_control = pool.submit(client.request, "POST", "/compress?target_bpp=0.5", kodak, {"Content-Type": "image/png"},
                                           deadline + 120)
                load = list(pool.map(lambda _: roundtrip(client, big, deadline), range(self.args.uploads)))
            steps["concurrent_12mp"] = {
                "uploads": self.args.uploads, "seconds": round(time.monotonic() - started_load, 1),
                "statuses": [f"{r['compress_status']}/{r.get('decompress_status', '-')}" for r in load],
                "kodak_target_bpp_0.5": {"status": rate_control.result()[0], "seconds": round(rate_control.result()[3], 2),
                                         "bpp": float(rate_control.result()[2].get("x-lic-bpp", "nan"))},
                "processes_rss_mib_after": processes(self.lic)} | memory.window()
            print(f"  concurrent 12 MP: {steps['concurrent_12mp']}", file=sys.stderr)
            self.check(all(r["compress_status"] in (200, 503) and r.get("decompress_status", 503) in (200, 503) for r in load),
                       f"concurrent 12 MP statuses {steps['concurrent_12mp']['statuses']}")
            self.check(rate_control.result()[0] == 200, f"rate-controlled Kodak compress beside the load: {rate_control.result()[0]}")

            status, text, _, _ = client.request("GET", "/metrics")
            names = ("lic_requests_total", "lic_tile_cache_requests_total", "lic_latent_cache_requests_total", "lic_workers",
                     "lic_rejected_requests_total", "lic_pixels_total")
            values = metric_values(text.decode(), names)
            steps["metrics"] = {"status": status, "nonzero": values}
            self.check(status == 200 and any(k.startswith("lic_requests_total") for k in values), "/metrics")
            # Redis in use: the second Kodak decode hit the cache, and the keys are in Redis. Errors (a call over
            # LIC_REDIS_TIMEOUT_S, served uncached) are counted, not failed: they are what the alert watches.
            steps["redis"] = {"keys": int(sh("docker", "exec", self.redis, "redis-cli", "dbsize")),
                              "used_memory": sh("docker", "exec", self.redis, "redis-cli", "info", "memory").split("used_memory_human:")[1].split()[0],
                              "tile_cache_errors": values.get('lic_tile_cache_requests_total{result="error"}', 0.0)}
            self.check(values.get('lic_tile_cache_requests_total{result="hit"}', 0) > 0 and steps["redis"]["keys"] > 0,
                       f"the tile cache did not use Redis: {steps['redis']}")

            steps["drain"] = self.drain(client, kodak)
            exit_code = int(sh("docker", "inspect", "-f", "{{.State.ExitCode}}", self.lic))
            result["memory"] = memory.stop() | {"oom_killed": sh("docker", "inspect", "-f", "{{.State.OOMKilled}}", self.lic) == "true",
                                                "limit_mib": round(quantity(described["lic"]["memory_limit"]) / MIB)}
            self.check(not result["memory"]["oom_killed"], "OOM-killed")
            steps["drain"]["exit_code"] = exit_code
            self.check(exit_code == 0, f"exit code {exit_code}")
            print(f"  drain: {steps['drain']}", file=sys.stderr)
            print(f"  memory: {result['memory']}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 -- recorded, and the run fails
            self.check(False, f"{type(exc).__name__}: {exc}")
            result["logs_tail"] = sh("docker", "logs", "--tail", "40", self.lic, check=False)
        finally:
            self.cleanup()
        result["failures"] = self.failures
        return result

    def drain(self, client: Client, kodak: bytes) -> dict:
        """SIGTERM with a Kodak compress in flight and another sent 2 s into the drain."""
        drain_s = float(self.env.get("LIC_DRAIN_SECONDS", 0))
        grace = self.spec["lic"]["terminationGracePeriodSeconds"]
        results: dict = {}

        def send(key: str) -> None:
            results[key] = client.request("POST", "/compress?quality=4", kodak, {"Content-Type": "image/png"}, timeout=60)[0]

        in_flight = threading.Thread(target=send, args=("in_flight",))
        in_flight.start()
        time.sleep(0.3)
        sigterm = time.monotonic()
        sh("docker", "kill", "--signal", "TERM", self.lic)
        timeline: list[tuple[float, int | str]] = []
        during = None
        while time.monotonic() - sigterm < grace + 5:
            t = time.monotonic() - sigterm
            status = client.status("/readyz", timeout=1)
            if not timeline or timeline[-1][1] != status:
                timeline.append((round(t, 2), status))
            if during is None and t > 2:
                during = threading.Thread(target=send, args=("during_drain",))
                during.start()
            if sh("docker", "inspect", "-f", "{{.State.Running}}", self.lic) != "true":
                break
            time.sleep(0.1)
        exited = round(time.monotonic() - sigterm, 2)
        in_flight.join()
        if during:
            during.join()
        first_503 = next((t for t, s in timeline if s == 503), None)
        closed = next((t for t, s in timeline if not isinstance(s, int)), None)
        out = {"readyz_timeline": timeline, "readyz_503_after_s": first_503, "listener_closed_after_s": closed,
               "exited_after_s": exited, "in_flight_status": results.get("in_flight"),
               "during_drain_status": results.get("during_drain"), "drain_seconds": drain_s, "grace_seconds": grace}
        self.check(first_503 is not None and first_503 < 1.5, f"/readyz did not turn 503 at once: {timeline}")
        self.check(out["in_flight_status"] == 200, f"in-flight request at SIGTERM: {out['in_flight_status']}")
        self.check(out["during_drain_status"] == 200, f"request during the drain: {out['during_drain_status']}")
        self.check(closed is None or closed >= drain_s - 0.5, f"listener closed before LIC_DRAIN_SECONDS: {closed}")
        self.check(exited < grace, f"still running after the grace period ({exited} s)")
        return out


def image_size(tag: str) -> dict:
    size = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", tag))
    return {"bytes": size, "mb": round(size / 1e6), "mib": round(size / MIB)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="lic:cpu")
    parser.add_argument("--redis-image", default="lic-redis:bookworm")
    parser.add_argument("--base-image", default="lic-base:bookworm")
    parser.add_argument("--long-timeout-s", type=float, default=300,
                        help="second run's LIC_REQUEST_TIMEOUT_S when the first one's 12 MP round trip passed its deadline (0: no second run)")
    parser.add_argument("--uploads", type=int, default=4, help="concurrent 12 MP round trips")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "image_test.json")
    args = parser.parse_args()
    for tool in ("docker", "kubectl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    spec = overlay()
    kodak, big = KODIM01.read_bytes(), photo_12mp()
    images = {tag: image_size(tag) for tag in (args.image, args.redis_image, args.base_image)
              if subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0}
    print(f"images: {images}", file=sys.stderr)
    runs = [Run("CPU overlay as deployed", args, spec, {}).execute(kodak, big)]
    steps = runs[0].get("steps", {})
    passed_deadline = steps.get("12mp", {}).get("decompress_status") == 503 or any(
        "503" in status for status in steps.get("concurrent_12mp", {}).get("statuses", []))
    if args.long_timeout_s and passed_deadline:
        long = Run(f"CPU overlay with LIC_REQUEST_TIMEOUT_S={args.long_timeout_s:g}", args, spec,
                   {"LIC_REQUEST_TIMEOUT_S": f"{args.long_timeout_s:g}"})
        runs.append(long.execute(kodak, big))
        twelve = runs[-1].get("steps", {}).get("12mp", {})
        if twelve.get("decompress_status") != 200:
            runs[-1]["failures"].append(f"12 MP round trip with the longer deadline: {twelve}")
    docker_version = sh("docker", "version", "-f", "{{.Server.Version}}", check=False)
    def peak(run: dict) -> float | None:
        return run.get("memory", {}).get("kernel_peak_mib") or run.get("memory", {}).get("sampled_peak_working_set_mib")

    summary = {
        "image_mb": images.get(args.image, {}).get("mb"),
        "redis_image_mb": images.get(args.redis_image, {}).get("mb"),
        "peak_memory_mib": {run["name"]: peak(run) for run in runs},
        "memory_limit_mib": runs[0].get("memory", {}).get("limit_mib"),
        "ready_s": {run["name"]: run.get("steps", {}).get("ready", {}).get("seconds") for run in runs},
        "statuses": {run["name"]: {
            "kodak": f"{run.get('steps', {}).get('kodak', {}).get('compress_status')}/{run.get('steps', {}).get('kodak', {}).get('decompress_status')}",
            "12mp": f"{run.get('steps', {}).get('12mp', {}).get('compress_status')}/{run.get('steps', {}).get('12mp', {}).get('decompress_status')}",
            "concurrent_12mp": run.get("steps", {}).get("concurrent_12mp", {}).get("statuses")} for run in runs},
        "drain": {run["name"]: {k: run.get("steps", {}).get("drain", {}).get(k) for k in
                                ("readyz_503_after_s", "listener_closed_after_s", "exited_after_s", "exit_code")} for run in runs},
    }
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB, "
                   f"Docker {docker_version} ({platform.system()} {platform.release()})",
        "command": "make image-test (deploy/image_test.py " + " ".join(sys.argv[1:]) + ")",
        "date": time.strftime("%Y-%m-%d"),
        "images": images,
        "summary": summary,
        "runs": runs,
        "passed": not any(r["failures"] for r in runs),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}; "
          f"{'passed' if report['passed'] else 'FAILED: ' + '; '.join(f for r in runs for f in r['failures'])}", file=sys.stderr)
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
