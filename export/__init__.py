"""Export of encoders as TFLite models that train and embed on the device."""

from export.conversion import (QUANTIZATIONS, Conversion,
                               convert_embed_model, convert_training_model)
from export.corpus import Corpus, load_corpus
from export.exporter import (TRAINING_DIR, ExportConfig, ExportResult, Source,
                             embed_dir, export_model, fresh_source,
                             load_source)
from export.manifest import (MANIFEST_NAME, MODEL_NAME, Manifest,
                             ManifestError)
from export.naming import signature_key, signature_keys
from export.ondevice_module import MODES, EmbedModule, OnDeviceModule
from export.optimizers import OPTIMIZERS, OptimizerConfig
from export.runtime import RUNTIMES, OnDeviceModel
from export.verification import (VerificationError, VerifyConfig,
                                 verify_embed_model, verify_training_model)

__all__ = [
    "QUANTIZATIONS", "Conversion", "convert_embed_model",
    "convert_training_model", "Corpus", "load_corpus", "TRAINING_DIR",
    "ExportConfig", "ExportResult", "Source", "embed_dir", "export_model",
    "fresh_source", "load_source", "MANIFEST_NAME", "MODEL_NAME",
    "Manifest", "ManifestError", "signature_key", "signature_keys", "MODES",
    "EmbedModule", "OnDeviceModule", "OPTIMIZERS", "OptimizerConfig", "RUNTIMES",
    "OnDeviceModel", "VerificationError", "VerifyConfig",
    "verify_embed_model", "verify_training_model",
]
