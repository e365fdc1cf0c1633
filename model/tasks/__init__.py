"""Self-supervised tasks: Audio2Vec (CBoW, skip-gram), TemporalGap, triplet,
NT-Xent; and embedding distillation from frozen teachers.

``SSL_TASKS`` maps each self-supervised task's flag value to its class;
``TASKS`` adds the tasks that need more than audio (distillation needs
teachers).
"""

from model.tasks.audio2vec import Audio2VecCBoW, Audio2VecSkipGram
from model.tasks.base import SSLTask, TaskConfig
from model.tasks.distillation import Distillation
from model.tasks.nt_xent import NTXent
from model.tasks.temporal_gap import TemporalGap
from model.tasks.triplet import Triplet

#: Registry of the self-supervised tasks, keyed by flag value.
SSL_TASKS: dict[str, type[SSLTask]] = {
    "audio2vec_cbow": Audio2VecCBoW,
    "audio2vec_skipgram": Audio2VecSkipGram,
    "temporal_gap": TemporalGap,
    "triplet": Triplet,
    "nt_xent": NTXent,
}

#: Every training objective an SSLModel can have, keyed by flag value.
TASKS: dict[str, type[SSLTask]] = {**SSL_TASKS, "distillation": Distillation}

__all__ = [
    "SSL_TASKS", "TASKS", "SSLTask", "Distillation", "TaskConfig", "Audio2VecCBoW", "Audio2VecSkipGram",
    "TemporalGap", "Triplet", "NTXent",
]
