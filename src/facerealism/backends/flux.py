"""The paper's data engine through diffusers: FLUX fast text-to-image, then FLUX slow image-to-image on that image."""

# Each pair: the fast model (FLUX.1-schnell: 4 steps, no guidance) renders the prompt from the
# row's seed; the slow model (FLUX.1-dev) re-renders that image at img2img strength 0.7 with
# the same prompt and seed, so the pair shares its layout and differs in detail. Both pipelines
# are loaded once per backend, on first use, and reused for every batch.
#
# Precision: `generate.flux.dtype` is used as configured on every device, CPU included. bfloat16
# runs on CPU in torch 2.14 (tiny models: schnell images within ~0.5 grey levels of float32 on
# average, dev ~1.3; float16 works but is ~4x slower there) and is the only precision at which
# the real 12B transformers fit in ordinary RAM, so the config is not second-guessed; describe()
# records it. Use generate.flux.dtype=float32 for bit-stable CPU renders.
#
# Seeds: each prompt gets its own CPU torch.Generator, so its noise depends only on its seed, not
# on its neighbours in the batch or the device (diffusers draws CPU noise, then moves it). Pixels
# still carry kernel numerics: in float32 on CPU a batch of 3 renders exactly as 3 batches of 1;
# in bfloat16 dev images of tiny models move by up to 8 grey levels.
#
# Shared components: FLUX.1-schnell and -dev use one CLIP-L, one T5-XXL and one autoencoder (ComfyUI
# loads the same clip_l, t5xxl and ae files for both). When those folders hold byte-identical files,
# the slow pipeline is built with the fast one's modules instead of a second copy: ~10 GB less GPU
# memory in bf16 (T5-XXL alone is 9.5 GB) and one load less. Hub ids are compared through the
# local cache, whose blobs are named by their content hash; local copies are hashed.

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from facerealism.config import Config
from facerealism.errors import UserError
from facerealism.files import sha256_file

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu; anything else is passed to torch unchanged."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _one_line(err: BaseException, limit: int = 240) -> str:
    text = re.sub(r"\s+", " ", str(err)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_uint8(image) -> np.ndarray:
    """PIL image -> uint8 (h, w, 3)."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _looks_like_path(model: str) -> bool:
    """True for what cannot be a hub id ('owner/name' or 'name'), so it must have meant a local directory."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def model_dir(model: str) -> Path | None:
    """Where a model's files are: the directory itself, or a hub id's snapshot in the local cache (None if absent)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if _looks_like_path(model):
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        return None


def _content_id(f: Path) -> str:
    real = f.resolve()
    if real.parent.name == "blobs":  # the Hugging Face cache stores each file once, named by its hash
        return real.name
    return sha256_file(real)


def identical_components(fast_model: str, slow_model: str) -> list[str]:
    """Components (the scheduler aside: it keeps state) of the same class whose files are byte-identical in both
    pipelines, so one loaded copy can serve both. Empty when either model is not on disk yet."""
    a, b = model_dir(fast_model), model_dir(slow_model)
    if a is None or b is None or a.resolve() == b.resolve():
        return []
    try:
        index_a, index_b = (json.loads((d / "model_index.json").read_text()) for d in (a, b))
    except (OSError, ValueError):
        return []  # load_pipeline reports the broken directory
    same = []
    for name, spec in index_a.items():
        if name.startswith("_") or name == "scheduler" or not isinstance(spec, list) or spec[0] is None \
                or index_b.get(name) != spec:
            continue
        files_a = {f.relative_to(a / name): f for f in (a / name).rglob("*") if f.is_file()}
        files_b = {f.relative_to(b / name): f for f in (b / name).rglob("*") if f.is_file()}
        if not files_a or files_a.keys() != files_b.keys() \
                or any(files_a[k].stat().st_size != files_b[k].stat().st_size for k in files_a):
            continue  # sizes differ: no need to hash
        if all(files_a[k].resolve() == files_b[k].resolve() or _content_id(files_a[k]) == _content_id(files_b[k])
               for k in files_a):  # the same file (links) needs no hashing
            same.append(name)
    return same


def _fix(section: str, key: str) -> str:
    return (f"set generate.{section}.{key}=/path/to/local/copy (a diffusers directory with model_index.json, "
            f"e.g. a hub snapshot or save_pretrained output)")


def local_model_problem(model: str, key: str, section: str = "flux") -> str | None:
    """What is wrong with a model source before loading it (one line naming the key), or None.

    A local directory must be a diffusers pipeline with every component folder its model_index.json declares;
    what cannot be a hub id must be an existing directory. Hub ids pass (the cache or the hub decides).
    """
    fix = _fix(section, key)
    path = Path(model).expanduser()
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            return (f"generate.{section}.{key}: {model} has no model_index.json, so it is not a diffusers "
                    f"pipeline directory; {fix}")
        # diffusers would report a missing component folder as a missing config.json in the root.
        declared = [k for k, v in json.loads(index.read_text()).items()
                    if not k.startswith("_") and isinstance(v, list) and v[0] is not None]
        absent = [k for k in declared if not (path / k).is_dir()]
        if absent:
            return (f"generate.{section}.{key}: {model} lacks component folder(s) {absent} that its "
                    f"model_index.json declares; {fix}")
    elif _looks_like_path(model):
        return f"generate.{section}.{key}: no such local directory {model}; {fix}"
    return None


def load_pipeline(pipeline_cls, model: str, key: str, dtype: str, section: str = "flux",
                  components: dict | None = None):
    """`pipeline_cls.from_pretrained(model)`, with one actionable line when the weights cannot be found.

    Args:
        pipeline_cls: FluxPipeline or FluxImg2ImgPipeline.
        model: hub id or local diffusers directory.
        key: the config key that named it ("fast_model" / "slow_model"), for the message.
        dtype: "bfloat16", "float16" or "float32".
        section: the generate sub-section holding the key ("flux" or "diffusers").
        components: already loaded modules to use instead of loading those folders (e.g. a shared text encoder).
    Returns:
        The loaded pipeline (on CPU; the caller places it).
    Raises:
        ValueError: no such directory, a directory that is not a diffusers pipeline, or a hub id
            that is neither cached nor downloadable (offline); names the model and the key.
    """
    import torch

    fix = _fix(section, key)
    path = Path(model).expanduser()
    problem = local_model_problem(model, key, section)
    if problem:
        raise UserError(problem)
    try:
        # Gated hub models (FLUX.1-dev) authenticate with HF_TOKEN, read by huggingface_hub itself.
        return pipeline_cls.from_pretrained(str(path) if path.is_dir() else model, dtype=getattr(torch, dtype),
                                            **(components or {}))
    except (OSError, ValueError) as e:  # missing files, not cached while offline, invalid repo id, gated
        if path.is_dir():
            raise UserError(f"generate.{section}.{key}: cannot load {model} as a diffusers pipeline "
                             f"({_one_line(e)}); {fix}") from e
        raise UserError(f"generate.{section}.{key}: cannot load hub model {model}: not in the local Hugging Face "
                         f"cache, and the hub is offline, unreachable or refused access ({_one_line(e)}); run "
                         f"`hf download {model}` where the hub is reachable, or {fix}") from e


def shared_modules(fast, fast_model: str, slow_model: str, enabled: bool) -> dict:
    """The fast pipeline's modules that the slow model has byte for byte (see identical_components)."""
    if not enabled:
        return {}
    names = identical_components(fast_model, slow_model)
    if names:
        log.info("slow model %s reuses the fast model's %s (identical files)", slow_model, ", ".join(names))
    return {name: getattr(fast, name) for name in names}


class FluxBackend:
    """FLUX schnell -> dev pairs: `generate(rows)` yields (id, schnell uint8 (h, w, 3), dev uint8 (h, w, 3))."""

    name = "flux"

    def __init__(self, cfg: Config):
        self.cfg = cfg.generate.flux
        self.size = cfg.generate.size
        self.device = resolve_device(self.cfg.device)
        if self.cfg.cpu_offload and not self.device.startswith("cuda"):
            raise UserError(f"generate.flux.cpu_offload needs a CUDA device, but the device is {self.device}; "
                             f"set generate.flux.cpu_offload=false")
        self.fast_pipe = None  # loaded on first generate(), then reused
        self.slow_pipe = None
        self.ref_pipe = None  # slow model as text-to-image, built from slow_pipe on the first reference()

    def load(self) -> None:
        """Load both pipelines once (no-op when loaded): the fast T2I one, then the slow I2I one."""
        if self.fast_pipe is not None:
            return
        import torch
        from diffusers import FluxImg2ImgPipeline, FluxPipeline

        c = self.cfg
        fast = load_pipeline(FluxPipeline, c.fast_model, "fast_model", c.dtype)
        self._check_size(fast)
        if c.slow_model == c.fast_model:
            # One set of weights in memory; from_pipe casts to float32 unless told the dtype.
            slow = FluxImg2ImgPipeline.from_pipe(fast, dtype=getattr(torch, c.dtype))
        else:
            slow = load_pipeline(FluxImg2ImgPipeline, c.slow_model, "slow_model", c.dtype,
                                 components=shared_modules(fast, c.fast_model, c.slow_model, c.share_components
                                                           and not c.cpu_offload))
        for pipe in (fast, slow):
            self._place(pipe)
            if c.vae_slicing:
                pipe.vae.enable_slicing()
            if c.vae_tiling:
                pipe.vae.enable_tiling()
        self.fast_pipe, self.slow_pipe = fast, slow

    def _check_size(self, pipe) -> None:
        """check_inputs would only warn and resize to another size, which validation then rejects."""
        multiple = 2 * pipe.vae_scale_factor  # 2x2 patches of the VAE's latents
        if self.size % multiple:
            raise UserError(f"generate.size must be a multiple of {multiple} for {self.cfg.fast_model}, "
                             f"got {self.size}")

    def _place(self, pipe) -> None:
        """Onto the device (or offloaded to it), with diffusers' own bar off: the stage draws a per-pair one."""
        if self.cfg.cpu_offload:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)

    def _generators(self, seeds: list[int]) -> list:
        import torch

        return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]

    def render(self, prompts: list[str], seeds: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Render one batch of pairs.

        Args:
            prompts: the text prompts (one image each).
            seeds: one generation seed per prompt; the slow model reuses it.
        Returns:
            (schnell images, dev images), each a list of uint8 (size, size, 3) arrays.
        """
        self.load()
        c, size = self.cfg, self.size
        fast = self.fast_pipe(
            prompt=prompts, num_inference_steps=c.fast_steps, guidance_scale=c.fast_guidance,
            max_sequence_length=c.max_sequence_length, height=size, width=size,
            generator=self._generators(seeds), output_type="pil",
        ).images
        # img2img starts from the 8-bit image that is saved, so a pair can be re-derived from its files.
        slow = self.slow_pipe(
            prompt=prompts, image=fast, strength=c.strength, num_inference_steps=c.slow_steps,
            guidance_scale=c.slow_guidance, max_sequence_length=c.max_sequence_length, height=size, width=size,
            generator=self._generators(seeds), output_type="pil",
        ).images
        return [_to_uint8(im) for im in fast], [_to_uint8(im) for im in slow]

    def reference(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
        """The slow model text-to-image from the row's seed, with no fast image involved: the FID_dev reference set."""
        self.load()
        if self.ref_pipe is None:
            import torch
            from diffusers import FluxPipeline

            # Shares the slow pipeline's modules: no second copy of the weights.
            self.ref_pipe = FluxPipeline.from_pipe(self.slow_pipe, dtype=getattr(torch, self.cfg.dtype))
            self.ref_pipe.set_progress_bar_config(disable=True)
        c, bs = self.cfg, self.cfg.batch_size
        for start in range(0, len(rows), bs):
            batch = rows.iloc[start:start + bs]
            images = self.ref_pipe(
                prompt=[str(p) for p in batch["prompt"]], num_inference_steps=c.slow_steps,
                guidance_scale=c.slow_guidance, max_sequence_length=c.max_sequence_length,
                height=self.size, width=self.size, generator=self._generators(list(batch["seed"])), output_type="pil",
            ).images
            yield from zip(batch["id"], [_to_uint8(im) for im in images])

    def generate(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        bs = self.cfg.batch_size
        for start in range(0, len(rows), bs):
            batch = rows.iloc[start:start + bs]
            schnell, dev = self.render([str(p) for p in batch["prompt"]], [int(s) for s in batch["seed"]])
            yield from zip(batch["id"], schnell, dev)

    def fast_renderer(self) -> Callable[[str, int], np.ndarray]:
        """(prompt, seed) -> the fast model's uint8 (size, size, 3) image; the slow img2img model is never loaded."""
        from diffusers import FluxPipeline

        c, size = self.cfg, self.size
        pipe = load_pipeline(FluxPipeline, c.fast_model, "fast_model", c.dtype)
        self._check_size(pipe)
        self._place(pipe)

        def render(prompt: str, seed: int) -> np.ndarray:
            image = pipe(prompt=prompt, num_inference_steps=c.fast_steps, guidance_scale=c.fast_guidance,
                         max_sequence_length=c.max_sequence_length, height=size, width=size,
                         generator=self._generators([seed])[0], output_type="pil").images[0]
            return _to_uint8(image)

        return render

    def describe(self) -> dict:
        """Everything that changes the pixels; memory/throughput knobs (batch_size, offload, slicing) are left out
        so that changing them does not invalidate finished pairs."""
        c = self.cfg
        return {
            "size": self.size, "fast_model": c.fast_model, "slow_model": c.slow_model,
            "fast_steps": c.fast_steps, "fast_guidance": c.fast_guidance,
            "max_sequence_length": c.max_sequence_length, "strength": c.strength,
            "slow_steps": c.slow_steps, "slow_guidance": c.slow_guidance,
            "dtype": c.dtype, "vae_tiling": c.vae_tiling,
        }
