"""Self-supervised tasks: Audio2Vec (CBoW, skip-gram), TemporalGap, triplet,
NT-Xent (which also accepts images); and embedding distillation from frozen teachers.

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

#: The self-supervised tasks that can also train on images (multimodal).
IMAGE_TASKS: tuple[str, ...] = tuple(
    name for name, task in SSL_TASKS.items() if task.accepts_images)


def require_image_task(task: str) -> None:
  """Raises ValueError unless ``task`` can train on images.

  The message names the tasks that can (for usage errors of the launchers).
  """
  if task not in IMAGE_TASKS:
    raise ValueError(f"task {task!r} cannot train on images; multimodal "
                     f"training needs one of {list(IMAGE_TASKS)}")


#: Every training objective an SSLModel can have, keyed by flag value.
TASKS: dict[str, type[SSLTask]] = {**SSL_TASKS, "distillation": Distillation}

__all__ = [
    "SSL_TASKS", "TASKS", "IMAGE_TASKS", "require_image_task", "SSLTask", "Distillation", "TaskConfig", "Audio2VecCBoW", "Audio2VecSkipGram",
    "TemporalGap", "Triplet", "NTXent",
]
