"""Loading a pipeline (models/diffusion/loading.py): the family's class, per-component dtypes, weight
variants, the Hugging Face cache offline, and failures that say what to do.

Local folders are tiny random-weight pipelines loaded in this process. Hub ids are served by the stand-in
Hub (tests/fixtures/hub_server.py); huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE at
import, so those loads run in a subprocess with its own environment.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.tiny_pipelines import build_tiny_ltx, build_tiny_svd, build_tiny_wan
from models.base import AnimatorUnavailable
from models.diffusion.families import FAMILIES
from models.diffusion.loading import load_pipeline, pipeline_files, resolve_variant, unavailable
from tests.fixtures.hub_server import SVD_CONFIGS, SVD_INDEX, StandInHub, hub_env

SVD_HUB_ID = FAMILIES["svd"].hub_id
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def add_fp16_variant(folder: Path) -> Path:
    """Save fp16-variant weights next to a pipeline folder's own, as stabilityai's SVD repos carry them;
    every weight is 1 higher, so a test can tell which set was loaded."""
    from diffusers import StableVideoDiffusionPipeline

    pipe = StableVideoDiffusionPipeline.from_pretrained(folder)
    with torch.no_grad():
        for module in (pipe.unet, pipe.vae, pipe.image_encoder):
            for p in module.parameters():
                p.add_(1.0)
    pipe.to(torch.float16).save_pretrained(folder, variant="fp16")
    return folder


def unet_sum(pipe: object) -> float:
    return float(sum(p.detach().double().sum() for p in pipe.unet.parameters()))


def file_sum(path: Path) -> float:
    from safetensors.torch import load_file

    return float(sum(t.double().sum() for t in load_file(path).values()))


@pytest.fixture(scope="module")
def svd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_svd(tmp_path_factory.mktemp("svd") / "svd")


@pytest.fixture(scope="module")
def svd_fp16(tmp_path_factory: pytest.TempPathFactory, svd: Path) -> Path:
    folder = tmp_path_factory.mktemp("svd-fp16") / "svd"
    shutil.copytree(svd, folder)
    return add_fp16_variant(folder)


# ---- local folders -----------------------------------------------------------------------------------------
def test_an_ltx_folder_naming_the_text_to_video_class_loads_as_image_to_video(tmp_path: Path) -> None:
    folder = build_tiny_ltx(tmp_path / "ltx")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "LTXPipeline"  # as Lightricks/LTX-Video's model_index.json has it
    (folder / "model_index.json").write_text(json.dumps(index))
    pipe = load_pipeline(str(folder), FAMILIES["ltx"], torch.float32)
    assert type(pipe).__name__ == "LTXImageToVideoPipeline"


def test_wan_keeps_its_vae_and_image_encoder_in_float32(tmp_path: Path) -> None:
    folder = build_tiny_wan(tmp_path / "wan")
    pipe = load_pipeline(str(folder), FAMILIES["wan2.1"], torch.bfloat16)
    assert pipe.vae.dtype == torch.float32
    assert pipe.image_encoder.dtype == torch.float32
    assert pipe.transformer.dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == torch.bfloat16


def test_svd_loads_the_fp16_variant_where_the_folder_has_it(svd_fp16: Path) -> None:
    fp16 = file_sum(svd_fp16 / "unet" / "diffusion_pytorch_model.fp16.safetensors")
    plain = file_sum(svd_fp16 / "unet" / "diffusion_pytorch_model.safetensors")
    assert abs(fp16 - plain) > 1000  # each of the variant's weights is 1 higher

    assert resolve_variant(str(svd_fp16), FAMILIES["svd"]) == "fp16"
    pipe = load_pipeline(str(svd_fp16), FAMILIES["svd"], torch.float32)
    assert unet_sum(pipe) == pytest.approx(fp16, rel=1e-6)
    assert pipe.unet.dtype == torch.float32  # the dtype asked for, whatever the files hold

    pipe = load_pipeline(str(svd_fp16), FAMILIES["svd"], torch.float32, variant=None)
    assert unet_sum(pipe) == pytest.approx(plain, rel=1e-6)


def test_an_svd_folder_without_variant_files_loads_its_own_weights(svd: Path) -> None:
    assert resolve_variant(str(svd), FAMILIES["svd"]) is None
    pipe = load_pipeline(str(svd), FAMILIES["svd"], torch.float32)
    assert unet_sum(pipe) == pytest.approx(file_sum(svd / "unet" / "diffusion_pytorch_model.safetensors"))

    with pytest.raises(AnimatorUnavailable, match="has no 'fp16' weight files"):
        load_pipeline(str(svd), FAMILIES["svd"], torch.float32, variant="fp16")


def test_auto_picks_the_variant_of_the_familys_own_hub_repo_only() -> None:
    svd = FAMILIES["svd"]
    assert resolve_variant(SVD_HUB_ID, svd) == "fp16"
    assert resolve_variant("someone/svd-finetune", svd) is None
    assert resolve_variant("someone/svd-finetune", svd, "fp16") == "fp16"
    assert resolve_variant(SVD_HUB_ID, svd, None) is None
    assert resolve_variant(FAMILIES["ltx"].hub_id, FAMILIES["ltx"]) is None  # LTX has no variant


@pytest.mark.parametrize("model", ["{tmp}/nowhere", "./no/such/folder", "~/no-such-model-folder"])
def test_a_missing_folder_is_unavailable_and_named(model: str, tmp_path: Path) -> None:
    model = model.format(tmp=tmp_path)
    with pytest.raises(AnimatorUnavailable, match="no model folder at") as exc:
        load_pipeline(model, FAMILIES["svd"], torch.float32)
    assert model in str(exc.value)


def test_a_folder_without_model_index_is_not_a_pipeline(tmp_path: Path) -> None:
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(AnimatorUnavailable, match="not a diffusers pipeline folder"):
        load_pipeline(str(tmp_path), FAMILIES["svd"], torch.float32)


def test_a_folder_of_another_pipeline_does_not_fit_the_family(svd: Path) -> None:
    with pytest.raises(AnimatorUnavailable) as exc:
        load_pipeline(str(svd), FAMILIES["ltx"], torch.float32)
    message = str(exc.value)
    assert str(svd) in message and "do not fit LTXImageToVideoPipeline" in message
    assert "StableVideoDiffusionPipeline" in message and "use family 'svd'" in message


def test_out_of_memory_suggests_offload_or_quantisation() -> None:
    message = str(
        unavailable("org/big", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    )
    assert "org/big" in message and "GPU memory" in message
    assert 'cpu_offload "model"' in message and 'quantize "fp8-weight"' in message


# ---- which files a hub repo needs --------------------------------------------------------------------------
SVD_REPO = [  # stabilityai/stable-video-diffusion-img2vid-xt-1-1's layout
    ".gitattributes",
    "LICENSE",
    "README.md",
    "svd_xt_1_1.safetensors",  # the single-file checkpoint: not for diffusers
    "model_index.json",
    "feature_extractor/preprocessor_config.json",
    "image_encoder/config.json",
    "image_encoder/model.fp16.safetensors",
    "image_encoder/model.safetensors",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
]


def test_the_files_of_the_svd_repo_are_its_configs_and_one_weight_set() -> None:
    assert pipeline_files(SVD_INDEX, SVD_REPO, "fp16") == sorted(
        SVD_CONFIGS
        + [
            "image_encoder/model.fp16.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "vae/diffusion_pytorch_model.fp16.safetensors",
        ]
    )
    assert pipeline_files(SVD_INDEX, SVD_REPO, None) == sorted(
        SVD_CONFIGS
        + [
            "image_encoder/model.safetensors",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
        ]
    )
    with pytest.raises(ValueError, match="bf16"):
        pipeline_files(SVD_INDEX, SVD_REPO, "bf16")


def test_the_files_of_an_ltx_like_repo_leave_out_its_single_file_checkpoints() -> None:
    index = {
        "_class_name": "LTXPipeline",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "T5Tokenizer"],
        "transformer": ["diffusers", "LTXVideoTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLLTXVideo"],
    }
    text_encoder = [f"text_encoder/model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    tokenizer = ["tokenizer/added_tokens.json", "tokenizer/spiece.model", "tokenizer/tokenizer_config.json"]
    wanted = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors.index.json",
        *text_encoder,
        *tokenizer,
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    extras = [
        "ltx-video-2b-v0.9.safetensors",
        "ltxv-13b-0.9.7-dev.safetensors",
        "README.md",
        "media/trailer.gif",
    ]
    assert pipeline_files(index, wanted + extras, None) == sorted(wanted)


def test_one_component_without_safetensors_makes_every_component_load_bin_weights() -> None:
    repo = [f for f in SVD_REPO if "fp16" not in f and f != "unet/diffusion_pytorch_model.safetensors"]
    repo += ["unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin"]
    files = pipeline_files(SVD_INDEX, repo, None)
    assert "unet/diffusion_pytorch_model.bin" in files and "vae/diffusion_pytorch_model.bin" in files
    assert not [f for f in files if f.endswith(".safetensors")]


# ---- hub ids, through the Hugging Face cache ---------------------------------------------------------------
LOAD = """
import json, sys
import torch
from models.base import AnimatorUnavailable
from models.diffusion.families import FAMILIES
from models.diffusion.loading import load_pipeline

