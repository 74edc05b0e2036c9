"""The core of bench/autoscale.py: arrivals, the queue, KEDA's scale from and to zero, and the cost model."""

from __future__ import annotations

import numpy as np
import pytest

from bench.autoscale import (
    DAY_S,
    Hardware,
    Policy,
    Traffic,
    arrivals,
    batch_jobs_per_min,
    chart_policy,
    check_scale,
    clip_s,
    cold_start,
    simulate,
)
from models.diffusion.families import FAMILIES


def test_arrivals_are_the_day_asked_for_and_repeat_with_the_seed() -> None:
    traffic = Traffic()
    times = arrivals(traffic, seed=1)
    assert np.array_equal(times, arrivals(traffic, seed=1))
    assert not np.array_equal(times, arrivals(traffic, seed=2))
    day = times[times >= 0]
    expected = traffic.jobs_per_day + traffic.burst_jobs
    assert abs(len(day) - expected) < 4 * np.sqrt(expected)  # Poisson: within 4 sigma
    hourly, _ = np.histogram(day, bins=np.arange(25) * 3600)
    peak, trough = hourly[int(traffic.peak_hour)], hourly[int(traffic.peak_hour + 12) % 24]
    assert 4 < peak / trough < 6.5
    burst = int(traffic.burst_at_h)
    assert hourly[burst] - (hourly[burst - 1] + hourly[burst + 1]) / 2 > 0.8 * traffic.burst_jobs


def test_a_fleet_under_its_capacity_serves_everyone_at_once_and_over_it_queues() -> None:
    times = np.arange(0.0, 100.0, 10.0)  # a job every 10 s
    calm = simulate(Policy(name="one", fixed=1), times, service_s=9.0, cold_s=0.0)
    assert np.all(calm.waits == 0) and calm.gpu_hours == pytest.approx(DAY_S / 3600)
    busy = simulate(Policy(name="one", fixed=1), times, service_s=15.0, cold_s=0.0)
    assert busy.waits.tolist() == [5.0 * i for i in range(10)]  # each waits 5 s more than the last


def test_keda_wakes_from_zero_serves_after_the_cold_start_and_goes_back_to_zero() -> None:
    policy = Policy(name="keda", min_replicas=0, max_replicas=4, polling_s=15, cooldown_s=300)
    times = np.array([-3600.0, 1000.0])  # one job in the lead-in, one an hour later
    result = simulate(policy, times, service_s=20.0, cold_s=100.0, sample_s=15.0)
    # 1000 s is no multiple of the 15 s poll: the next read is at 1005 s, the pod serves 100 s later.
    assert result.waits.tolist() == [105.0]
    replicas = dict(
        zip(np.round(np.array(result.series["t_h"]) * 3600), result.series["replicas"], strict=True)
    )
    assert replicas[990.0] == 0 and replicas[1005.0] == 1
    # The job runs 1105-1125 s; the last poll that saw it is at 1110 s, and the first poll 300 s (the
    # cool-down) later, at 1410 s, scales to zero. The pod is billed from its wake-up at 1005 s.
    assert replicas[1395.0] == 1 and replicas[1410.0] == 0
    assert result.gpu_hours * 3600 == pytest.approx(1410 - 1005)


def test_a_warm_floor_keeps_one_worker_and_every_job_is_served() -> None:
    times = np.sort(np.random.default_rng(3).uniform(0, 4 * 3600, 300))
    floor = simulate(Policy(name="floor", min_replicas=1, max_replicas=8), times, 30.0, 100.0, sample_s=15)
    assert min(floor.series["replicas"][10:]) >= 1
    assert floor.gpu_hours >= 24 * 0.99  # one worker all day at least
    assert np.all(np.isfinite(floor.waits)) and len(floor.waits) == 300


def test_the_chart_policy_is_read_from_the_values_file() -> None:
    policy = chart_policy("chart")
    assert policy.min_replicas == 0 and policy.max_replicas >= 16 and policy.jobs_per_replica >= 1
    assert chart_policy("floor", min_replicas=1).min_replicas == 1


def test_cost_model_of_a_clip_and_a_cold_start() -> None:
    hw = Hardware()
    # SVD-XT: 25 guided steps of 2 × 79.9 TFLOP at 45 % of 790 TFLOP/s, 5 s of other stages.
    assert clip_s("svd", hw) == pytest.approx(25 * 2 * 79.9 / (790 * 0.45) + 5 + hw.overhead_s)
    fresh, warm = cold_start("svd", hw), cold_start("svd", hw, weights_on_node=True)
    assert fresh.download_s == pytest.approx(2 * 2.255 / hw.network_gb_s) and warm.download_s == 0
    assert fresh.total_s > warm.total_s > hw.process_s
    assert FAMILIES["cogvideox"].orientable is False
    assert cold_start("cogvideox", hw).warmup_s < cold_start("svd", hw).warmup_s * 2


def test_batch_mode_reaches_the_ideal_without_overhead() -> None:
    """bench/scale.py's batch: N workers, 6N jobs at once, 2 s each: N × 30 jobs a minute exactly."""
    for n in (1, 2, 4, 8):
        assert batch_jobs_per_min(n, 6 * n, 2.0, 0.0, 0.0) == pytest.approx(30.0 * n)


def test_the_queue_model_matches_the_recorded_scale_out_within_six_percent() -> None:
    """bench/scale.py's recorded run (bench/RESULTS.md): N real workers, 6N jobs of 2 s each."""
    for row in check_scale(None):
        assert 0 <= row["error_pct"] < 6, row
