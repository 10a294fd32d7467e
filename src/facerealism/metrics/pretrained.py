"""Where the metrics' pretrained networks come from: a configured file, else each library's own cache and download."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from facerealism.errors import UserError

# Probing a host costs at most this long: offline is decided within seconds, never by a download that hangs.
PROBE_TIMEOUT_S = 3.0

# torch-fidelity 0.4.0's URL_INCEPTION_V3; its downloader caches the file under this name.
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
# torchvision's IMAGENET1K_V1 backbones that lpips builds on.
LPIPS_BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
# Stein et al. (NeurIPS 2023) use DINOv2 ViT-L/14 from torch.hub; the ref pins the branch so torch.hub does not
# ask GitHub which default branch the repo has (that request is what hangs or fails offline).
DINOV2_REPO, DINOV2_MODEL = "facebookresearch/dinov2:main", "dinov2_vitl14"
DINOV2_REPO_URL = "https://github.com/facebookresearch/dinov2/archive/main.zip"  # what torch.hub downloads
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"
# CMMD (Jayasumana et al. 2024) embeds with this CLIP model from the Hugging Face Hub.
CLIP_MODEL_ID = "openai/clip-vit-large-patch14-336"


class WeightsUnavailable(Exception):
    """A pretrained network cannot be had here; str(e) is the reason shown in Table 4."""


def torch_hub_dir() -> Path:
    """torch.hub's folder ($TORCH_HOME/hub, default ~/.cache/torch/hub); downloads land in its checkpoints/."""
    import torch.hub

    return Path(torch.hub.get_dir())


def _head(url: str, result: list) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S):
            result.append(None)
    except urllib.error.HTTPError as e:
        result.append(f"HTTP {e.code} from {url}")
    except (OSError, ValueError) as e:  # URLError, timeouts, refused connections, a proxy's garbage
        result.append(f"{url}: {getattr(e, 'reason', e)}")


@functools.lru_cache(maxsize=None)
def _probe(url: str) -> str | None:
    result: list = []
    # A HEAD of the very file, not a TCP connect: proxies accept connections they cannot serve. A thread bounds
    # the whole request, name lookup and redirects included, which urllib's per-socket timeout does not.
    t = threading.Thread(target=_head, args=(url, result), daemon=True)
    t.start()
    t.join(PROBE_TIMEOUT_S)
    if not result:
        return f"no answer from {url} within {PROBE_TIMEOUT_S:g} s"
    return result[0]


def offline_reason(url: str) -> str | None:
    """Why `url`'s host cannot be reached now (decided within PROBE_TIMEOUT_S, cached per process), or None.

    Args:
        url: the download address a library would use.

    Returns:
        None when a HEAD request for `url` succeeds; else a reason. FACEREALISM_OFFLINE=1 answers at once.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise UserError(f"not a download URL: {url!r}")
    if os.environ.get("FACEREALISM_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "FACEREALISM_OFFLINE is set"
    return _probe(url)


def _configured(setting: str, path: str | None) -> Path | None:
    if path is None:
        return None
    if not os.path.exists(path):
        raise WeightsUnavailable(f"{setting}={path!r} does not exist")
    return Path(path)


def _cached_or_download(setting: str, configured: str | None, url: str, what: str) -> Path | None:
    """The configured file, else torch.hub's cached download of `url`, else None when `url` can be downloaded."""
    path = _configured(setting, configured)
    if path is not None:
        return path
    cached = torch_hub_dir() / "checkpoints" / os.path.basename(urlsplit(url).path)
    if cached.is_file():
        return cached
    offline = offline_reason(url)
    if offline is not None:
        raise WeightsUnavailable(f"{setting} is not set, {cached} does not exist and the download is impossible "
                                 f"({offline}); put {what} at either")
    return None


def inception_weights(configured: str | None) -> str | None:
    """torch-fidelity's Inception weights: the configured file, its cached download, or None to let it download.

    Args:
        configured: evaluate.inception_weights.

    Returns:
        A path for torch-fidelity's feature_extractor_weights_path, or None when its own downloader will fetch it.

    Raises:
        WeightsUnavailable: nothing configured or cached, and the download host does not answer.
    """
    path = _cached_or_download("evaluate.inception_weights", configured, INCEPTION_URL,
                               f"torch-fidelity's {os.path.basename(INCEPTION_URL)}")
    return None if path is None else str(path)