results = []
for model, family, revision in json.loads(sys.argv[1]):
    try:
        pipe = load_pipeline(model, FAMILIES[family], torch.float32, revision=revision)
    except AnimatorUnavailable as e:
        results.append({"unavailable": str(e)})
    else:
        unet = getattr(pipe, "unet", None)
        total = float(sum(p.double().sum() for p in unet.parameters())) if unet is not None else None
        results.append({"class": type(pipe).__name__, "unet_sum": total})
print("RESULTS " + json.dumps(results))
"""


def load_in_subprocess(env: dict[str, str], cwd: Path, *loads: tuple[str, str, str | None]) -> list[dict]:
    """load_pipeline in a fresh interpreter with `env` (huggingface_hub reads it at import)."""
    cmd = [sys.executable, "-c", LOAD, json.dumps(loads)]
    env = env | {"OMP_NUM_THREADS": "1"}  # tiny models: more threads only spin on a shared machine
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULTS "))


def fetch_in_subprocess(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    vivify = Path(sys.executable).parent / "vivify"
    return subprocess.run(
        [str(vivify), "fetch-model", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_a_fetched_model_loads_offline_from_the_cache_with_the_hub_gone(
    svd_fp16: Path, tmp_path: Path
) -> None:
    hf_home = tmp_path / "hf"
    with StandInHub() as hub:
        hub.add_repo(SVD_HUB_ID, svd_fp16)
        fetched = fetch_in_subprocess(hub_env(hub, hf_home), tmp_path, SVD_HUB_ID)
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr[-3000:]
    [snapshot] = (hf_home / "hub").glob("models--stabilityai--*/snapshots/*")
    assert (snapshot / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert not (snapshot / "unet" / "diffusion_pytorch_model.safetensors").exists()  # only what loads
    # The hub is closed: only the cache can answer.
    [result] = load_in_subprocess(
        hub_env(hub, hf_home, HF_HUB_OFFLINE="1"), tmp_path, (SVD_HUB_ID, "svd", None)
    )
    assert result["class"] == "StableVideoDiffusionPipeline"
    fp16 = file_sum(svd_fp16 / "unet" / "diffusion_pytorch_model.fp16.safetensors")
    assert result["unet_sum"] == pytest.approx(fp16, rel=1e-6)  # the default repo's fp16 variant


def test_offline_without_fetching_first_says_to_run_fetch_model(svd: Path, tmp_path: Path) -> None:
    with StandInHub() as hub:
        hub.add_repo("org/tiny-svd", svd)
        env = hub_env(hub, tmp_path / "hf", HF_HUB_OFFLINE="1")
        [result] = load_in_subprocess(env, tmp_path, ("org/tiny-svd", "svd", None))
        assert hub.requests == []  # offline means offline, even with the hub up
    message = result["unavailable"]
    assert "org/tiny-svd" in message and "HF_HUB_OFFLINE=1" in message
    assert "vivify fetch-model org/tiny-svd" in message


@pytest.fixture(scope="module")
def online(svd: Path, svd_fp16: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Loads of hub ids from the stand-in Hub, all in one subprocess (an interpreter with torch and
    diffusers takes seconds to start): the results by name, and the hub's url as "url"."""
    root = tmp_path_factory.mktemp("online")
    newer = root / "newer"  # other plain weights: the variant's values under the plain names
    shutil.copytree(svd, newer)
    for part in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "image_encoder/model"):
        shutil.copy(svd_fp16 / f"{part}.fp16.safetensors", newer / f"{part}.safetensors")
    with StandInHub() as hub:
        commit = hub.add_repo("org/tiny-svd", svd, revision="v1")
        hub.add_repo("org/tiny-svd", newer)  # main
        hub.add_repo("org/gated-svd", svd, gated=True)
        loads = {
            "v1": ("org/tiny-svd", "svd", "v1"),
            "commit": ("org/tiny-svd", "svd", commit),
            "main": ("org/tiny-svd", "svd", None),
            "gated": ("org/gated-svd", "svd", None),
            "missing": ("org/no-such-model", "svd", None),
            "bad revision": ("org/tiny-svd", "svd", "v9"),
            "other family": ("org/tiny-svd", "ltx", None),
        }
        results = load_in_subprocess(hub_env(hub, root / "hf"), root, *loads.values())
    return {
        **dict(zip(loads, results, strict=True)),
        "url": {"hub": hub.url},
        "sums": {"plain": file_sum(svd / UNET), "newer": file_sum(newer / UNET)},
    }


