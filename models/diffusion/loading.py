"""Loading a pipeline, and fetching its weights ahead of time: the one way either happens.

`load_pipeline` builds the family's own pipeline class (hub repos may name another one in model_index.json:
Lightricks/LTX-Video names the text-to-video `LTXPipeline`), with per-component dtypes (the family's
`full_precision` components stay float32), the weight variant the source has, a pinned revision for hub ids
and no hub access for local folders. Every failure becomes AnimatorUnavailable naming the model and what to
do. `fetch_model` (behind `vivify fetch-model`) downloads exactly the files `from_pretrained` reads into the
Hugging Face cache, so workers can run with HF_HUB_OFFLINE=1.

torch, diffusers and huggingface_hub are imported by the functions that need them, not by this module.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.base import AnimatorUnavailable
from models.diffusion.families import AUTO, FAMILIES, Family, family_from_model_index

if TYPE_CHECKING:
    import torch

OOM_ADVICE = (
    'set cpu_offload "model" or quantize "fp8-weight" in VIVIFY_ANIMATOR_OPTIONS, or use a larger GPU'
)

# diffusers' weight-file names (diffusers and transformers components): plain, sharded, per variant.
_WEIGHT_NAMES = r"(diffusion_pytorch_model|model|pytorch_model)"
_SHARD = r"\d{5}-of-\d{5}"
_FORMATS = ("safetensors", "bin")
# What diffusers downloads besides the components' folders: root configs, transformers' auxiliary files.
_ROOT_FILES = ["scheduler_config.json", "config.json", "model_index.json", "pipeline.py"]
_AUX_FILES = [
    "chat_template.jinja",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
]


class _NoVariantFiles(ValueError):
    pass


# ---- which files -----------------------------------------------------------------------------------------
def resolve_variant(model: str, family: Family | None, variant: str | None = AUTO) -> str | None:
    """The weight variant to load: an explicit one (or None) as given; "auto" is the family's variant where
    the source has it: a local folder with `*.<variant>.safetensors` (or `.bin`) weights, or the family's own
    default hub repo (another repo need not carry it)."""
    if variant != AUTO:
        return variant
    if family is None or family.variant is None:
        return None
    folder = Path(model).expanduser()
    if folder.is_dir():
        v = family.variant
        patterns = [f"*.{v}.{ext}" for ext in _FORMATS] + [f"*.{v}-*-of-*.{ext}" for ext in _FORMATS]
        return v if any(next(folder.rglob(p), None) for p in patterns) else None
    return family.variant if model == family.hub_id else None


def pipeline_files(model_index: dict[str, Any], repo_files: Iterable[str], variant: str | None) -> list[str]:
    """The files of a hub repo that diffusers' `from_pretrained` reads (its own selection, restated without
    torch): per component the variant's weights where it has them, else the plain ones; safetensors where
    every component has them, else .bin; each component's config; every file of the non-weight components
    (scheduler, tokenizers, processors). Root-level extras (single-file checkpoints, demos) are left out.

    Raises ValueError when `variant` is set and no component has weights of it."""
    files = sorted(set(repo_files) - set(model_index.get("_ignore_files", [])))
    folders = [k for k, v in model_index.items() if isinstance(v, list) and k != "_class_name"]
    groups = _group(files)
    weight_folders = {k for k in folders if any(_is_weights(f) for f in groups.get(k, []))}

    # safetensors only where every weight-carrying component has them, in the variant it will load
    safetensors = all(
        any(f.endswith(".safetensors") for f in _pick_weights(groups[k], variant)[0]) for k in weight_folders
    )
    skip = ("bin" if safetensors else "safetensors", "msgpack", "onnx", "pb")
    weights: set[str] = set()
    found_variant = False
    for names in groups.values():
        chosen, in_variant = _pick_weights([n for n in names if not n.endswith(skip)], variant)
        weights.update(chosen)
        found_variant = found_variant or in_variant
    if variant is not None and not found_variant:
        raise _NoVariantFiles(f"no weight files of the {variant!r} variant")

    allow = [f"{k}/*" for k in folders if k not in weight_folders]
    allow += [f"{k}/config.json" for k in weight_folders] + _ROOT_FILES + _AUX_FILES
    deny = [f"*.{ext}" for ext in skip] + [f"*.{ext}.index.*json" for ext in skip]
    selected = weights | {f for f in files if any(fnmatch.fnmatchcase(f, p) for p in allow)}
    return sorted(f for f in selected if not any(fnmatch.fnmatchcase(f, p) for p in deny))


def _is_weights(path: str) -> bool:
    return path.endswith(tuple(f".{ext}" for ext in (*_FORMATS, "onnx", "pb", "msgpack")))


def _group(files: Iterable[str]) -> dict[str, list[str]]:
    """Files by component folder; the rest (root, deeper) under "", as diffusers groups them."""
    groups: dict[str, list[str]] = {}
    for f in files:
        parts = f.split("/")
        groups.setdefault(parts[0] if len(parts) == 2 else "", []).append(f)
    return groups


def _pick_weights(files: list[str], variant: str | None) -> tuple[list[str], bool]:
    """(one component's weight files and shard indexes, whether they are the variant's): the variant's where
    the component has any, else the plain ones."""
    fmt = "|".join(_FORMATS)
    names = {f: f.rpartition("/")[2] for f in files}
    if variant is not None:
        v = re.escape(variant)
        weight = re.compile(rf"{_WEIGHT_NAMES}\.({v}|{v}-{_SHARD})\.({fmt})$")
        index = re.compile(rf"{_WEIGHT_NAMES}\.({fmt})\.index\.{v}\.json$")
        chosen = [f for f, n in names.items() if weight.match(n)]
        if chosen:
            return chosen + [f for f, n in names.items() if index.match(n)], True
    weight = re.compile(rf"{_WEIGHT_NAMES}(-{_SHARD})?\.({fmt})$")
    index = re.compile(rf"{_WEIGHT_NAMES}\.({fmt})\.index\.json$")
    return [f for f, n in names.items() if weight.match(n) or index.match(n)], False


# ---- loading ---------------------------------------------------------------------------------------------
def load_pipeline(
    model: str,
    family: Family,
    dtype: torch.dtype,
    *,
    revision: str | None = None,
    variant: str | None = AUTO,
) -> Any:
    """The family's pipeline from a hub id or a local folder, `family.full_precision` components in float32
    and the rest in `dtype`. `revision` pins a commit, tag or branch of a hub repo; a local folder is read
    without the hub. Raises AnimatorUnavailable, naming the model and what to do, when it cannot be loaded."""
    import diffusers
    import torch

    from models.diffusion.speed import dtype_kwarg

    cls = getattr(diffusers, family.pipeline_class)
    folder = Path(model).expanduser()
    local = folder.is_dir()
    if local:
        _check_folder(model, folder, cls, family)
    elif not _looks_like_hub_id(model):
        raise AnimatorUnavailable(
            f"no model folder at {model}: set the model (VIVIFY_MODEL) to an existing diffusers pipeline "
            "folder or a Hugging Face hub id"
        )
    chosen = resolve_variant(model, family, variant)
    dtypes = {"default": dtype, **{name: torch.float32 for name in family.full_precision}}
    kwargs: dict[str, Any] = {"variant": chosen, **dtype_kwarg(dtypes)}
    if local:
        kwargs["local_files_only"] = True
    else:
        kwargs["revision"] = revision
    try:
        return cls.from_pretrained(str(folder) if local else model, **kwargs)
    except Exception as exc:
        raise unavailable(model, exc, family=family, revision=revision, variant=chosen) from exc


def _looks_like_hub_id(model: str) -> bool:
    return re.fullmatch(r"[\w][\w.-]*(/[\w][\w.-]*)?", model) is not None


def _check_folder(model: str, folder: Path, cls: type, family: Family) -> None:
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise AnimatorUnavailable(
            f"{model} is not a diffusers pipeline folder (no model_index.json): give a folder saved with "
            "`save_pretrained`, or a Hugging Face hub id"
        )
    index = json.loads(index_file.read_text())
    missing = _missing_components(cls, index)
    if missing:
        raise AnimatorUnavailable(_misfit_message(model, family, index, missing))


def _missing_components(cls: type[Any], index: dict[str, Any]) -> list[str]:
    """The components `cls` cannot do without that a model_index.json does not list."""
    params = inspect.signature(cls.__init__).parameters.values()
    required = {
        p.name
        for p in params
        if p.name != "self" and p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
    }
    present = {k for k, v in index.items() if isinstance(v, list)}
    return sorted(required - present - set(getattr(cls, "_optional_components", [])))


def _misfit_message(model: str, family: Family, index: dict[str, Any], missing: list[str]) -> str:
    held = index.get("_class_name", "an unknown pipeline")
    try:
        hint = (
            f"use family {family_from_model_index(index)!r} (or leave family unset to read it from the model)"
        )
    except ValueError as e:
        hint = str(e)
    return (
        f"{model} holds a {held} whose components do not fit {family.pipeline_class} (family {family.name}): "
        f"it lacks {', '.join(missing)}; {hint}"
    )


# ---- fetching --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fetched:
    path: Path  # the snapshot folder in the Hugging Face cache
    commit: str
    variant: str | None
    files: list[str]
    size: int  # bytes


def fetch_model(
    model: str, *, revision: str | None = None, variant: str | None = AUTO, family: Family | None = None
) -> Fetched:
    """Download into the Hugging Face cache (HF_HOME) the files `load_pipeline(model, ...)` reads, so a worker
    sharing that cache loads it with HF_HUB_OFFLINE=1. "auto" picks the variant as load_pipeline does (the
    family defaults to the one whose default repo `model` is). Raises AnimatorUnavailable."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    family = family or next((f for f in FAMILIES.values() if f.hub_id == model), None)
    chosen = resolve_variant(model, family, variant)
    try:
        info = HfApi().model_info(model, revision=revision)
        index_file = hf_hub_download(model, "model_index.json", revision=info.sha)
        siblings = [s.rfilename for s in info.siblings or []]
        files = pipeline_files(json.loads(Path(index_file).read_text()), siblings, chosen)
        # The revision as given (not the commit), so the cache records refs/<revision> for offline loads.
        folder = Path(snapshot_download(model, revision=revision, allow_patterns=files))
    except Exception as exc:
        raise unavailable(model, exc, family=family, revision=revision, variant=chosen) from exc
    size = sum(os.path.getsize(folder / f) for f in files if (folder / f).is_file())
    return Fetched(folder, folder.name, chosen, files, size)