def lpips_backbone(net: str, configured: str | None, setting: str = "evaluate.lpips_weights") -> str:
    """A torchvision state dict file for lpips' backbone: configured, cached, or downloaded by torchvision now.

    Args:
        net: lpips backbone, "alex" or "vgg".
        configured: the lpips_weights setting.
        setting: its name, for messages.

    Returns:
        Path of the state dict file.

    Raises:
        WeightsUnavailable: nothing configured or cached, and download.pytorch.org does not answer.
    """
    if net not in LPIPS_BACKBONE_URLS:
        raise UserError(f"lpips net must be one of {sorted(LPIPS_BACKBONE_URLS)}, got {net!r}")
    url = LPIPS_BACKBONE_URLS[net]
    path = _cached_or_download(setting, configured, url, f"torchvision's {os.path.basename(url)}")
    if path is None:
        import torch.hub

        torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)  # torchvision's own route
        path = torch_hub_dir() / "checkpoints" / os.path.basename(url)
    return str(path)


def dinov2(configured: str | None = None):
    """DINOv2 ViT-L/14 through torch.hub (its cached repo and checkpoint, or a download), in eval mode.

    Args:
        configured: evaluate.dinov2_weights, a state dict for the hub's dinov2_vitl14 (the repo code still comes
            from torch.hub's cache or GitHub).

    Returns:
        The torch.hub module; calling it on (b, 3, h, w) ImageNet-normalised images gives (b, d) CLS features.

    Raises:
        WeightsUnavailable: the repo code or the weights are neither local nor downloadable.
    """
    import torch
    import torch.hub

    owner_name, ref = DINOV2_REPO.split(":")
    repo_dir = torch_hub_dir() / f"{owner_name.replace('/', '_')}_{ref}"
    weights = _configured("evaluate.dinov2_weights", configured)
    checkpoint = torch_hub_dir() / "checkpoints" / os.path.basename(DINOV2_URL)
    need = ([] if repo_dir.is_dir() else [(DINOV2_REPO_URL, f"the hub repo at {repo_dir}")]) + (
        [] if weights or checkpoint.is_file() else [(DINOV2_URL, f"weights at {checkpoint}")])
    for url, missing in need:
        offline = offline_reason(url)
        if offline is not None:
            raise WeightsUnavailable(f"DINOv2 ({DINOV2_REPO} {DINOV2_MODEL}) needs {missing}, which is not there, "
                                     f"and the download is impossible ({offline}); set evaluate.dinov2_weights "
                                     f"or fill torch.hub's cache ({torch_hub_dir()})")
    kwargs = {"pretrained": weights is None}
    if repo_dir.is_dir():
        model = torch.hub.load(str(repo_dir), DINOV2_MODEL, source="local", **kwargs)
    else:
        model = torch.hub.load(DINOV2_REPO, DINOV2_MODEL, trust_repo=True, skip_validation=True, **kwargs)
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def _verbosity(logging, level: int):
    old = logging.get_verbosity()
    logging.set_verbosity(level)
    try:
        yield
    finally:
        logging.set_verbosity(old)


def clip(configured: str | None = None):
    """CLIP's vision tower with projection and its image processor: a configured folder, the HF cache, or a download.

    Args:
        configured: evaluate.clip_model, a folder written by save_pretrained (model and preprocessor).

    Returns:
        (CLIPVisionModelWithProjection in eval mode, CLIPImageProcessor).

    Raises:
        WeightsUnavailable: not configured, not in the Hugging Face cache, and the Hub does not answer.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    source = _configured("evaluate.clip_model", configured)
    source = str(source) if source is not None else CLIP_MODEL_ID
    local = source != CLIP_MODEL_ID or isinstance(try_to_load_from_cache(CLIP_MODEL_ID, "config.json"), str)
    if not local:
        offline = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE
                   else offline_reason(f"{constants.ENDPOINT}/{CLIP_MODEL_ID}/resolve/main/config.json"))
        if offline is not None:
            raise WeightsUnavailable(f"CLIP ({CLIP_MODEL_ID}) is not in the Hugging Face cache "
                                     f"({constants.HF_HUB_CACHE}) and the download is impossible ({offline}); set "
                                     f"evaluate.clip_model to a local folder or fill the cache")
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection  # seconds: only once it can load
    from transformers.utils import logging

    with _verbosity(logging, logging.ERROR):  # the text tower's weights are skipped on purpose: no report of them
        model = CLIPVisionModelWithProjection.from_pretrained(source, local_files_only=local)
    return model.eval().requires_grad_(False), CLIPImageProcessor.from_pretrained(source, local_files_only=local)
