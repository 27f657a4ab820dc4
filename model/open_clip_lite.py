"""open_clip's CLIP model, transformer and tokenizer, without importing the rest of open_clip.

`import open_clip` (or any of its submodules, which runs the package's `__init__` first) imports CoCa,
the Hugging Face text-encoder wrapper (and with it `transformers`), timm, and torchvision (and with
it `torch._dynamo`): seconds of start-up that `plipbot classify` pays for nothing, since PLIP is a
plain ViT CLIP. Here the package is registered as an empty namespace first, so only the submodules
we use are executed; `transformers`, `timm` and torchvision's `ops.misc` are hidden while they load
(the first two are optional imports in `hf_model` and `timm_model`, and `utils` only needs a
batch-norm class for freezing ResNets).

The placeholder package completes itself on first use of anything else (PEP 562 `__getattr__` runs
the real `__init__`), so `open_clip.create_model` and friends still work in the same process.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


def _placeholder_package() -> None:
    if "open_clip" in sys.modules:
        return
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None or spec.submodule_search_locations is None:
        raise ImportError("open_clip is not installed")
    package = types.ModuleType("open_clip")
    package.__spec__ = spec
    package.__file__ = spec.origin
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = "open_clip"
    init_path = spec.origin

    def complete(name: str) -> Any:
        """Run the real `open_clip/__init__.py` in this module, then answer the attribute."""
        if package.__dict__.pop("__getattr__", None) is None:
            raise AttributeError(name)
        with open(init_path, encoding="utf-8") as fh:
            exec(compile(fh.read(), init_path, "exec"), package.__dict__)  # noqa: S102 (open_clip's own)
        return getattr(package, name)

    package.__getattr__ = complete  # type: ignore[attr-defined]
    sys.modules["open_clip"] = package


def _import_quietly(name: str) -> types.ModuleType:
    """Import `name` with transformers and torchvision.ops.misc hidden, unless already loaded."""
    hidden: dict[str, types.ModuleType | None] = {}
    for optional in ("transformers", "timm"):  # import raises ImportError: open_clip's optional paths
        if optional not in sys.modules:
            hidden[optional] = None
    if "torchvision.ops.misc" not in sys.modules:
        from torch import nn

        misc = types.ModuleType("torchvision.ops.misc")
        misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (nn.Module,), {})  # type: ignore[attr-defined]
        ops = types.ModuleType("torchvision.ops")
        ops.misc = misc  # type: ignore[attr-defined]
        tv = types.ModuleType("torchvision")
        tv.ops = ops  # type: ignore[attr-defined]
        if "torchvision" not in sys.modules:
            hidden["torchvision"] = tv
        hidden["torchvision.ops"] = ops
        hidden["torchvision.ops.misc"] = misc
    saved = {key: sys.modules.get(key) for key in hidden}
    sys.modules.update(hidden)  # type: ignore[arg-type]
    try:
        return importlib.import_module(name)
    finally:
        for key, previous in saved.items():
            if previous is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = previous


_placeholder_package()
model = _import_quietly("open_clip.model")
transformer = _import_quietly("open_clip.transformer")

CLIP = model.CLIP


def simple_tokenizer(context_length: int) -> Any:
    """open_clip's CLIP BPE tokenizer, imported on first use: building its merge table takes ~0.2 s
    (twice: the module builds one at import), which a command using cached label embeddings skips."""
    return _import_quietly("open_clip.tokenizer").SimpleTokenizer(context_length=context_length)
