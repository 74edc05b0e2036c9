"""The `vivify` command line: parsing, `animate` without a server, `migrate`, the worker command, and
`fetch-model` against a stand-in Hugging Face Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from app.cli import main
from app.cli.commands import build_parser
from app.cli.supervisor import WorkerSupervisor, events_worker_command, worker_command
from app.core.config import Settings, get_settings
from app.core.queue import queue_for, worker_queues
from models.video import probe
from tests.fixtures.hub_server import SVD_CONFIGS, SVD_INDEX, StandInHub, hub_env


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("VIVIFY_DATABASE_URL", "VIVIFY_BROKER_URL", "VIVIFY_STORAGE_URL", "VIVIFY_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIVIFY_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_animate_writes_a_clip_and_prints_stage_times(env: Path, portrait, capsys) -> None:
    photo = env / "me.png"
    small = portrait.copy()
    small.thumbnail((96, 96))
    small.save(photo)
    out = env / "clip.mp4"
    rc = main(
        ["animate", str(photo), "-o", str(out), "--animator", "push-in", "--size", "64x80", "--seed", "3"]
    )
    assert rc == 0
    info = probe(out)
    assert (info.codec, info.pix_fmt, info.fps, info.width, info.height) == ("h264", "yuv420p", 24.0, 64, 80)
    printed = capsys.readouterr().out
    for word in ("setup:", "animating:", "encoding:", "total:"):
        assert word in printed


def test_animate_frames_option_sets_the_clip_length(env: Path, portrait) -> None:
    photo = env / "me.jpg"
    portrait.resize((64, 64)).save(photo)
    out = env / "clip.mp4"
    assert main(["animate", str(photo), "-o", str(out), "--animator", "push-in", "--frames", "72"]) == 0
    assert probe(out).frame_count == 72


def test_animate_duration_and_resolution_set_the_clips_length_and_size(env: Path, portrait) -> None:
    photo = env / "me.jpg"
    portrait.resize((1600, 1600)).save(photo)  # a short side of 1600 px: 4K is offered
    out = env / "clip.mp4"
    base = ["animate", str(photo), "-o", str(out), "--animator", "push-in"]
    assert main([*base, "--size", "64x64", "--duration", "3.5"]) == 0
    assert probe(out).frame_count == 84  # 3.5 s at 24 fps
    assert main([*base, "--frames", "4", "--resolution", "4k"]) == 0
    assert (probe(out).width, probe(out).height) == (1600, 1600)  # 4K: the photo's own pixels, not enlarged
    assert main([*base, "--frames", "4"]) == 0
    assert (probe(out).width, probe(out).height) == (720, 720)  # HD: push-in's own size, 720 px
    assert main([*base, "--frames", "4", "--resolution", "4k", "--size", "64x80"]) == 0
    assert (probe(out).width, probe(out).height) == (64, 80)  # --size wins


@pytest.mark.parametrize(
    "option", [["--duration", "2.9"], ["--duration", "11"], ["--duration", "x"], ["--resolution", "8k"]]
)
def test_a_bad_duration_or_resolution_is_a_usage_error(option: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["animate", "p.jpg", *option])
    assert exc.value.code == 2
    assert ("3 to 10 seconds" if option[0] == "--duration" else "invalid choice") in capsys.readouterr().err


def test_animate_refuses_an_unreadable_photo(env: Path, capsys) -> None:
    bad = env / "not-a-photo.jpg"
    bad.write_text("<html>hello</html>")
    assert main(["animate", str(bad), "-o", str(env / "x.mp4"), "--animator", "push-in"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (env / "x.mp4").exists()


@pytest.mark.parametrize("size", ["abc", "10x10", "64"])
def test_a_bad_size_is_a_usage_error(size: str) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["animate", "p.jpg", "-o", "c.mp4", "--size", size])
    assert exc.value.code == 2


def test_migrate_creates_the_tables(env: Path) -> None:
    assert main(["migrate"]) == 0
    engine = create_engine(f"sqlite:///{env / 'var' / 'vivify.db'}")
    assert {"jobs", "submissions"} <= set(inspect(engine).get_table_names())


def test_production_with_the_default_secret_refuses_to_start(env: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VIVIFY_ENV", "production")
    monkeypatch.delenv("VIVIFY_SECRET_KEY", raising=False)
    assert main(["migrate"]) == 2
    assert "VIVIFY_SECRET_KEY" in capsys.readouterr().err


def test_the_worker_command_is_one_solo_process_on_the_animate_queue() -> None:
    settings = Settings(_env_file=None)
    cmd = worker_command(settings, beat=True, hostname="gpu0@host")
    assert cmd[:6] == [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"]
    assert "--pool=solo" in cmd and "--concurrency=1" in cmd
    assert cmd[cmd.index("-Q") + 1].split(",")[0] == "animate"
    assert "-B" in cmd and cmd[cmd.index("-n") + 1] == "gpu0@host"
    assert "-B" not in worker_command(settings)


def test_a_worker_consumes_the_shared_queue_its_animators_queue_and_maintenance() -> None:
    settings = Settings(_env_file=None, animator="portrait")
    cmd = worker_command(settings)
    queues = cmd[cmd.index("-Q") + 1].split(",")
    assert queues == ["animate", queue_for("portrait", None), "maintenance"]
    assert "maintenance" not in worker_queues(settings, maintenance=False)


def test_worker_without_maintenance_takes_only_the_animate_queues(env: Path, monkeypatch) -> None:
    """`vivify worker --no-maintenance` (the GPU workers of docker-compose.yml) hands Celery exactly the
    animate queues of its animator."""
    execs: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, cmd: execs.append(cmd))  # the worker would replace us
    monkeypatch.setenv("VIVIFY_ANIMATOR", "push-in")
    get_settings.cache_clear()
    assert main(["worker", "--no-maintenance"]) == 0
    [cmd] = execs
    assert cmd[cmd.index("-Q") + 1] == "animate,animate.push-in"


def test_the_console_script_is_installed_and_lists_every_command() -> None:
    exe = Path(sys.executable).parent / "vivify"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("up", "web", "worker", "animate", "migrate"):
        assert command in out


def test_the_embedded_worker_is_restarted_if_it_dies_and_stopped_on_exit(tmp_path: Path) -> None:
    import time

    marker = tmp_path / "starts"
    script = f"open({str(marker)!r}, 'a').write('x'); import time, sys; time.sleep(0.3); sys.exit(3)"
    supervisor = WorkerSupervisor([sys.executable, "-c", script], stop_timeout_s=5)
    supervisor.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (not marker.exists() or len(marker.read_text()) < 2):
            time.sleep(0.1)
        assert len(marker.read_text()) >= 2, "a worker that exited was started again"
    finally:
        supervisor.stop()

    sleeper = WorkerSupervisor([sys.executable, "-c", "import time; time.sleep(60)"], stop_timeout_s=5)
    sleeper.start()
    t0 = time.monotonic()
    sleeper.stop()
    assert sleeper.proc is not None and sleeper.proc.returncode == -15 and time.monotonic() - t0 < 5


def test_animate_with_a_server_refuses_options_that_only_apply_locally(env: Path, portrait, capsys) -> None:
    photo = env / "p.jpg"
    portrait.save(photo)
    assert main(["animate", str(photo), "--server", "http://127.0.0.1:9", "--steps", "4"]) == 2
    assert "--steps only apply without --server" in capsys.readouterr().err


def test_animate_with_an_unreachable_server_says_so(env: Path, portrait, capsys) -> None:
    photo = env / "p.jpg"
    portrait.save(photo)
    from tests.e2e.e2e_stack import free_port

    server = f"http://127.0.0.1:{free_port()}"
    assert main(["animate", str(photo), "--server", server, "-o", str(env / "c.mp4")]) == 1
    assert f"cannot reach {server}" in capsys.readouterr().err
    assert not (env / "c.mp4").exists()


def test_animate_defaults_to_the_auto_motion() -> None:
    from app.cli.commands import DEFAULT_MOTION
    from models.auto_motion import AUTO

    assert DEFAULT_MOTION == AUTO
    assert build_parser().parse_args(["animate", "me.jpg"]).motion == AUTO
    assert build_parser().parse_args(["animate", "me.jpg", "--motion", "nod"]).motion == "nod"


def test_animate_with_a_server_sends_auto_and_prints_the_planned_motion(
    env: Path, portrait, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.cli.client

    sent: dict[str, object] = {}

    def service(server: str, photo: Path, out: Path, **fields: object) -> dict[str, object]:
        sent.update(fields)
        out.write_bytes(b"mp4")
        plan = {"description": "smiles, then nods", "peaks": {"smile": 0.6}, "intensity": 0.4}
        return {"id": "j1", "animator": "portrait", "seed": 3, "motion": fields["motion"], "plan": plan}

    monkeypatch.setattr(app.cli.client, "animate_remote", service)
    photo = env / "p.jpg"
    portrait.save(photo)
    assert main(["animate", str(photo), "--server", "http://vivify.test", "-o", str(env / "c.mp4")]) == 0
    assert sent["motion"] == "auto" and sent["duration_s"] is None and sent["resolution"] is None
    assert "planned motion: smiles, then nods" in capsys.readouterr().out
    more = ["--duration", "7.5", "--resolution", "4k"]
    assert (
        main(["animate", str(photo), "--server", "http://vivify.test", "-o", str(env / "c.mp4"), *more]) == 0
    )
    assert (sent["duration_s"], sent["resolution"]) == (7.5, "4k")


def test_webhook_secret_prints_the_standard_webhooks_key(env: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VIVIFY_WEBHOOK_SECRET", "whsec_QUJD")
    get_settings.cache_clear()
    try:
        assert main(["webhook-secret"]) == 0
    finally:
        get_settings.cache_clear()
    assert capsys.readouterr().out.strip() == "whsec_QUJD"


def test_without_a_secret_the_servers_use_a_random_one_kept_in_the_data_folder(
    env: Path, monkeypatch, capsys
) -> None:
    """The development secret is public: `vivify up` must never sign cookies or webhooks with it."""
    monkeypatch.delenv("VIVIFY_SECRET_KEY", raising=False)
    monkeypatch.delenv("VIVIFY_WEBHOOK_SECRET", raising=False)
    get_settings.cache_clear()
    public = Settings(_env_file=None).webhook_secret_text  # what the development secret would give
    assert main(["webhook-secret"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["webhook-secret"]) == 0
    assert capsys.readouterr().out.strip() == first != public  # random, and kept across restarts
    stored = env / "var" / "secret_key"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert len(stored.read_text().strip()) >= 32
    assert "VIVIFY_SECRET_KEY" not in os.environ  # only the servers export it, for their children

    from app.cli.secret import with_local_secret

    exported = with_local_secret(get_settings(), export=True)
    assert (
        os.environ["VIVIFY_SECRET_KEY"]
        == exported.secret_key.get_secret_value()
        == stored.read_text().strip()
    )
    monkeypatch.delenv("VIVIFY_SECRET_KEY")
    get_settings.cache_clear()


def test_a_configured_secret_is_used_as_it_is(env: Path, monkeypatch) -> None:
    from app.cli.secret import with_local_secret

    monkeypatch.setenv("VIVIFY_SECRET_KEY", "k" * 40)
    get_settings.cache_clear()
    assert with_local_secret(get_settings()).secret_key.get_secret_value() == "k" * 40
    assert not (env / "var" / "secret_key").exists()
    get_settings.cache_clear()


def test_a_damaged_secret_file_stops_the_servers_with_a_message(env: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("VIVIFY_SECRET_KEY", raising=False)
    (env / "var").mkdir()
    (env / "var" / "secret_key").write_text("short\n")
    get_settings.cache_clear()
    assert main(["webhook-secret"]) == 2
    assert "secret_key" in capsys.readouterr().err
    get_settings.cache_clear()


def test_webhooks_get_their_own_threads_worker() -> None:
    cmd = events_worker_command(Settings(_env_file=None), hostname="events@h")
    assert cmd[cmd.index("-Q") + 1] == "webhooks" and "--pool=threads" in cmd and "-B" not in cmd


# ---- fetch-model, against the stand-in Hub (tests/fixtures/hub_server.py) ----------------------------------
# A repo laid out like stabilityai/stable-video-diffusion-img2vid-xt-1-1: plain and fp16 weights per
# component, a single-file checkpoint and docs at the root. fetch-model reads names only, so bytes will do.
SVD_WEIGHTS = [
    "image_encoder/model.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
]
SVD_FP16 = [w.replace(".safetensors", ".fp16.safetensors") for w in SVD_WEIGHTS]


def svd_like_repo(folder: Path, marker: str = "") -> Path:
    for name in SVD_CONFIGS + SVD_WEIGHTS + SVD_FP16 + ["README.md", "svd_xt_1_1.safetensors"]:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(SVD_INDEX) if name == "model_index.json" else f"{name} {marker}")
    return folder


def snapshot_files(hf_home: Path, repo_id: str) -> dict[str, list[str]]:
    """The files of each cached snapshot of `repo_id`, by commit."""
    root = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return {
        s.name: sorted(p.relative_to(s).as_posix() for p in s.rglob("*") if p.is_file())
        for s in root.iterdir()
    }


def fetch_model(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`vivify fetch-model` in its own process: huggingface_hub reads HF_ENDPOINT and HF_HOME at import."""
    exe = Path(sys.executable).parent / "vivify"
    return subprocess.run(
        [str(exe), "fetch-model", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def hub() -> Iterator[StandInHub]:
    with StandInHub() as hub:
        yield hub


def test_fetch_model_fetches_the_default_familys_repo_and_variant_into_hf_home(
    hub: StandInHub, tmp_path: Path
) -> None:
    from models.diffusion.families import DEFAULT_FAMILY, FAMILIES

    family = FAMILIES[DEFAULT_FAMILY]
    commit = hub.add_repo(family.hub_id, svd_like_repo(tmp_path / "repo"))
    hf_home = tmp_path / "hf"
    done = fetch_model(tmp_path, hub_env(hub, hf_home, VIVIFY_ANIMATOR="diffusion"))
    assert done.returncode == 0, done.stderr
    weights = SVD_FP16 if family.variant == "fp16" else SVD_WEIGHTS
    assert snapshot_files(hf_home, family.hub_id) == {commit: sorted(SVD_CONFIGS + weights)}
    assert (
        hf_home / "hub" / f"models--{family.hub_id.replace('/', '--')}" / "refs" / "main"
    ).read_text() == commit
    snapshot = hf_home / "hub" / f"models--{family.hub_id.replace('/', '--')}" / "snapshots" / commit
    assert str(snapshot) in done.stdout and "HF_HUB_OFFLINE=1" in done.stdout


def test_fetch_model_fetches_the_configured_model_at_its_configured_revision(
    hub: StandInHub, tmp_path: Path
) -> None:
    v1 = hub.add_repo("org/tiny-svd", svd_like_repo(tmp_path / "v1", "v1"), revision="v1")
    hub.add_repo("org/tiny-svd", svd_like_repo(tmp_path / "v2", "v2"))  # main
    hf_home = tmp_path / "hf"
    env = hub_env(
        hub,
        hf_home,
        VIVIFY_ANIMATOR="diffusion",
        VIVIFY_MODEL="org/tiny-svd",
        VIVIFY_ANIMATOR_OPTIONS='{"revision": "v1"}',
    )
    done = fetch_model(tmp_path, env)
    assert done.returncode == 0, done.stderr
    # not the default repo of a family: no variant unless asked for
    assert snapshot_files(hf_home, "org/tiny-svd") == {v1: sorted(SVD_CONFIGS + SVD_WEIGHTS)}


def test_fetch_model_of_an_unknown_repo_or_revision_exits_1(hub: StandInHub, tmp_path: Path) -> None:
    hub.add_repo("org/tiny-svd", svd_like_repo(tmp_path / "repo"))
    env = hub_env(hub, tmp_path / "hf")
    done = fetch_model(tmp_path, env, "org/no-such-model")
    assert done.returncode == 1 and "no model org/no-such-model" in done.stderr
    done = fetch_model(tmp_path, env, "org/tiny-svd", "--revision", "v9")
    assert done.returncode == 1 and "org/tiny-svd has no revision 'v9'" in done.stderr


def test_fetch_model_of_a_gated_repo_needs_its_licence_accepted_and_hf_token(
    hub: StandInHub, tmp_path: Path
) -> None:
    commit = hub.add_repo("org/gated-svd", svd_like_repo(tmp_path / "repo"), gated=True)
    hf_home = tmp_path / "hf"

    done = fetch_model(tmp_path, hub_env(hub, hf_home), "org/gated-svd")
    assert done.returncode == 1
    assert f"accept its licence on {hub.url}/org/gated-svd" in done.stderr and "HF_TOKEN" in done.stderr

    done = fetch_model(tmp_path, hub_env(hub, hf_home, HF_TOKEN="hf_someone_else"), "org/gated-svd")
    assert done.returncode == 1 and "the account of HF_TOKEN has no access" in done.stderr

    done = fetch_model(tmp_path, hub_env(hub, hf_home, HF_TOKEN=hub.token), "org/gated-svd")
    assert done.returncode == 0, done.stderr
    assert snapshot_files(hf_home, "org/gated-svd") == {commit: sorted(SVD_CONFIGS + SVD_WEIGHTS)}
    cdn = [r.authorization for r in hub.cdn_requests]
    assert cdn and not any(cdn)  # the token is for the Hub only, never sent on to the storage


def test_fetch_model_of_a_local_folder_has_nothing_to_fetch(env: Path, capsys) -> None:
    assert main(["fetch-model", str(env)]) == 0
    assert "local folder: nothing to fetch" in capsys.readouterr().out


def test_check_clip_prints_the_clip_check_and_exits_by_its_verdict(env: Path, portrait, capsys) -> None:
    """`vivify check-clip`: the job's clip_check as JSON for any clip, 0 when it passes, 1 when it fails,
    2 when a file cannot be read."""
    import numpy as np

    from models.video import encode_mp4

    photo, clip, frozen = env / "me.png", env / "clip.mp4", env / "frozen.mp4"
    portrait.save(photo)
    assert main(["animate", str(photo), "-o", str(clip), "--animator", "portrait", "--motion", "smile"]) == 0
    printed = capsys.readouterr().out
    assert "Likeness checked: same person (0." in printed and "[made by portrait]" in printed

    assert main(["check-clip", str(photo), str(clip), "--loops"]) == 0
    check = json.loads(capsys.readouterr().out)
    assert check["passed"] and check["faces"][0]["kept"] == 1.0 and check["seam"] is not None
    assert check["summary"] == f"Likeness checked: same person ({check['identity_distance']:.2f})"

    frozen.write_bytes(encode_mp4(np.repeat(np.asarray(portrait)[None], 72, axis=0), 24))
    assert main(["check-clip", str(photo), str(frozen)]) == 1
    failed = json.loads(capsys.readouterr().out)
    assert not failed["passed"] and failed["failures"][0].startswith("life")
    assert main(["check-clip", str(photo), str(frozen), "--still"]) == 0  # nothing was meant to move
    capsys.readouterr()

    not_a_clip = env / "not.mp4"
    not_a_clip.write_text("<html>")
    assert main(["check-clip", str(photo), str(not_a_clip)]) == 2
    assert main(["check-clip", str(env / "missing.png"), str(clip)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_animate_says_its_plan_and_keeps_other_libraries_notices_out_of_the_terminal(
    env: Path, portrait, capfd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The face models write to descriptor 2 from C++, libraries warn through logging and `warnings`: none
    of it reaches the visitor's terminal; it is in the log at debug. The motion planned is printed."""
    import logging
    import warnings

    import models.registry

    real = models.registry.create_animator

    def noisy(name: str, **options: object):
        os.write(2, b"W0000 inference_feedback_manager.cc:114] Feedback manager requires a model\n")
        logging.getLogger("absl").warning("absl says hello")
        warnings.warn("SymbolDatabase.GetPrototype() is deprecated", UserWarning, stacklevel=1)
        return real(name, **options)

    monkeypatch.setattr(models.registry, "create_animator", noisy)
    photo = env / "me.png"
    small = portrait.copy()
    small.thumbnail((96, 96))
    small.save(photo)
    args = ["animate", str(photo), "-o", str(env / "c.mp4"), "--animator", "push-in", "--motion", "nod"]
    assert main(args) == 0
    out, err = capfd.readouterr()
    from app.core.service.plans import plan_json

    planned = plan_json(None, "nod", 0)  # the seed and length the command uses: none given
    assert planned and out.startswith(f"planned motion: {planned['description']}\n"), out
    assert "analyzing ..." in err or "animating ..." in err  # the command's own progress stays
    for notice in ("Feedback manager", "absl says hello", "GetPrototype"):
        assert notice not in out + err, err

    monkeypatch.setenv("VIVIFY_LOG_LEVEL", "DEBUG")
    get_settings.cache_clear()
    assert main(args) == 0
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    native = [e for e in lines if e["logger"] == "vivify.native"]
    assert native and all(e["level"] == "debug" for e in native) and "Feedback manager" in native[0]["msg"]
    absl = [e for e in lines if e["logger"] == "absl"]
    assert absl and absl[0]["level"] == "debug", lines


def test_animate_with_a_server_writes_log_lines_above_its_progress_bar(
    env: Path, portrait, capfd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log line while the bar is drawn is a whole line of its own (JSON that parses), not glued to the
    bar; another library's INFO line (httpx's requests) stays out."""
    import logging

    from tqdm import tqdm

    import app.cli.client

    def service(server: str, photo: Path, out: Path, **fields: object) -> dict[str, object]:
        bar = tqdm(total=100, bar_format="{l_bar}{bar}| {postfix}")
        for n in (10, 40, 70):
            bar.n = n
            bar.refresh()
            logging.getLogger("vivify.client").warning("the stream dropped; polling")
            logging.getLogger("httpx").info("HTTP Request: GET /api/v1/jobs/j1")
        bar.close()
        out.write_bytes(b"mp4")
        return {"id": "j1", "animator": "portrait", "seed": 3, "motion": "auto", "plan": None}

    monkeypatch.setattr(app.cli.client, "animate_remote", service)
    photo = env / "p.jpg"
    portrait.save(photo)
    assert main(["animate", str(photo), "--server", "http://vivify.test", "-o", str(env / "c.mp4")]) == 0
    err = capfd.readouterr().err
    pieces = [p for line in err.splitlines() for p in line.split("\r")]
    logged = [p for p in pieces if "the stream dropped" in p]
    assert len(logged) == 3 and all(json.loads(p)["level"] == "warning" for p in logged), err
    assert "HTTP Request" not in err
