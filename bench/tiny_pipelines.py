"""Tiny, seeded, random-weight image-to-video pipelines saved to a folder, like diffusers' own fast tests.

They run the real code path (vision encoder → denoiser → VAE decode) on a CPU in well under a second at
32–64 px. Each folder also carries a `vivify.json` that shrinks the family defaults (size, frames, steps)
so an animator built on it with no request overrides stays fast too (the worker tests rely on that).
The test suite and `bench/gpu_i2v.py --tiny` use them: a rehearsal tool, so it lives in bench/ and
nothing that serves can import it.

Config notes: SVD resizes the photo to 224 px before CLIP, so the tiny CLIP needs image_size=224; the VAEs
have 4 blocks so they downsample 8× like the real ones; the text encoders get a WordLevel tokenizer built
here (`word_tokenizer`; diffusers' tests otherwise load one from the hub), which the real-size and
production-shape pipelines use too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.diffusion.families import FOLDER_DEFAULTS_FILE, SVD_SCHEDULER_CONFIG

TINY_DEFAULTS = {"size": [64, 64], "steps": 2}


def _write_defaults(path: Path, **extra: object) -> None:
    (path / FOLDER_DEFAULTS_FILE).write_text(json.dumps({**TINY_DEFAULTS, **extra}, indent=2))


def build_tiny_svd(path: Path) -> Path:
    """A tiny StableVideoDiffusionPipeline (CLIP → spatio-temporal UNet → temporal VAE) saved at `path`."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=4,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
        num_frames=8,
    )
    scheduler = EulerDiscreteScheduler(**SVD_SCHEDULER_CONFIG)
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 32, 64, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=1,
    )
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            intermediate_size=37,
            patch_size=32,
        )
    )
    feature_extractor = CLIPImageProcessor(crop_size=224, size=224)
    pipe = StableVideoDiffusionPipeline(
        unet=unet,
        image_encoder=image_encoder,
        scheduler=scheduler,
        vae=vae,
        feature_extractor=feature_extractor,
    )
    pipe.save_pretrained(path)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy class (TYPE_CHECKING import)
    _write_defaults(path, frames=8)
    return path


def word_tokenizer(words: list[str]) -> Any:
    """A word-level fast tokenizer over a small vocabulary: no sentencepiece model, no hub."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


WORDS = [
    "a",
    "the",
    "person",
    "look",
    "looks",
    "left",
    "right",
    "up",
    "down",
    "and",
    "smile",
    "smiles",
    "blink",
    "blinks",
    "turn",
    "turns",
    "head",
    "slowly",
]


def build_tiny_wan(path: Path) -> Path:
    """A tiny WanImageToVideoPipeline (Wan 2.1 layout: UMT5 + CLIP image encoder → DiT → causal 3D VAE)."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
    )

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    tokenizer = word_tokenizer(WORDS)
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,  # inner width 32: a multiple of 16, as quantisation kernels need
        in_channels=36,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4,
    )
    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    image_processor = CLIPImageProcessor(crop_size=32, size=32)
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=transformer,
    )
    pipe.save_pretrained(path)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy class (TYPE_CHECKING import)
    _write_defaults(path, frames=9, call_kwargs={"max_sequence_length": 16})
    return path


def _tiny_t5(vocab_size: int) -> Any:
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,  # type: ignore[call-arg]  # config takes extra kwargs; dataclass_transform hides them
        )
    )


def build_tiny_ltx(path: Path, condition: bool = False) -> Path:
    """A tiny LTXImageToVideoPipeline (or LTXConditionPipeline): T5 → LTX DiT → LTX video VAE (4× spatial)."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    tokenizer = word_tokenizer(WORDS)
    cls = LTXConditionPipeline if condition else LTXImageToVideoPipeline
    pipe = cls(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_tiny_t5(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
    )
    pipe.save_pretrained(path)  # type: ignore[union-attr]  # mypy sees diffusers' dummy classes (TYPE_CHECKING import)
    _write_defaults(path, frames=9, call_kwargs={"max_sequence_length": 16})
    return path


def build_tiny_cogvideox(path: Path) -> Path:
    """A tiny CogVideoXImageToVideoPipeline: T5 → CogVideoX DiT (learned positions: fixed size) → 3D VAE."""
    import torch
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
        DDIMScheduler,
    )

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=8,  # latent 8×8 → 64×64 pixels; learned positions fix the size
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    tokenizer = word_tokenizer(WORDS)
    pipe = CogVideoXImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=_tiny_t5(len(tokenizer)),
        vae=vae,
        transformer=transformer,
        scheduler=DDIMScheduler(),
    )
    pipe.save_pretrained(path)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy class (TYPE_CHECKING import)
    _write_defaults(path, frames=9, call_kwargs={"max_sequence_length": 16})
    return path
