"""The vsae Gradio demo: ``vsae demo`` builds it with :func:`build_app` and serves it with
:func:`launch`. It uses ``vsae.analysis`` and ``vsae.interventions`` only."""

from .app import background_loads, build_app, launch
from .background import Background, LoadError
from .config import CACHE_ENV, DemoConfig, default_cache_dir
from .sources import DemoSources
from .uploads import UploadError, load_upload

__all__ = [
    "CACHE_ENV",
    "Background",
    "LoadError",
    "DemoConfig",
    "DemoSources",
    "UploadError",
    "background_loads",
    "build_app",
    "default_cache_dir",
    "launch",
    "load_upload",
]
