# Offline replacements for YOLOv5 v7.0 start-up checks that reach the network (see patches/series)
import logging
import re
from importlib import metadata
from pathlib import Path

import torch
from packaging.requirements import InvalidRequirement, Requirement

LOGGER = logging.getLogger('yolov5')
# Distributions that satisfy a requirement under another name (a server has no GUI for opencv-python)
ALTERNATIVES = {'opencv-python': ('opencv-python-headless', 'opencv-contrib-python', 'opencv-contrib-python-headless')}
OPTIONAL = {'ipython'}  # only used inside notebooks (patch compat-ipython-optional)


def installed_version(name):
    # Version of the first installed distribution among name and its alternatives, else None
    for candidate in (name, *ALTERNATIVES.get(name.lower(), ())):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def unmet_requirements(requirements, exclude=()):
    # Requirement strings (or a requirements.txt Path) that the environment does not satisfy
    if isinstance(requirements, (str, Path)) and Path(requirements).suffix == '.txt':
        file = Path(requirements)
        lines = file.read_text().splitlines() if file.exists() else []
        requirements = [re.split(r'\s#', x)[0].strip() for x in lines]
    elif isinstance(requirements, str):
        requirements = [requirements]
    unmet = []
    for text in requirements:
        if not text or text.startswith(('#', '-')):
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.name in exclude or req.name.lower() in OPTIONAL or (req.marker and not req.marker.evaluate()):
            continue
        version = installed_version(req.name)
        if version is None:
            unmet.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            unmet.append(text)
    return unmet


def check_requirements(requirements, exclude=(), prefix='requirements:'):
    # Warn about unmet requirements; never pip-install from inside a run (offline it hangs, online it
    # silently changes the user's environment). Returns True when all are met.
    unmet = unmet_requirements(requirements, exclude)
    if unmet:
        LOGGER.warning(f"{prefix} not installed or too old: {', '.join(unmet)}; "
                       f"install with: pip install {' '.join(repr(x) for x in unmet)}")
    return not unmet


def local_font(font, config_dir):
    # Path of a usable TrueType font without downloading: the requested one if present, else matplotlib's DejaVuSans
    font = Path(font)
    for candidate in (font, Path(config_dir) / font.name):
        if candidate.exists():
            return candidate
    import matplotlib
    return Path(matplotlib.get_data_path()) / 'fonts' / 'ttf' / 'DejaVuSans.ttf'


@torch.no_grad()
def amp_forward_allclose(model, imgsz=320, rtol=0.05):
    # AMP sanity check on the model itself (no reference download): raw head outputs, FP32 vs autocast
    device = next(model.parameters()).device
    model = model.eval().float()
    x = torch.rand(1, 3, imgsz, imgsz, device=device, generator=torch.Generator(device).manual_seed(0))
    a = model(x)[0].float()
    with torch.autocast(device.type, enabled=True):
        b = model(x)[0].float()
    scale = a.abs().mean().clamp(min=1e-6)
    return bool(torch.isfinite(b).all() and ((a - b).abs().mean() / scale) < rtol)
