"""A day of traffic on the GPU workers, simulated: what fixed fleets and the chart's KEDA settings cost,
and how long jobs wait.

Arrivals are a diurnal Poisson process (50,000 jobs a day, peak 5× the trough) plus a burst (2,000 jobs
in 10 minutes, a post that goes viral), drawn from a seeded generator. Each job takes one GPU for a clip
of the family's cost (bench/gpu_costs.py: counted denoiser FLOPs at a stated GPU utilisation, plus the
other stages) plus the per-job overhead bench/scale.py measured. A new worker pod serves after the cold
start estimated by `cold_start` (image pull, weights, process start, warm-up). The KEDA policies follow
deploy/helm/vivify/values.yaml, read here, and the HPA's documented rules (below).

    .venv/bin/python bench/autoscale.py                       # the table, plus --json / --plot files
    .venv/bin/python bench/autoscale.py --plot bench/autoscale.png --json /tmp/autoscale.json
    .venv/bin/python bench/autoscale.py --check-scale scale.json   # against bench/scale.py --json

The controller, every `pollingInterval`: KEDA reads waiting + running jobs; above 0 it is active and
wakes a Deployment at zero to 1; when inactive for `cooldownPeriod` it scales to minReplicas. Between
those the HPA wants ceil(jobs / jobsPerReplica) within [max(1, min), max], grows by at most
max(4 pods, 100 %) per 15 s (its default), and shrinks to the largest recommendation of the last
`scaleDownStabilizationSeconds`, by at most the chart's scale-down policy per minute. A removed pod that
is running a clip finishes it first (the chart's warm shutdown); pods still starting go first, idle
ones next. A pod costs from the moment it is scheduled until it ends; GPU-hours count the day
(00:00-24:00), and a backlog left at midnight is reported beside them.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu_costs import MFU_COMPILED, PRIORS  # noqa: E402
from models.diffusion.families import FAMILIES  # noqa: E402

DAY_S = 86_400.0
VALUES = ROOT / "deploy" / "helm" / "vivify" / "values.yaml"
HPA_SYNC_S = 15.0  # the HPA's sync period and scale-up period (its defaults)


@dataclass(frozen=True)
class Hardware:
    """What the estimate assumes about the machines: stated, not measured."""

    tflops: float = 790.0  # H100 SXM bf16 dense matmul, as bench/gpu_i2v.py's estimates
    mfu: float = MFU_COMPILED  # the denoiser's share of that peak (compiled)
    network_gb_s: float = 1.25  # 10 Gbit/s to the registry and the model hub
    disk_gb_s: float = 2.0  # a node's NVMe, reading safetensors into host memory
    image_gb: float = 6.0  # the GPU worker image, compressed (CUDA runtime, torch cu128, the app)
    process_s: float = 15.0  # Python, torch and CUDA start, Celery connects (bench/gpu_i2v.py's figure)
    overhead_s: float = 0.06  # per job beyond the animator: broker + database + store (bench/scale.py)


@dataclass(frozen=True)
class ColdStart:
    """Seconds from a pod scheduled on a fresh GPU node to its first job, by stage."""

    pull_s: float
    download_s: float
    load_s: float
    process_s: float
    warmup_s: float

    @property
    def total_s(self) -> float:
        return self.pull_s + self.download_s + self.load_s + self.process_s + self.warmup_s


def step_s(family: str, hw: Hardware) -> float:
    """One guided denoising step at the family's default shape."""
    return 2 * PRIORS[family].call_tflop / (hw.tflops * hw.mfu)


def clip_s(family: str, hw: Hardware) -> float:
    """GPU seconds of one clip: every guided step, the other stages, the per-job overhead."""
    return FAMILIES[family].steps * step_s(family, hw) + PRIORS[family].other_s + hw.overhead_s


def cold_start(family: str, hw: Hardware, *, weights_on_node: bool = False) -> ColdStart:
    """A new pod: pull the image, fetch-model (download unless the node has the files), read the weights
    (bf16/fp16: 2 bytes a parameter), start the process, warm up (compile and two steps per shape served,
    both orientations where the family has two)."""
    weights_gb = 2 * PRIORS[family].params_b
    shapes = 2 if FAMILIES[family].orientable else 1
    return ColdStart(
        pull_s=hw.image_gb / hw.network_gb_s,
        download_s=0.0 if weights_on_node else weights_gb / hw.network_gb_s,
        load_s=weights_gb / hw.disk_gb_s,
        process_s=hw.process_s,
        warmup_s=shapes * (PRIORS[family].compile_s + 2 * step_s(family, hw)),
    )


