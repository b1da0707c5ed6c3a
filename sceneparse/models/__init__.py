"""Networks: dilated ResNets, the PSP / PSA / UPer decode heads, the FCN aux head, and the registry."""
from sceneparse.models import builders as _builders  # noqa: F401  (registers the models)
from sceneparse.models.registry import MODELS, build_segmentor, get_model, register_model
from sceneparse.models.segmentor import Segmentor

__all__ = ["MODELS", "Segmentor", "build_segmentor", "get_model", "register_model"]
