"""Self-supervised tasks: Audio2Vec (CBoW, skip-gram), TemporalGap, triplet,
NT-Xent. ``SSL_TASKS`` maps each task's flag value to its class."""

from model.tasks.audio2vec import Audio2VecCBoW, Audio2VecSkipGram
from model.tasks.base import SSLTask, TaskConfig
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

__all__ = [
    "SSL_TASKS", "SSLTask", "TaskConfig", "Audio2VecCBoW", "Audio2VecSkipGram",
    "TemporalGap", "Triplet", "NTXent",
]