# ---- arrivals ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Traffic:
    jobs_per_day: float = 50_000
    peak_to_trough: float = 5.0
    peak_hour: float = 16.0  # local afternoon; the trough is 12 hours away
    burst_jobs: int = 2_000
    burst_s: float = 600.0
    burst_at_h: float = 18.0
    lead_in_h: float = 2.0  # the previous evening's tail, so the day does not start from an empty cluster


def rate(t: np.ndarray | float, traffic: Traffic) -> np.ndarray | float:
    """Jobs per second at time t: a sinusoid whose peak is `peak_to_trough` times its trough."""
    a = (traffic.peak_to_trough - 1) / (traffic.peak_to_trough + 1)
    mean = traffic.jobs_per_day / DAY_S
    return mean * (1 + a * np.cos(2 * np.pi * (np.asarray(t) / 3600 - traffic.peak_hour) / 24))


def arrivals(traffic: Traffic, seed: int) -> np.ndarray:
    """Sorted arrival times in seconds, from -lead_in to the end of the day (thinning of a Poisson process
    at the peak rate, plus the burst's jobs spread uniformly over its window)."""
    rng = np.random.default_rng(seed)
    start, end = -traffic.lead_in_h * 3600, DAY_S
    peak = float(rate(traffic.peak_hour * 3600, traffic))
    n = rng.poisson(peak * (end - start))
    t = rng.uniform(start, end, n)
    kept = t[rng.uniform(0, peak, n) < rate(t, traffic)]
    burst = traffic.burst_at_h * 3600 + rng.uniform(0, traffic.burst_s, traffic.burst_jobs)
    return np.sort(np.concatenate([kept, burst]))


# ---- policies ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    name: str
    fixed: int | None = None  # a fleet of this many GPUs, always on
    min_replicas: int = 0
    max_replicas: int = 1
    jobs_per_replica: float = 1.0
    polling_s: float = 15.0
    cooldown_s: float = 300.0
    stabilization_s: float = 300.0
    down_pods_per_min: int = 1


def chart_policy(name: str, values_path: Path = VALUES, **override: Any) -> Policy:
    """The diffusion workers' KEDA settings as deploy/helm/vivify/values.yaml sets them."""
    values = yaml.safe_load(values_path.read_text())
    worker, keda = values["workers"]["diffusion"], values["keda"]
    policy = Policy(
        name=name,
        min_replicas=int(worker["minReplicas"]),
        max_replicas=int(worker["maxReplicas"]),
        jobs_per_replica=float(worker["jobsPerReplica"]),
        polling_s=float(keda["pollingInterval"]),
        cooldown_s=float(keda["cooldownPeriod"]),
        stabilization_s=float(keda["scaleDownStabilizationSeconds"]),
        down_pods_per_min=int(keda["scaleDownPodsPerMinute"]),
    )
    return Policy(**{**asdict(policy), **override})


# ---- the simulation ---------------------------------------------------------------------------------------
@dataclass
class Pod:
    created: float
    ready: float
    busy_until: float = -math.inf
    removing: bool = False
    ended: float | None = None


@dataclass
class Result:
    policy: str
    gpu_hours: float
    waits: np.ndarray  # seconds from arrival to start, jobs arriving in [0, DAY)
    unstarted_at_midnight: int
    peak_replicas: int
    series: dict[str, list[float]] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        p50, p95, p99 = np.percentile(self.waits, [50, 95, 99])
        return {
            "policy": self.policy,
            "gpu_hours": round(self.gpu_hours, 1),
            "wait_p50_s": round(float(p50), 1),
            "wait_p95_s": round(float(p95), 1),
            "wait_p99_s": round(float(p99), 1),
            "waited_over_60s": int((self.waits > 60).sum()),
            "jobs": len(self.waits),
            "unstarted_at_midnight": self.unstarted_at_midnight,
            "peak_replicas": self.peak_replicas,
        }


