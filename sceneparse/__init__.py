"""sceneparse: scene parsing with PSPNet, PSANet and UPerNet on dilated ResNets."""
from sceneparse.api import build_model
from sceneparse.config import Preset, load_preset, preset_names
from sceneparse.segmenter import Segmenter

__version__ = "0.1.0"
__all__ = ["Preset", "Segmenter", "__version__", "build_model", "load_preset", "preset_names"]
