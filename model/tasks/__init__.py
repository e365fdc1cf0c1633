"""Self-supervised tasks: Audio2Vec (CBoW, skip-gram), TemporalGap, triplet
(predictive); NT-Xent, Barlow Twins, SimSiam (feature-matching, which also
accept images); and embedding distillation from frozen teachers.

``SSL_TASKS`` maps each self-supervised task's flag value to its class;
``TASKS`` adds the tasks that need more than audio (distillation needs
teachers).
"""

from model.tasks.audio2vec import Audio2VecCBoW, Audio2VecSkipGram
from model.tasks.barlow_twins import BarlowTwins
from model.tasks.base import SSLTask, TaskConfig, check_batch_size
from model.tasks.distillation import Distillation
from model.tasks.nt_xent import NTXent
from model.tasks.simsiam import SimSiam
from model.tasks.temporal_gap import TemporalGap
from model.tasks.triplet import Triplet

#: Registry of the self-supervised tasks, keyed by flag value.
SSL_TASKS: dict[str, type[SSLTask]] = {
    "audio2vec_cbow": Audio2VecCBoW,
    "audio2vec_skipgram": Audio2VecSkipGram,
    "temporal_gap": TemporalGap,
    "triplet": Triplet,
    "nt_xent": NTXent,
    "barlow_twins": BarlowTwins,
    "simsiam": SimSiam,
}

#: Feature-matching tasks (two views of an example, matched in feature
#: space); the other self-supervised tasks predict a part of the input.
FEATURE_MATCHING_TASKS = ("nt_xent", "barlow_twins", "simsiam")

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



def check_task_batch_size(task: str, batch_size: int, field: str) -> None:
  """Checks ``batch_size`` against the minimum of ``TASKS[task]``.

  Raises:
    ValueError: Names ``field``, the task and its minimum batch size.
  """
  check_batch_size(TASKS[task], batch_size, field)


__all__ = [
    "SSL_TASKS", "TASKS", "FEATURE_MATCHING_TASKS", "IMAGE_TASKS",
    "require_image_task", "SSLTask", "Distillation", "TaskConfig",
    "Audio2VecCBoW", "Audio2VecSkipGram", "TemporalGap", "Triplet", "NTXent",
    "BarlowTwins", "SimSiam", "check_task_batch_size",
]
