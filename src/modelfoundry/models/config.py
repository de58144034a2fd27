"""The `model:` section: a tagged union of the registered families' config classes (`type:` picks one; no `type`
means mlp). Built from the registry, so a new family needs no edit here."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field

from . import families  # noqa: F401  (the families register themselves)
from .keras_zoo import FAMILIES
from .registry import REGISTRY

DEFAULT_FAMILY = "mlp"
MODEL_TYPES = {name: REGISTRY[name].config_cls for name in sorted(REGISTRY, key=lambda n: (n != DEFAULT_FAMILY, n))}


def _default_family(v: Any) -> Any:
    v = {"type": DEFAULT_FAMILY, **v} if isinstance(v, dict) and "type" not in v else v
    if isinstance(v, dict) and v.get("backend", "torch") != "torch" and v.get("type") not in FAMILIES:
        raise ValueError(f"backend: {v['backend']} builds the families {', '.join(FAMILIES)}; model.type "
                         f"'{v.get('type')}' trains on torch only (remove model.backend)")
    return v


ModelConfig = Annotated[Union[tuple(MODEL_TYPES.values())], BeforeValidator(_default_family),  # noqa: UP007
                        Field(discriminator="type")]
