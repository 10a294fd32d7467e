"""Any fast/slow model pair through diffusers' AutoPipelines: fast text-to-image, slow image-to-image on its output."""

# The paper's recipe (fast T2I, then slow I2I at strength 0.7, same prompt and seed) does not
# depend on FLUX: AutoPipelineForText2Image / AutoPipelineForImage2Image resolve the pipeline
# class from a model's model_index.json (FLUX, SD3, SDXL, ...), and each model's call arguments
# (steps, guidance) come from params, e.g.
#   SD3.5 Large Turbo -> SD3.5 Large: fast_kwargs {num_inference_steps: 4, guidance_scale: 0.0},
#                                     slow_kwargs {num_inference_steps: 28, guidance_scale: 3.5};
#   the presets (facerealism.presets, one folder each) hold the pairs users pick today (FLUX.2 klein, Z-Image, SD3.5, DMD2 and Lightning over SDXL).
# Where a model needs more than an AutoPipeline: fast_pipeline/slow_pipeline name the classes; slow_full_mask
# turns an inpaint pipeline into strength img2img (FLUX.2); fast_unet swaps a distilled UNet into the base
# (DMD2); fast_scheduler sets its sampler; fast_lora makes the fast model "base + LoRA" over one shared base.
# Each denoiser forward is counted per pass (calls_per_image): the cost ratio's numerator and denominator.
# Seeds and precision behave as in backends/flux.py (one CPU generator per prompt).

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from PIL import Image

from facerealism.backends.flux import _one_line, _to_uint8, load_pipeline, model_dir, resolve_device, shared_modules
from facerealism.config import Config
from facerealism.errors import UserError

# Arguments the stage owns; setting them in *_kwargs would silently fight the stage.
_PRESET_KEYS = ("fast_pipeline", "slow_pipeline", "slow_full_mask", "fast_unet", "fast_scheduler",
                "fast_scheduler_kwargs", "fast_lora")
_RESERVED = {"mask_image", "prompt", "image", "strength", "height", "width", "generator", "output_type", "num_images_per_prompt"}


def denoiser(pipe):
    """The pipeline's denoising network: its transformer (FLUX, SD3, Z-Image) or UNet (SDXL)."""
    return pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.unet


