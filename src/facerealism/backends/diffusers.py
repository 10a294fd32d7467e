"""Any fast/slow model pair through diffusers' AutoPipelines: fast text-to-image, slow image-to-image on its output."""

# The paper's recipe (fast T2I, then slow I2I at strength 0.7, same prompt and seed) does not
# depend on FLUX: AutoPipelineForText2Image / AutoPipelineForImage2Image resolve the pipeline
# class from a model's model_index.json (FLUX, SD3, SDXL, ...), and each model's call arguments
# (steps, guidance) come from params, e.g.
#   SD3.5 Large Turbo -> SD3.5 Large: fast_kwargs {num_inference_steps: 4, guidance_scale: 0.0},
#                                     slow_kwargs {num_inference_steps: 28, guidance_scale: 3.5};
#   SDXL-Lightning -> SDXL: ByteDance ships Lightning as UNet weights, not a pipeline folder, so
#     fast_model must be a diffusers directory with the Lightning UNet merged in (save_pretrained)
#     and fast_kwargs {num_inference_steps: 4, guidance_scale: 0.0}; slow_model
#     stabilityai/stable-diffusion-xl-base-1.0 with {num_inference_steps: 40, guidance_scale: 5.0}.
# Seeds and precision behave as in backends/flux.py (one CPU generator per prompt).

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from facerealism.backends.flux import _to_uint8, load_pipeline, resolve_device, shared_modules
from facerealism.config import Config
from facerealism.errors import UserError

# Arguments the stage owns; setting them in *_kwargs would silently fight the stage.
_RESERVED = {"prompt", "image", "strength", "height", "width", "generator", "output_type", "num_images_per_prompt"}


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

    def load(self) -> None:
        """Load the fast T2I and slow I2I pipelines once (no-op when loaded)."""
        if self.fast_pipe is not None:
            return
        import torch
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        c = self.cfg
        fast = load_pipeline(AutoPipelineForText2Image, c.fast_model, "fast_model", c.dtype, section="diffusers")
        if c.slow_model == c.fast_model:
            slow = AutoPipelineForImage2Image.from_pipe(fast, dtype=getattr(torch, c.dtype))  # shares the weights
        else:
            slow = load_pipeline(AutoPipelineForImage2Image, c.slow_model, "slow_model", c.dtype, section="diffusers",
                                 components=shared_modules(fast, c.fast_model, c.slow_model, c.share_components))
        for model, pipe in ((c.fast_model, fast), (c.slow_model, slow)):
            self._place(pipe, model)
        self.fast_pipe, self.slow_pipe = fast, slow

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
            fast = self.fast_pipe(prompt=prompts, height=size, width=size, generator=self._generators(seeds),
                                  output_type="pil", **c.fast_kwargs).images
            slow = self.slow_pipe(prompt=prompts, image=fast, strength=c.strength, height=size, width=size,
                                  generator=self._generators(seeds), output_type="pil", **c.slow_kwargs).images
            yield from zip(batch["id"], [_to_uint8(im) for im in fast], [_to_uint8(im) for im in slow])

    def reference(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
        """The slow model text-to-image from scratch (no fast image): the FID_dev reference set."""
        self.load()
        if self.ref_pipe is None:
            import torch
            from diffusers import AutoPipelineForText2Image

            self.ref_pipe = AutoPipelineForText2Image.from_pipe(self.slow_pipe, dtype=getattr(torch, self.cfg.dtype))
            self.ref_pipe.set_progress_bar_config(disable=True)
        for batch in self._batches(rows):
            images = self.ref_pipe(prompt=[str(p) for p in batch["prompt"]], height=self.size, width=self.size,
                                   generator=self._generators(batch["seed"]), output_type="pil",
                                   **self.cfg.slow_kwargs).images
            yield from zip(batch["id"], [_to_uint8(im) for im in images])

    def fast_renderer(self) -> Callable[[str, int], np.ndarray]:
        """(prompt, seed) -> the fast model's uint8 (size, size, 3) image; the slow img2img model is never loaded."""
        from diffusers import AutoPipelineForText2Image

        c = self.cfg
        pipe = load_pipeline(AutoPipelineForText2Image, c.fast_model, "fast_model", c.dtype, section="diffusers")
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
                "fast_kwargs": c.fast_kwargs, "slow_kwargs": c.slow_kwargs, "strength": c.strength, "dtype": c.dtype}