def simulate(
    policy: Policy, times: np.ndarray, service_s: float, cold_s: float, sample_s: float = 60.0
) -> Result:
    """Run one policy over the arrivals; jobs are served first come, first served."""
    t0 = float(times[0])
    every: list[Pod] = []  # every pod ever made, for the bill
    live: list[Pod] = []  # pods not ended, draining ones included
    if policy.fixed is not None:
        every = [Pod(created=t0, ready=t0) for _ in range(policy.fixed)]
        live = list(every)
    waiting: deque[int] = deque()  # indices of jobs that arrived and have not started
    starts = np.full(len(times), np.nan)
    events: list[tuple[float, int, str, Pod | None]] = []  # (time, order, kind, pod); order breaks ties
    order = 0
    history: deque[tuple[float, int]] = deque()  # (time, HPA recommendation), the stabilization window
    removed: deque[float] = deque()  # when pods were removed, for the scale-down policy
    last_active = -math.inf
    series: dict[str, list[float]] = {"t_h": [], "queue": [], "replicas": []}

    def push(t: float, kind: str, pod: Pod | None = None) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (t, order, kind, pod))

    def end(pod: Pod, now: float) -> None:
        pod.ended = now
        live.remove(pod)

    def dispatch(now: float) -> None:
        for pod in live:
            if not waiting:
                return
            if not pod.removing and pod.ready <= now and pod.busy_until <= now:
                starts[waiting.popleft()] = now
                pod.busy_until = now + service_s
                push(pod.busy_until, "finish", pod)

    def resize(now: float, want: int) -> None:
        serving = [p for p in live if not p.removing]
        for _ in range(want - len(serving)):
            pod = Pod(created=now, ready=now + cold_s)
            every.append(pod)
            live.append(pod)
            push(pod.ready, "ready", pod)
        # Pods still starting go first (newest first), then idle ones, then busy ones, which drain.
        ranked = sorted(serving, key=lambda p: (p.ready <= now, p.busy_until > now, -p.created))
        for pod in ranked[: max(0, len(serving) - want)]:
            removed.append(now)
            if pod.busy_until > now:
                pod.removing = True  # warm shutdown: it ends when its clip does
            else:
                end(pod, now)

    def control(now: float) -> None:
        nonlocal last_active
        busy = sum(1 for p in live if p.busy_until > now)
        jobs = len(waiting) + busy
        if jobs > 0:
            last_active = now
        current = sum(1 for p in live if not p.removing)
        if jobs == 0 and now - last_active >= policy.cooldown_s:
            resize(now, policy.min_replicas)  # KEDA: inactive past the cool-down
            return
        raw = min(policy.max_replicas, max(1, policy.min_replicas, math.ceil(jobs / policy.jobs_per_replica)))
        history.append((now, raw))
        while history[0][0] < now - policy.stabilization_s:
            history.popleft()
        while removed and removed[0] < now - 60:
            removed.popleft()
        if raw > current:
            base = max(current, 1)
            want = min(raw, max(base + 4, 2 * base))  # the HPA's default scale-up limit per 15 s
        else:
            want = max(r for _, r in history)
            want = min(current, max(want, current - max(0, policy.down_pods_per_min - len(removed))))
        resize(now, want)

    def settled(now: float) -> bool:
        return (
            now >= DAY_S and next_job >= len(times) and not waiting and all(p.busy_until <= now for p in live)
        )

    if policy.fixed is None:
        push(t0, "tick")
    push(t0, "sample")
    next_job = 0
    while events:
        if next_job < len(times) and times[next_job] <= events[0][0]:
            waiting.append(next_job)
            next_job += 1
            dispatch(float(times[next_job - 1]))
            continue
        now, _, kind, pod = heapq.heappop(events)
        if kind == "finish" and pod is not None and pod.removing:
            end(pod, now)
        if kind in ("finish", "ready"):
            dispatch(now)
        elif kind == "tick" and not settled(now):
            control(now)
            push(now + policy.polling_s, "tick")
        elif kind == "sample":
            series["t_h"].append(now / 3600)
            series["queue"].append(len(waiting))
            series["replicas"].append(len(live))
            if not settled(now):
                push(now + sample_s, "sample")

    def billed(p: Pod) -> float:
        """Seconds of a pod inside the day."""
        stop = p.ended if p.ended is not None else DAY_S
        return max(0.0, min(stop, DAY_S) - max(p.created, 0.0))

    first = int(np.searchsorted(times, 0.0))  # the day's jobs start here; earlier ones are the lead-in
    return Result(
        policy=policy.name,
        gpu_hours=sum(billed(p) for p in every) / 3600,
        waits=starts[first:] - times[first:],
        unstarted_at_midnight=int((starts[first:] >= DAY_S).sum()),
        peak_replicas=int(max(series["replicas"])),
        series=series,
    )


# ---- checks against bench/scale.py ------------------------------------------------------------------------
def batch_jobs_per_min(workers: int, jobs: int, seconds: float, submit_s: float, overhead_s: float) -> float:
    """bench/scale.py's batch in the simulator: `jobs` submitted evenly over `submit_s` to `workers` warm
    workers, each job `seconds` plus `overhead_s`; jobs per minute from the first submit to the last
    finish."""
    times = np.linspace(0.0, submit_s, jobs)
    policy = Policy(name="scale", fixed=workers)
    result = simulate(policy, times, seconds + overhead_s, 0.0)
    makespan = float(np.max(result.waits + times)) + seconds + overhead_s
    return 60 * jobs / makespan


