"""Consumer: load a head (MLflow model URI or a local head folder) and enhance image files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from facerealism.config import Config
from facerealism.files import atomic_write_bytes
from facerealism.progress import progress

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def collect(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(file, name relative to its input root) for files and, recursively, folders."""
    found = []
    for item in inputs:
        if item.is_dir():
            found += [(p, p.relative_to(item)) for p in sorted(item.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        elif item.is_file():
            found.append((item, Path(item.name)))
        else:
            raise FileNotFoundError(f"input not found: {item}")
    return found


def load_enhancer(model: str, cfg: Config | None) -> Callable[[np.ndarray], np.ndarray]:
    """A function uint8 (h, w, 3) -> uint8 (h, w, 3) from a head folder or an MLflow model URI."""
    if Path(model).is_dir():
        from facerealism.head import enhance_array, load_head

        G, _ = load_head(model)
        return lambda img: enhance_array(G, img[None])[0]
    import mlflow
    from mlflow.exceptions import MlflowException

    if cfg is not None:
        from facerealism import tracking

        tracking.setup(cfg)
    try:
        loaded = mlflow.pyfunc.load_model(model)
    except MlflowException as e:
        raise ValueError(f"cannot load model {model!r}: {e.message.splitlines()[0]}") from None
    except OSError as e:
        raise ValueError(f"cannot load model {model!r}: {e}") from None
    return loaded.unwrap_python_model().enhance


def enhance_paths(inputs: list[Path], out: Path, model: str, cfg: Config | None, overwrite: bool = False):
    """Enhance every image found; returns (done, skipped_existing, [(path, reason)] unreadable)."""
    from facerealism.files import load_rgb

    files = collect(inputs)
    if not files:
        raise ValueError(f"no image files found in {', '.join(map(str, inputs))}")
    todo = [(src, out / rel) for src, rel in files if overwrite or not (out / rel).exists()]
    skipped = [src for src, rel in files if not overwrite and (out / rel).exists()]
    enhance = load_enhancer(model, cfg) if todo else None
    done, bad = [], []
    with progress() as bar:
        task = bar.add_task("enhance", total=len(todo))
        for src, dst in todo:
            try:
                image = load_rgb(src)
            except ValueError as e:
                bad.append((src, str(e).split(": ", 1)[-1]))
                bar.advance(task)
                continue
            result = enhance(image)
            fmt = Image.registered_extensions().get(dst.suffix.lower(), "PNG")
            import io

            buf = io.BytesIO()
            Image.fromarray(result).save(buf, format=fmt)
            atomic_write_bytes(dst, buf.getvalue())
            done.append(dst)
            bar.advance(task)
    return done, skipped, bad