# ---- failures --------------------------------------------------------------------------------------------
def unavailable(
    model: str,
    exc: BaseException,
    *,
    family: Family | None = None,
    revision: str | None = None,
    variant: str | None = None,
) -> AnimatorUnavailable:
    """AnimatorUnavailable for a failure to fetch or load `model`, or to place it on the GPU: what went wrong
    and what to do. The caller raises it `from exc`."""
    from huggingface_hub import constants, errors, get_token

    chain = _chain(exc)

    def found(kind: type | tuple[type, ...]) -> bool:
        return any(isinstance(e, kind) for e in chain)

    endpoint, page, cache = constants.ENDPOINT, f"{constants.ENDPOINT}/{model}", constants.HF_HUB_CACHE
    at_rev = f" at revision {revision!r}" if revision else ""
    fetch = f"vivify fetch-model {model}" + (f" --revision {revision}" if revision else "")
    oom = next((e for e in chain if isinstance(e, _oom_types())), None)
    if oom is not None:
        said = str(oom).strip().splitlines()[0][:200] if str(oom).strip() else "out of memory"
        return AnimatorUnavailable(f"{model} does not fit in GPU memory ({said}): {OOM_ADVICE}")
    if found(errors.GatedRepoError):
        if get_token():
            return AnimatorUnavailable(
                f"{model} is a gated model and the account of HF_TOKEN has no access to it: signed in as "
                f"that account, accept its licence on {page}, or set HF_TOKEN to a token of one that has"
            )
        return AnimatorUnavailable(
            f"{model} is a gated model: accept its licence on {page} (signed in), then set HF_TOKEN to an "
            "access token (read) of that account"
        )
    if found(errors.RevisionNotFoundError):
        return AnimatorUnavailable(
            f"{model} has no revision {revision!r}: pin an existing commit, tag or branch"
        )
    if found(errors.RepositoryNotFoundError):
        return AnimatorUnavailable(
            f"no model {model} on the Hugging Face Hub ({endpoint}): check the id; a private repo also needs "
            "HF_TOKEN, and a local folder must exist on this machine"
        )
    remote_missing = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)
    if any(isinstance(e, remote_missing) and "model_index.json" in str(e) for e in chain):
        return AnimatorUnavailable(f"{model}{at_rev} is not a diffusers pipeline repo (no model_index.json)")
    if constants.HF_HUB_OFFLINE and found((errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError)):
        return AnimatorUnavailable(
            f"{model}{at_rev} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 forbids "
            f"downloading it: run `{fetch}` with the same HF_HOME where the Hub is reachable, then retry"
        )
    if found(errors.LocalEntryNotFoundError) or any(_is_transport_error(e) for e in chain):
        return AnimatorUnavailable(
            f"cannot download {model}{at_rev} from {endpoint} and it is not in the Hugging Face cache "
            f"({cache}): check the network, or run `{fetch}` where the Hub is reachable and share HF_HOME"
        )
    if found(_NoVariantFiles) or re.search(r"variant=.*no such modeling files", str(exc)):
        return AnimatorUnavailable(
            f"{model} has no {variant!r} weight files: leave variant 'auto' or set it to null"
        )
    if family is not None and isinstance(exc, ValueError) and "were passed" in str(exc):
        index = _cached_index(model, revision)
        missing = _missing_components(_pipeline_class(family), index) if index else []
        if index and missing:
            return AnimatorUnavailable(_misfit_message(model, family, index, missing))
        return AnimatorUnavailable(
            f"the components of {model} do not fit {family.pipeline_class} (family {family.name}): {exc}"
        )
    target = f" as {family.pipeline_class}" if family else ""
    return AnimatorUnavailable(f"{model}{at_rev} could not be loaded{target}: {type(exc).__name__}: {exc}")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything behind it: diffusers re-raises a hub error as OSError `from` it while
    handling another, so both links are followed."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if all(e is not s for s in seen):
            seen.append(e)
            todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return seen


def _is_transport_error(e: BaseException) -> bool:
    """A network failure, from whichever HTTP client the hub library uses, or from the OS."""
    return any(c.__name__ in ("TransportError", "ConnectionError") for c in type(e).__mro__)


def _oom_types() -> tuple[type, ...]:
    import torch

    return (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError)


def _pipeline_class(family: Family) -> type:
    import diffusers

    return getattr(diffusers, family.pipeline_class)


def _cached_index(model: str, revision: str | None) -> dict[str, Any] | None:
    """A hub repo's model_index.json from the cache, where the failed load left it."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "model_index.json", revision=revision)
    return json.loads(Path(found).read_text()) if isinstance(found, str) else None