# bench/RESULTS.md, "Scale-out", 2026-11-24 (a quiet day): workers, jobs, jobs/min, idle enqueue→start
# ms and worker overhead ms, both medians. That run did not record its submission time: taken as 0.
SCALE_RECORDED = [
    {"workers": n, "jobs": j, "jobs_per_min": m, "idle_overhead_ms_median": i, "worker_overhead_ms_median": w}
    for n, j, m, i, w in [
        (1, 6, 27.7, 10.4, 155.6),
        (2, 12, 57.9, 5.0, 44.3),
        (4, 24, 115.0, 5.4, 46.3),
        (8, 48, 221.4, 4.9, 55.8),
    ]
]


def check_scale(path: Path | None) -> list[dict[str, Any]]:
    """Simulated against measured jobs/min, for a `bench/scale.py --json` file or the recorded table."""
    rows = []
    for r in json.loads(path.read_text()) if path else SCALE_RECORDED:
        overhead = (r["worker_overhead_ms_median"] + r["idle_overhead_ms_median"]) / 1000
        sim = batch_jobs_per_min(
            r["workers"], r["jobs"], r.get("seconds_per_job", 2.0), r.get("submit_s", 0.0), overhead
        )
        rows.append(
            {
                "workers": r["workers"],
                "measured_jobs_per_min": r["jobs_per_min"],
                "simulated_jobs_per_min": round(sim, 1),
                "error_pct": round(100 * (sim - r["jobs_per_min"]) / r["jobs_per_min"], 1),
            }
        )
    return rows


# ---- report -----------------------------------------------------------------------------------------------
def policies() -> list[Policy]:
    return [
        Policy(name="fixed 4 GPUs", fixed=4),
        Policy(name="fixed 8 GPUs", fixed=8),
        Policy(name="fixed 16 GPUs", fixed=16),
        chart_policy("KEDA, the chart's settings"),
        chart_policy("KEDA, warm floor of 1", min_replicas=1),
    ]


def plot(results: list[Result], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, dpi=72)
    for r in results:
        style = {"lw": 1, "label": r.policy, "ls": "--" if "floor" in r.policy else "-"}
        top.plot(r.series["t_h"], r.series["queue"], **style)
        bottom.plot(r.series["t_h"], r.series["replicas"], **style)
    top.set_yscale("symlog", linthresh=10)
    top.set_ylabel("jobs waiting")
    bottom.set_ylabel("GPU workers")
    bottom.set_xlabel("hour of the day")
    bottom.set_xlim(0, 24)
    top.set_title(title, fontsize=10)
    top.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", default="svd", choices=sorted(PRIORS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs-per-day", type=float, default=Traffic.jobs_per_day)
    parser.add_argument("--burst-jobs", type=int, default=Traffic.burst_jobs)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument(
        "--check-scale",
        nargs="?",
        const="recorded",
        help="check the queue model against bench/scale.py: its --json file, or (none) the recorded table",
    )
    args = parser.parse_args()
    if args.check_scale:
        print("| workers | measured jobs/min | simulated jobs/min | error |\n| --- | --- | --- | --- |")
        for row in check_scale(None if args.check_scale == "recorded" else Path(args.check_scale)):
            print(
                f"| {row['workers']} | {row['measured_jobs_per_min']} | {row['simulated_jobs_per_min']} "
                f"| {row['error_pct']:+.1f} % |"
            )
        return 0
    hw, traffic = Hardware(), Traffic(jobs_per_day=args.jobs_per_day, burst_jobs=args.burst_jobs)
    service, cold = clip_s(args.family, hw), cold_start(args.family, hw)
    times = arrivals(traffic, args.seed)
    print(
        f"{args.family}: {service:.1f} GPU-s a clip; cold start {cold.total_s:.0f} s "
        + "("
        + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in asdict(cold).items())
        + f"); {int((times >= 0).sum())} jobs in the day, seed {args.seed}"
    )
    results = [simulate(p, times, service, cold.total_s) for p in policies()]
    rows = [r.row() for r in results]
    print(
        "| policy | GPU-hours | wait p50 s | p95 s | p99 s | jobs waiting > 60 s | not started by midnight "
        "| most workers |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for r in rows:
        print(
            f"| {r['policy']} | {r['gpu_hours']} | {r['wait_p50_s']} | {r['wait_p95_s']} | {r['wait_p99_s']} "
            f"| {r['waited_over_60s']} | {r['unstarted_at_midnight']} | {r['peak_replicas']} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"service_s": service, "cold_start": asdict(cold), "rows": rows}, indent=2)
        )
    if args.plot:
        day_jobs = int((times >= 0).sum())
        plot(
            results,
            args.plot,
            f"{args.family}, {day_jobs} jobs in the day (seed {args.seed}): queue and workers",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