def local_file(spec: str, key: str) -> Path:
    """A local file/folder, or hub `owner/repo/path/in/repo` resolved through the local Hugging Face cache."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    parts = spec.split("/")
    if len(parts) >= 3 and not spec.startswith(("/", ".", "~")):
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:])))
        except Exception as e:  # noqa: BLE001 (offline, missing, gated: all end in the same fix)
            raise UserError(f"generate.diffusers.{key}: cannot get {spec} from the hub or its local cache "
                             f"({_one_line(e)}); run `hf download {'/'.join(parts[:2])} {'/'.join(parts[2:])}` "
                             f"where the hub is reachable, or set it to a local path") from None
    raise UserError(f"generate.diffusers.{key}: no such file or folder {spec} (a local path, or hub "
                     f"owner/repo/file in the local cache)")


class DiffusersBackend:
    """Fast/slow pairs from any AutoPipeline-loadable models: `generate(rows)` yields (id, fast uint8, slow uint8)."""

    name = "diffusers"

    def __init__(self, cfg: Config):
        self.cfg = cfg.generate.diffusers
        self.size = cfg.generate.size
        for key in ("fast_kwargs", "slow_kwargs"):
            clash = sorted(_RESERVED & set(getattr(self.cfg, key)))
            if clash:
                raise UserError(f"generate.diffusers.{key}: {clash} are set by the stage itself; remove them "
                                 f"(image size: generate.size, img2img strength: generate.diffusers.strength)")
        self.device = resolve_device(self.cfg.device)
        self.fast_pipe = self.slow_pipe = self.ref_pipe = None  # loaded on first use, then reused
        self.denoiser_calls, self.images, self._pass = Counter(), Counter(), None  # per pass: fast, slow, reference

    def load(self) -> None:
        """Load the fast T2I and slow I2I pipelines once (no-op when loaded)."""
        if self.fast_pipe is not None:
            return
        import torch

        c = self.cfg
        fast_cls, slow_cls = self._pipeline_classes()
        overrides = self._fast_overrides()
        if c.slow_model == c.fast_model:
            # One set of base weights: the fast pipeline is the slow one with its overrides (UNet, scheduler) swapped in.
            slow = load_pipeline(slow_cls, c.slow_model, "slow_model", c.dtype, section="diffusers")
            fast = fast_cls.from_pipe(slow, dtype=getattr(torch, c.dtype), **overrides)
        else:
            fast = load_pipeline(fast_cls, c.fast_model, "fast_model", c.dtype, section="diffusers",
                                 components=overrides)
            shared = shared_modules(fast, c.fast_model, c.slow_model, c.share_components)
            slow = load_pipeline(slow_cls, c.slow_model, "slow_model", c.dtype, section="diffusers",
                                 components={k: v for k, v in shared.items() if k not in overrides})
        self._load_lora(fast)
        for model, pipe in ((c.fast_model, fast), (c.slow_model, slow)):
            self._place(pipe, model)
        self.fast_pipe, self.slow_pipe = fast, slow
        for module in {id(m): m for m in (denoiser(fast), denoiser(slow))}.values():  # a shared one is hooked once
            module.register_forward_pre_hook(self._count_call)

    def _count_call(self, *_) -> None:
        self.denoiser_calls[self._pass] += 1

    def calls_per_image(self) -> dict[str, float]:
        """Denoiser (transformer/UNet) forward calls per image of each pass so far: {"fast", "slow", "reference"}."""
        return {k: self.denoiser_calls[k] / n for k, n in self.images.items() if n}

    def _pipeline_classes(self) -> tuple:
        """(fast T2I class, slow I2I class): the configured diffusers classes, else the AutoPipelines."""
        import diffusers
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image, DiffusionPipeline

        out = []
        for key, auto in (("fast_pipeline", AutoPipelineForText2Image), ("slow_pipeline", AutoPipelineForImage2Image)):
            name = getattr(self.cfg, key)
            cls = auto if name is None else getattr(diffusers, name, None)
            if not (isinstance(cls, type) and (cls is auto or issubclass(cls, DiffusionPipeline))):
                raise UserError(f"generate.diffusers.{key}: {name!r} is not a diffusers pipeline class "
                                 f"(e.g. Flux2KleinInpaintPipeline); null uses the AutoPipeline")
            out.append(cls)
        return tuple(out)

    def _reference_class(self):
        """The slow model's text-to-image class: the sibling of a configured slow_pipeline (Flux2KleinInpaintPipeline ->
        Flux2KleinPipeline, ZImageImg2ImgPipeline -> ZImagePipeline), else AutoPipelineForText2Image. AutoPipeline
        maps no inpaint pipeline without a text-to-image twin in its tables (FLUX.2 klein: ValueError)."""
        import diffusers
        from diffusers import AutoPipelineForText2Image

        name = self.cfg.slow_pipeline
        if name is None:
            return AutoPipelineForText2Image
        for suffix in ("InpaintPipeline", "Img2ImgPipeline"):
            if name.endswith(suffix):
                sibling = name[: -len(suffix)] + "Pipeline"
                cls = getattr(diffusers, sibling, None)
                if cls is None:
                    raise UserError(f"generate.diffusers.slow_pipeline: {name} has no text-to-image sibling "
                                    f"{sibling} in diffusers {diffusers.__version__}, needed for the reference set "
                                    f"(generate.reference_count > 0)")
                return cls
        return AutoPipelineForText2Image

    def _fast_overrides(self) -> dict:
        """The fast model's components that replace its own: fast_unet, fast_scheduler."""
        c, out = self.cfg, {}
        if c.fast_unet:
            out["unet"] = self._load_unet()
        if c.fast_scheduler:
            import diffusers

            cls = getattr(diffusers, c.fast_scheduler, None)
            if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
                raise UserError(f"generate.diffusers.fast_scheduler: {c.fast_scheduler!r} is not a diffusers "
                                 f"scheduler class (e.g. LCMScheduler)")
            own = cls.load_config(str(model_dir(c.fast_model) or c.fast_model), subfolder="scheduler")
            out["scheduler"] = cls.from_config(own, **c.fast_scheduler_kwargs)
        return out

    def _load_unet(self):
        """fast_unet as a module: a diffusers UNet folder, or a bare state dict over the fast model's UNet config."""
        import torch
        from diffusers import UNet2DConditionModel

        c = self.cfg
        path = local_file(c.fast_unet, "fast_unet")
        dtype = getattr(torch, c.dtype)
        if path.is_dir():
            return UNet2DConditionModel.from_pretrained(path, torch_dtype=dtype)
        unet = UNet2DConditionModel.from_config(
            UNet2DConditionModel.load_config(str(model_dir(c.fast_model) or c.fast_model), subfolder="unet"))
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            unet.load_state_dict(state)
        except RuntimeError as e:
            raise UserError(f"generate.diffusers.fast_unet: {c.fast_unet} does not fit {c.fast_model}'s UNet "
                             f"({_one_line(e)})") from None
        return unet.to(dtype).eval()

    def _load_lora(self, fast) -> None:
        if self.cfg.fast_lora:
            path = local_file(self.cfg.fast_lora, "fast_lora")
            if path.is_dir():
                fast.load_lora_weights(str(path), adapter_name="fast")
            else:
                fast.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="fast")

    def _lora(self, on: bool) -> None:
        """Switch the fast LoRA on (fast pass) or off (slow pass: with one shared base it is in the slow model too)."""
        if self.cfg.fast_lora:
            self.fast_pipe.enable_lora() if on else self.fast_pipe.disable_lora()

    def _place(self, pipe, model: str) -> None:
        """Check the image size fits the model, move the pipeline to the device, silence its bar."""
        # Transformer models pack 2x2 latent patches (FLUX, SD3): the side must divide by twice the VAE factor.
        multiple = pipe.vae_scale_factor * (2 if hasattr(pipe, "transformer") else 1)
        if self.size % multiple:
            raise UserError(f"generate.size must be a multiple of {multiple} for {model}, got {self.size}")
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)  # the stage draws its own per-pair bar

    def _generators(self, seeds) -> list:
        import torch

        return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]

    def _batches(self, rows: pd.DataFrame) -> Iterator[pd.DataFrame]:
        for start in range(0, len(rows), self.cfg.batch_size):
            yield rows.iloc[start:start + self.cfg.batch_size]

    def generate(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        self.load()
        c, size = self.cfg, self.size
        for batch in self._batches(rows):
            prompts, seeds = [str(p) for p in batch["prompt"]], list(batch["seed"])
            fast = self._run("fast", self.fast_pipe, prompt=prompts, height=size, width=size,
                             generator=self._generators(seeds), output_type="pil", **c.fast_kwargs)
            mask = {"mask_image": [Image.new("L", (size, size), 255)] * len(fast)} if c.slow_full_mask else {}
            slow = self._run("slow", self.slow_pipe, prompt=prompts, image=fast, strength=c.strength, height=size,
                             width=size, generator=self._generators(seeds), output_type="pil", **mask, **c.slow_kwargs)
            yield from zip(batch["id"], [_to_uint8(im) for im in fast], [_to_uint8(im) for im in slow])

    def _run(self, name: str, pipe, **kwargs) -> list:
        """One pipeline call, its denoiser calls counted under `name`, the fast LoRA on only for the fast pass."""
        self._lora(name == "fast")
        self._pass = name
        images = pipe(**kwargs).images
        self.images[name] += len(images)
        return images

    def reference(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
        """The slow model text-to-image from scratch (no fast image): the FID_dev reference set."""
        self.load()
        if self.ref_pipe is None:
            import torch

            self.ref_pipe = self._reference_class().from_pipe(self.slow_pipe, dtype=getattr(torch, self.cfg.dtype))
            self.ref_pipe.set_progress_bar_config(disable=True)
        for batch in self._batches(rows):
            images = self._run("reference", self.ref_pipe, prompt=[str(p) for p in batch["prompt"]],
                               height=self.size, width=self.size, generator=self._generators(batch["seed"]),
                               output_type="pil", **self.cfg.slow_kwargs)
            yield from zip(batch["id"], [_to_uint8(im) for im in images])

    def fast_renderer(self) -> Callable[[str, int], np.ndarray]:
        """(prompt, seed) -> the fast model's uint8 (size, size, 3) image; the slow img2img model is never loaded."""
        c = self.cfg
        fast_cls, _ = self._pipeline_classes()
        pipe = load_pipeline(fast_cls, c.fast_model, "fast_model", c.dtype, section="diffusers",
                             components=self._fast_overrides())
        self._load_lora(pipe)
        self._place(pipe, c.fast_model)

        def render(prompt: str, seed: int) -> np.ndarray:
            image = pipe(prompt=prompt, height=self.size, width=self.size, generator=self._generators([seed])[0],
                         output_type="pil", **c.fast_kwargs).images[0]
            return _to_uint8(image)

        return render

    def describe(self) -> dict:
        """Everything that changes the pixels (batch_size and device are left out)."""
        c = self.cfg
        return {"size": self.size, "fast_model": c.fast_model, "slow_model": c.slow_model,
                "fast_kwargs": c.fast_kwargs, "slow_kwargs": c.slow_kwargs, "strength": c.strength, "dtype": c.dtype,
                # The preset keys, only where set: renders made before they existed keep their description.
                **{k: getattr(c, k) for k in _PRESET_KEYS if getattr(c, k)}}
