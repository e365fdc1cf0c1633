"""Cost accounting of federated rounds: client compute, bytes on the wire, time."""

from __future__ import annotations

import dataclasses
from typing import Optional

from model.ssl_model import SSLModel
from tff_sim.algorithms import AlgorithmConfig

__all__ = ["CostModel", "MIME_STATE_SLOTS", "RoundCost", "TRAIN_FLOPS_FACTOR"]

#: FLOPs of a training step relative to the forward pass (forward + input
#: gradient + weight gradient, the usual estimate).
TRAIN_FLOPS_FACTOR = 3


#: Weight-sized float32 state tensors of each client optimizer that MimeLite
#: sends to the clients with the model (SGD momentum: 1; Adam: 2 moments).
MIME_STATE_SLOTS: dict[str, int] = {"sgd": 1, "adam": 2}


@dataclasses.dataclass(frozen=True)
class RoundCost:
  """What one round cost.

  Attributes:
    clients: Clients that trained.
    examples: Training examples processed on clients (all local steps).
    client_flops: Client training FLOPs (encoder forward FLOPs per patch x
      patches per example x examples x TRAIN_FLOPS_FACTOR).
    bytes_down: Model bytes sent to the clients.
    bytes_up: Update bytes sent by the clients.
    wall_s: Wall time of the round.
  """

  clients: int
  examples: int
  client_flops: float
  bytes_down: int
  bytes_up: int
  wall_s: float


@dataclasses.dataclass(frozen=True)
class CostModel:
  """Per-example compute and per-client bytes of a model.

  Attributes:
    flops_per_example: Training FLOPs of one example on a client.
    model_bytes: Download size per client: float32 bytes of every trainable
      weight (plus MimeLite's optimizer state).
    update_bytes: Bytes of one client update (upload size; smaller under
      8-bit compressed aggregation; plus MimeLite's full-batch gradient).
  """

  flops_per_example: float
  model_bytes: int
  update_bytes: int

  @classmethod
  def for_model(cls, model: SSLModel, *, compressed: bool = False,
                algorithm: Optional[AlgorithmConfig] = None) -> "CostModel":
    """The cost model of ``model`` (encoder FLOPs; head FLOPs not counted).

    Args:
      model: The trained model.
      compressed: 8-bit compressed client updates.
      algorithm: The federated algorithm (None: FedAvg's costs). MimeLite
        also broadcasts its base optimizer's state
        (:data:`MIME_STATE_SLOTS` float32 copies of the weights), and each
        client computes a full-batch gradient over its round's batches
        before training on them (one more forward + backward pass per
        example) and uploads it beside its update.
    """
    spec = model.spec
    flops = (2 * spec.encoder.forward_macs(spec.frontend.patch_shape)
             * model.task.patches_per_example * TRAIN_FLOPS_FACTOR)
    num_params = sum(int(w.shape.num_elements()) for w in model.weights)
    model_bytes = 4 * num_params
    update_bytes = num_params if compressed else 4 * num_params
    if algorithm is not None and algorithm.algorithm == "mimelite":
      flops *= 2
      model_bytes *= 1 + MIME_STATE_SLOTS[algorithm.client_optimizer]
      update_bytes += 4 * num_params
    return cls(flops_per_example=float(flops), model_bytes=model_bytes,
               update_bytes=update_bytes)

  def round_cost(self, examples_per_client: list[int], wall_s: float
                 ) -> RoundCost:
    clients = len(examples_per_client)
    examples = int(sum(examples_per_client))
    return RoundCost(clients=clients, examples=examples,
                     client_flops=examples * self.flops_per_example,
                     bytes_down=clients * self.model_bytes,
                     bytes_up=clients * self.update_bytes, wall_s=wall_s)