UNET = Path("unet/diffusion_pytorch_model.safetensors")


def test_a_pinned_revision_loads_that_tag_or_commit(online: dict[str, dict]) -> None:
    sums = online["sums"]
    assert sums["plain"] != pytest.approx(sums["newer"])
    assert online["v1"]["unet_sum"] == pytest.approx(sums["plain"], rel=1e-6)
    assert online["commit"]["unet_sum"] == pytest.approx(sums["plain"], rel=1e-6)
    assert online["main"]["unet_sum"] == pytest.approx(sums["newer"], rel=1e-6)


def test_a_gated_repo_without_a_token_says_to_accept_the_licence(online: dict[str, dict]) -> None:
    message = online["gated"]["unavailable"]
    assert "org/gated-svd is a gated model" in message
    assert f"accept its licence on {online['url']['hub']}/org/gated-svd" in message and "HF_TOKEN" in message


def test_a_missing_repo_or_revision_is_named(online: dict[str, dict]) -> None:
    assert "no model org/no-such-model on the Hugging Face Hub" in online["missing"]["unavailable"]
    assert "org/tiny-svd has no revision 'v9'" in online["bad revision"]["unavailable"]


def test_a_hub_repo_of_another_pipeline_does_not_fit_the_family(online: dict[str, dict]) -> None:
    message = online["other family"]["unavailable"]
    assert "org/tiny-svd holds a StableVideoDiffusionPipeline" in message
    assert "do not fit LTXImageToVideoPipeline" in message and "use family 'svd'" in message
