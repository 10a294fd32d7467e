"""Consumers of a registered head: enhance image files (`facerealism enhance`) and prompt -> image (`facerealism generate`)."""

from __future__ import annotations

import glob
import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from facerealism.config import Config
from facerealism.errors import UserError
from facerealism.files import atomic_write_bytes
from facerealism.progress import progress

# What a folder walk picks up: the same still images a file named on the command line may be (an animated GIF or
# WebP is refused by name in both routes: the head enhances one frame, and one frame is not the file).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
DEFAULT_MAX_PIXELS = 4096 * 4096  # the head's activations at 16 MP already need several GB of RAM on CPU

Enhancer = Callable[[np.ndarray], np.ndarray]  # uint8 (n, h, w, 3) -> uint8 (n, h, w, 3)


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _walk(folder: Path, recursive: bool) -> list[tuple[Path, Path]]:
    found = folder.rglob("*") if recursive else folder.glob("*")
    return [(p, p.relative_to(folder)) for p in sorted(found) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def collect(inputs: list[Path | str], recursive: bool = True) -> list[tuple[Path, Path]]:
    """(file, output name relative to the output folder) for files, folders and glob patterns.

    Folders keep their inner layout (recursively unless recursive=False); files and glob matches keep their
    file name. Raises FileNotFoundError for an input that matches nothing, ValueError when two inputs
    would write the same output name.
    """
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if not path.exists() and _has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no files match {text}")
            for m in map(Path, matches):
                if m.is_dir():
                    found += _walk(m, recursive)
                elif m.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((m, Path(m.name)))
        elif path.is_dir():
            found += _walk(path, recursive)
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise FileNotFoundError(f"input not found: {path}")
    owners: dict[Path, Path] = {}
    for src, rel in found:
        if owners.setdefault(rel, src) != src:
            raise UserError(f"{owners[rel]} and {src} would both be written to {rel}; enhance them into separate --out folders")
    return list(dict.fromkeys(found))


def load_enhancer(model: str, cfg: Config | None, batch_size: int = 8) -> Enhancer:
    """A batch function uint8 (n, h, w, 3) -> uint8 (n, h, w, 3) from a head folder or an MLflow model URI."""
    if Path(model).is_dir():
        from facerealism.head import enhance_array, load_head

        G, _ = load_head(model)
        return lambda imgs: enhance_array(G, imgs, batch_size)
    import mlflow
    from mlflow.exceptions import MlflowException

    if cfg is not None:
        from facerealism.mlops import tracking

        tracking.setup(cfg)
    try:
        loaded = mlflow.pyfunc.load_model(model)
    except MlflowException as e:
        raise UserError(f"cannot load model {model!r}: {e.message.splitlines()[0]}") from None
    except OSError as e:
        raise UserError(f"cannot load model {model!r}: {e}") from None
    head = loaded.unwrap_python_model()
    if hasattr(head, "enhance_batch"):
        return head.enhance_batch
    return lambda imgs: np.stack([head.enhance(i) for i in imgs])  # versions logged before batching existed


def check_size(path: Path, max_pixels: int) -> None:
    """Refuse an image whose header announces more than max_pixels or more than one frame, before decoding it."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            frames = getattr(im, "n_frames", 1)
    except Image.DecompressionBombError as e:
        raise UserError(f"too large to decode safely ({e})") from None
    except Exception as e:  # PIL raises several unrelated types for bad files
        raise UserError(f"not a readable image ({type(e).__name__}: {e})") from None
    if frames > 1:
        raise UserError(f"animated ({frames} frames): only still images are enhanced; extract its frames first")
    if w * h > max_pixels:
        raise UserError(f"{w}x{h} is {w * h / 1e6:.1f} MP, over the {max_pixels / 1e6:.1f} MP limit; "
                         f"downscale it or raise --max-pixels")


def encode_as(image: np.ndarray, suffix: str) -> bytes:
    """Encode in the format the output name asks for (PNG for unknown suffixes)."""
    fmt = Image.registered_extensions().get(suffix.lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def failure(done: list, skipped: list, bad: list) -> str | None:
    """Why an enhance run failed, or None: a run that produced nothing from unreadable inputs is a failure."""
    if bad and not done and not skipped:
        return f"none of the {len(bad)} input image(s) could be read; first: {bad[0][0]}: {bad[0][1]}"
    return None


def enhance_paths(inputs: list[Path | str], out: Path, model: str, cfg: Config | None, overwrite: bool = False,
                  recursive: bool = True, batch_size: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Enhance every image found into `out`, keeping names; existing outputs are kept unless overwrite.

    Images are batched by size. Returns (written paths, skipped existing sources, [(source, reason)] for
    images that could not be enhanced: unreadable, too large).
    """
    from facerealism.files import load_rgb

    out = Path(out)
    files = collect(inputs, recursive)
    if not files:
        raise UserError(f"no image files found in {', '.join(map(str, inputs))}")
    todo = [(src, out / rel) for src, rel in files if overwrite or not (out / rel).exists()]
    skipped = [src for src, rel in files if not overwrite and (out / rel).exists()]
    enhance = load_enhancer(model, cfg, batch_size) if todo else None
    done, bad = [], []
    pending: dict[tuple, list[tuple[Path, np.ndarray]]] = {}  # image shape -> (destination, image)

    def flush(shape, bar, task):
        batch = pending.pop(shape)
        results = enhance(np.stack([img for _, img in batch]))
        for (dst, _), result in zip(batch, results):
            atomic_write_bytes(dst, encode_as(result, dst.suffix))
            done.append(dst)
        bar.advance(task, len(batch))

    with progress() as bar:
        task = bar.add_task("enhance", total=len(todo))
        for src, dst in todo:
            try:
                check_size(src, max_pixels)
                image = load_rgb(src)
            except ValueError as e:
                bad.append((src, str(e).removeprefix(f"{src}: ")))
                bar.advance(task)
                continue
            pending.setdefault(image.shape, []).append((dst, image))
            if len(pending[image.shape]) >= batch_size:
                flush(image.shape, bar, task)
        for shape in list(pending):
            flush(shape, bar, task)
    return done, skipped, bad


# --- generate: prompt -> schnell-like image -> head -------------------------------------------

def prompt_seed(prompt: str, index: int = 0) -> int:
    """A stable seed per (prompt, index): the same prompt always renders the same image."""
    from facerealism.stages.prompts import stable_seed

    return stable_seed(f"{prompt}\x00{index}")


def slug(prompt: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:limit].rstrip("-") or "image"


def fast_renderer(cfg: Config) -> Callable[[str, int], np.ndarray]:
    """(prompt, seed) -> the fast model's uint8 (size, size, 3) image, through the configured generate backend.

    The synthetic backend ignores the prompt beyond its seed: it renders the schnell-like half of a procedural pair.
    """
    from facerealism.backends import build_backend

    return build_backend(cfg).fast_renderer()


def generate_images(cfg: Config, prompt: str, out: Path, model: str, n: int = 1, enhance: bool = True,
                    overwrite: bool = False) -> tuple[list[Path], list[Path]]:
    """Render `n` images for a prompt with the fast model and (unless enhance=False) apply the head.

    Names are `<prompt-slug>-<seed>-enhanced.png` or `-schnell.png`, so both variants can share a folder.
    Returns (written, skipped existing).
    """
    if not prompt.strip():
        raise UserError("the prompt is empty")
    seeds = [prompt_seed(prompt, i) for i in range(n)]
    kind = "enhanced" if enhance else "schnell"
    targets = [Path(out) / f"{slug(prompt)}-{s}-{kind}.png" for s in seeds]
    todo = [(s, t) for s, t in zip(seeds, targets) if overwrite or not t.exists()]
    skipped = [t for t in targets if t not in {t for _, t in todo}]
    if not todo:
        return [], skipped
    head = load_enhancer(model, cfg) if enhance else None
    render = fast_renderer(cfg)
    written = []
    with progress() as bar:
        task = bar.add_task(f"generate [{cfg.generate.backend}{' + head' if enhance else ''}]", total=len(todo))
        for seed, target in todo:
            image = render(prompt, seed)
            if head is not None:
                image = head(image[None])[0]
            atomic_write_bytes(target, encode_as(image, ".png"))
            written.append(target)
            bar.advance(task)
    return written, skipped
