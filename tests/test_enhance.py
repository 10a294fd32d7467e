"""Consumers of a head: `enhance` over files/folders/globs and `generate` from a prompt (synthetic and tiny FLUX)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facerealism.config import load_config
from facerealism.enhance import collect, enhance_paths, generate_images, prompt_seed
from facerealism.head import enhance_array, load_head, save_head
from facerealism.models import build_generator

from .conftest import ROOT, cli_env


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> Path:
    """A tiny head whose output differs from its input (a fresh residual head is the identity)."""
    out = tmp_path_factory.mktemp("head") / "head"
    torch.manual_seed(0)
    kwargs = {"ngf": 8, "n_blocks": 1, "residual_output": True}
    G = build_generator("esa_resnet", **kwargs)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_head(G, out, "esa_resnet", kwargs, {})
    return out


def rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def mixed(tmp_path) -> Path:
    """A folder of good images (nested, grayscale, RGBA, JPEG) and bad ones (truncated, huge, not an image)."""
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.png", "sub/c.png"]):  # three of one size: two batches of 2 and 1
        Image.fromarray(rgb(24, 32, i)).save(inp / name)
    Image.fromarray(rgb(20, 20, 9)).save(inp / "photo.jpg", quality=95)
    Image.new("L", (36, 36), 128).save(inp / "gray.png")
    Image.new("RGBA", (28, 28), (200, 100, 50, 80)).save(inp / "rgba.png")
    (inp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.new("RGB", (300, 200)).save(inp / "huge.png")
    (inp / "notes.txt").write_text("not an image and not an image suffix")
    return inp


def test_folder_with_good_and_bad_files(mixed, head, tmp_path):
    out = tmp_path / "out"
    done, skipped, bad = enhance_paths([mixed], out, str(head), None, batch_size=2, max_pixels=200 * 200)
    names = sorted(p.relative_to(out).as_posix() for p in done)
    assert names == ["a.png", "b.png", "gray.png", "photo.jpg", "rgba.png", "sub/c.png"] and skipped == []
    reasons = {p.name: r for p, r in bad}
    assert set(reasons) == {"broken.png", "huge.png"}
    assert "not a readable image" in reasons["broken.png"]
    assert "300x200" in reasons["huge.png"] and "--max-pixels" in reasons["huge.png"]
    assert not (out / "broken.png").exists() and not (out / "huge.png").exists()
    # Batched results equal one-by-one results of the same head.
    G, _ = load_head(head)
    for name in ["a.png", "b.png", "sub/c.png"]:
        src = np.asarray(Image.open(mixed / name))
        got = np.asarray(Image.open(out / name))
        assert np.array_equal(got, enhance_array(G, src[None])[0]) and not np.array_equal(got, src)
    for name, size in [("gray.png", (36, 36)), ("rgba.png", (28, 28)), ("photo.jpg", (20, 20))]:
        im = Image.open(out / name)
        assert im.mode == "RGB" and im.size == size
    assert Image.open(out / "photo.jpg").format == "JPEG"


def test_a_gif_is_found_in_a_folder_as_by_name_and_an_animated_one_is_refused_by_name_in_both(head, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(rgb(24, 24, 1)).save(inp / "still.gif")
    frames = [Image.fromarray(rgb(24, 24, i)) for i in range(3)]
    frames[0].save(inp / "anim.gif", save_all=True, append_images=frames[1:])
    done, _, bad = enhance_paths([inp], tmp_path / "out", str(head), None)
    assert [p.name for p in done] == ["still.gif"] and Image.open(done[0]).format == "GIF"
    assert [(p.name, r) for p, r in bad] == [
        ("anim.gif", "animated (3 frames): only still images are enhanced; extract its frames first")]
    done, _, bad = enhance_paths([inp / "anim.gif"], tmp_path / "out2", str(head), None)
    assert done == [] and [p.name for p, _ in bad] == ["anim.gif"]


def test_sides_not_divisible_by_four_come_back_at_their_own_size(head, tmp_path):
    """The generator downsamples twice: other sides are reflect-padded for it and cropped back (most photos)."""
    G, _ = load_head(head)
    for h, w in [(21, 18), (30, 33), (17, 17)]:
        img = rgb(h, w, h + w)
        out = enhance_array(G, img[None])[0]
        assert out.shape == (h, w, 3)
        padded = np.pad(img, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="reflect")
        assert np.array_equal(out, enhance_array(G, padded[None])[0, :h, :w])  # the input's own pixels, not a shift
    Image.fromarray(rgb(21, 18, 0)).save(tmp_path / "odd.png")
    done, _, bad = enhance_paths([tmp_path / "odd.png"], tmp_path / "out", str(head), None)
    assert bad == [] and Image.open(done[0]).size == (18, 21)


def test_a_saved_head_loads_back_as_the_same_function_or_fails_naming_the_file(head, tmp_path):
    import json
    import shutil

    G, meta = load_head(head)
    x = rgb(24, 32, 5)[None]
    copy = tmp_path / "copy"
    save_head(G, copy, meta["arch"], meta["kwargs"], {})
    G2, meta2 = load_head(copy)
    assert meta2["arch"] == "esa_resnet" and np.array_equal(enhance_array(G2, x), enhance_array(G, x))
    assert not np.array_equal(enhance_array(G2, x), x)  # the perturbed weights ran, not a fresh identity
    wrong = tmp_path / "wrong"
    shutil.copytree(copy, wrong)
    (wrong / "head.json").write_text(json.dumps({**meta2, "kwargs": {**meta2["kwargs"], "n_blocks": 2}}))
    with pytest.raises(ValueError, match="does not fit architecture 'esa_resnet'"):
        load_head(wrong)
    (copy / "head.safetensors").write_bytes((copy / "head.safetensors").read_bytes()[:100])
    with pytest.raises(ValueError, match="head.safetensors: corrupted weights file"):
        load_head(copy)


def test_existing_outputs_are_kept_unless_overwrite(mixed, head, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"mine")  # not even an image: it must survive untouched
    done, skipped, _ = enhance_paths([mixed / "a.png", mixed / "b.png"], out, str(head), None)
    assert [p.name for p in done] == ["b.png"] and [p.name for p in skipped] == ["a.png"]
    assert (out / "a.png").read_bytes() == b"mine"
    done, skipped, _ = enhance_paths([mixed / "a.png"], out, str(head), None, overwrite=True)
    assert [p.name for p in done] == ["a.png"] and skipped == []
    assert Image.open(out / "a.png").size == (32, 24)


def test_globs_recursion_and_name_collisions(mixed, tmp_path):
    assert [r.as_posix() for _, r in collect([str(mixed / "*.png")])] == [
        "a.png", "b.png", "broken.png", "gray.png", "huge.png", "rgba.png"]
    assert "sub/c.png" in [r.as_posix() for _, r in collect([mixed])]
    assert "sub/c.png" not in [r.as_posix() for _, r in collect([mixed], recursive=False)]
    assert [r.as_posix() for _, r in collect([str(mixed / "**" / "c.png")])] == ["c.png"]
    with pytest.raises(FileNotFoundError, match="no files match"):
        collect([str(mixed / "*.webp")])
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(rgb(8, 8, 0)).save(other / "a.png")
    with pytest.raises(ValueError, match="would both be written to a.png"):
        collect([mixed / "a.png", other / "a.png"])


def test_cli_enhance_lists_bad_files_and_keeps_going(mixed, head, tmp_path):
    res = subprocess.run([sys.executable, "-m", "facerealism.cli", "enhance", str(mixed), "--out", "out",
                          "--model", str(head), "--max-pixels", "50000", "--batch-size", "4"],
                         cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "enhanced 6 image(s)" in res.stdout
    assert "broken.png" in res.stderr and "huge.png" in res.stderr and "over the 0.1 MP limit" in res.stderr
    assert "Traceback" not in res.stderr


def test_generate_synthetic_applies_the_head(head, tmp_path):
    from facerealism.backends.painter import render_pair

    cfg = load_config(ROOT / "params.yaml", ["generate.size=32", "train.crop=32"])
    prompt = "A professional portrait of Ada Lovelace"
    raw, _ = generate_images(cfg, prompt, tmp_path, str(head), n=2, enhance=False)
    enhanced, _ = generate_images(cfg, prompt, tmp_path, str(head), n=2)
    seeds = [prompt_seed(prompt, i) for i in range(2)]
    assert [p.name for p in enhanced] == [f"a-professional-portrait-of-ada-lovelace-{s}-enhanced.png" for s in seeds]
    G, _ = load_head(head)
    for seed, r, e in zip(seeds, raw, enhanced):
        schnell = render_pair(seed, 32, **cfg.generate.synthetic.model_dump())[0]
        assert np.array_equal(np.asarray(Image.open(r)), schnell)
        assert np.array_equal(np.asarray(Image.open(e)), enhance_array(G, schnell[None])[0])
    # Another prompt, another picture; the same prompt again is skipped, not re-rendered.
    assert prompt_seed("someone else") != seeds[0]
    again, skipped = generate_images(cfg, prompt, tmp_path, str(head), n=2)
    assert again == [] and skipped == enhanced
    with pytest.raises(ValueError, match="prompt is empty"):
        generate_images(cfg, "  ", tmp_path, str(head))


def test_generate_with_tiny_flux_backend(head, tmp_path):
    from facerealism.backends.tiny_flux import build_tiny_flux

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny FLUX ops are too small to split across threads
    try:
        schnell = build_tiny_flux(tmp_path / "schnell", seed=0, variant="schnell")
        cfg = load_config(ROOT / "params.yaml", [
            "generate.backend=flux", "generate.size=32", "train.crop=32", f"generate.flux.fast_model={schnell}",
            "generate.flux.slow_model=/nonexistent/never-loaded", "generate.flux.dtype=float32",
            "generate.flux.device=cpu"])
        raw, _ = generate_images(cfg, "A professional business portrait", tmp_path / "out", str(head), enhance=False)
        enhanced, _ = generate_images(cfg, "A professional business portrait", tmp_path / "out", str(head))
    finally:
        torch.set_num_threads(before)
    G, _ = load_head(head)
    fast = np.asarray(Image.open(raw[0]))
    assert fast.shape == (32, 32, 3)
    assert np.array_equal(np.asarray(Image.open(enhanced[0])), enhance_array(G, fast[None])[0])


@pytest.mark.slow  # subprocesses or servers: the full layer, not the inner loop
def test_cli_generate_with_head_folder(head, tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    res = subprocess.run([sys.executable, "-m", "facerealism.cli", "generate", "A professional portrait of Ada",
                          "--out", "gen", "--model", str(head), "--set", "generate.size=32", "--set", "train.crop=32"],
                         cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    files = list((tmp_path / "gen").glob("*-enhanced.png"))
    assert len(files) == 1 and Image.open(files[0]).size == (32, 32) and "wrote" in res.stdout
