"""One encoder for unpaired audio and images vs. one encoder per modality
(FSSUAVL: Rehman et al., 2025), federated and centralized.

Runs, all with the same task, encoder preset, rounds, clients and batches:

* ``shared (federated)``: one encoder, FedAvg over audio-only, image-only
  and audio+image clients (natural groups: speakers, digit writers).
* ``separate (federated)``: an audio encoder trained on the same rounds'
  audio batches only and an image encoder on the same image batches only
  (two encoders: twice the parameters); audio probes use the first, image
  probes the second.
* ``shared (centralized)``: one encoder, as many audio and image examples
  as the shared federated run, modalities interleaved, Adam.
* ``random init``: the encoder at its initial weights.
* the non-learned baseline: log-mel mean+std per mel bin for the audio
  probes, the standardized image's raw pixels for digits.
* the ablation: the shared federated run with other client mixes, i.e. other
  shares of audio and image data on the clients.

Scores: linear probes on every audio label of the synthetic corpus (test
speakers unseen except for ``speaker``) and on the digit classes (stratified
over images), cross-validated (``probe_folds``: every labelled clip and image
tested once, accuracy pooled, binomial standard error), retrieval mAP within
each modality (keywords, digits); a t-SNE map of both modalities' embeddings
from the shared encoder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import logging
from matplotlib.figure import Figure
import numpy as np
from sklearn.manifold import TSNE

from model import evaluation
from model.config_checks import require_choice
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.images import load_digits_images
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS, POOLINGS, Encoder
from model.multimodal import (MultimodalTrainConfig, image_embeddings,
                              pixel_features, probe_image_features,
                              probe_images, train_multimodal)
from model.saved_model import is_saved_model
from model.ssl_model import ModelSpec, SSLModel, load_model, save_model
from model.tasks import SSL_TASKS, require_image_task
from model.train import OPTIMIZERS
from tff_sim.algorithms import (ALGORITHMS, DEFAULT_CLIENT_LEARNING_RATES,
                                AlgorithmConfig, default_client_optimizer)
from tff_sim.multimodal import (ClientMix, MultimodalSimulationConfig,
                                run_multimodal_simulation)

__all__ = ["SHARED_FEDERATED", "SEPARATE_FEDERATED", "SHARED_CENTRALIZED",
           "RANDOM_INIT", "NO_LEARNING", "DIGITS", "PARAMS", "AUDIO_SHARE",
           "STDERR_SUFFIX", "NUM_TEST_SUFFIX",
           "MultimodalBenchmarkConfig", "mix_label", "target_checks",
           "run_multimodal_benchmark"]

SHARED_FEDERATED = "shared (federated)"
SEPARATE_FEDERATED = "separate (federated)"
SHARED_CENTRALIZED = "shared (centralized)"
RANDOM_INIT = "random init"
#: Row of the non-learned features (log-mel statistics; raw pixels).
NO_LEARNING = "no learning (log-mel mean+std; pixels)"
#: Column of the digit linear probe.
DIGITS = "digits"
#: Column of the encoder parameters a row needs to serve both modalities.
PARAMS = "encoder params"
#: Column of the audio share of the training examples.
AUDIO_SHARE = "audio share"
#: Suffix of a probe's binomial standard error column.
STDERR_SUFFIX = " se"
#: Suffix of a probe's test-prediction count column.
NUM_TEST_SUFFIX = " n"
_AUDIO_PREFIX = "audio "


@dataclasses.dataclass(frozen=True)
class MultimodalBenchmarkConfig:
  """What the multimodal study runs.

  Attributes:
    corpus: Key of ``synthetic.CORPUS_PRESETS`` (the audio).
    corpus_dir: Where the corpus is generated (reused); None:
      ``<out_dir>/corpus``.
    digit_groups: Natural image clients the digits are split into.
    max_digits: Use the first this many digits (0: all 1,797).
    task: SSL task; must accept images (``model.tasks.IMAGE_TASKS``).
    encoder: Encoder preset.
    pooling: Key of :data:`model.encoders.POOLINGS`: the encoder's pooling
      (every run of the study).
    algorithm: Federated algorithm (key of ``ALGORITHMS``).
    mix: ``(audio_only, image_only, both)`` client shares of the main runs.
    num_clients: Federated clients.
    rounds: Federated rounds.
    clients_per_round: Clients sampled per round.
    batch_size: Batch size (clients and centralized).
    max_local_steps: Cap on a client's steps per modality and round.
    client_learning_rate: Client step size (SGD; Adam for ``mimelite``,
      whose clients step with the server's Adam moments). None: the client
      optimizer's default
      (:data:`tff_sim.algorithms.DEFAULT_CLIENT_LEARNING_RATES`).
    centralized_optimizer: Key of ``model.train.OPTIMIZERS``: the
      centralized run's optimizer (``sgd`` pairs like with like with
      FedAvg's client and server SGD; ``adam`` with FedAdam).
    centralized_learning_rate: Step size of the centralized run.
    ablation_mixes: Client mixes of the ablation runs (shared encoder).
    tsne_points: Points per modality in the t-SNE map.
    probe_folds: Cross-validation folds of the linear probes (1: one 70/30
      split per probe).
    seed: Seed of weights, clients, batches, splits.
    out_dir: Output directory.
  """

  corpus: str = "full"
  corpus_dir: Optional[str] = None
  digit_groups: int = 32
  max_digits: int = 0
  task: str = "nt_xent"
  encoder: str = "tiny"
  pooling: str = "max"
  algorithm: str = "fedavg"
  mix: tuple[float, float, float] = (0.25, 0.25, 0.5)
  num_clients: int = 16
  rounds: int = 20
  clients_per_round: int = 6
  batch_size: int = 16
  max_local_steps: int = 5
  client_learning_rate: Optional[float] = None
  centralized_optimizer: str = "adam"
  centralized_learning_rate: float = 1e-3
  ablation_mixes: tuple[tuple[float, float, float], ...] = (
      (0.5, 0.5, 0.0), (0.0, 0.0, 1.0), (0.5, 0.125, 0.375),
      (0.125, 0.5, 0.375))
  tsne_points: int = 400
  probe_folds: int = 5
  seed: int = 0
  out_dir: str = "multimodal_output"

  def __post_init__(self):
    object.__setattr__(self, "mix", tuple(self.mix))
    object.__setattr__(self, "ablation_mixes",
                       tuple(tuple(m) for m in self.ablation_mixes))
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    require_choice(self, ["task"], SSL_TASKS)
    require_choice(self, ["encoder"], ENCODERS)
    require_choice(self, ["pooling"], POOLINGS)
    require_choice(self, ["algorithm"], dict.fromkeys(ALGORITHMS))
    require_choice(self, ["centralized_optimizer"], OPTIMIZERS)
    try:
      require_image_task(self.task)
    except ValueError as e:
      raise ValueError(f"MultimodalBenchmarkConfig.task: {e}") from None
    for mix in (self.mix, *self.ablation_mixes):
      if len(mix) != 3:
        raise ValueError(f"MultimodalBenchmarkConfig: a client mix is "
                         f"(audio_only, image_only, both), got {mix}")
      ClientMix(*mix)
    for field in ("digit_groups", "num_clients", "rounds", "clients_per_round",
                  "batch_size", "client_learning_rate",
                  "centralized_learning_rate", "tsne_points",
                  "probe_folds"):
      value = getattr(self, field)
      if value is not None and value <= 0:  # None: client lr by default.
        raise ValueError(f"MultimodalBenchmarkConfig.{field} must be "
                         f"positive, got {value}")
    if self.max_local_steps < 0 or self.max_digits < 0:
      raise ValueError("MultimodalBenchmarkConfig: max_local_steps and "
                       "max_digits must be >= 0")

  @property
  def client_lr(self) -> float:
    """The client step size in effect (``client_learning_rate`` or the
    default of the algorithm's client optimizer)."""
    if self.client_learning_rate is not None:
      return self.client_learning_rate
    return DEFAULT_CLIENT_LEARNING_RATES[default_client_optimizer(
        self.algorithm)]

  @property
  def spec(self) -> ModelSpec:
    return ModelSpec(task=self.task,
                     encoder=dataclasses.replace(ENCODERS[self.encoder],
                                                 pooling=self.pooling),
                     seed=self.seed, multimodal=True)

  def simulation(self, mix: Sequence[float], modalities: Sequence[str]
                 ) -> MultimodalSimulationConfig:
    return MultimodalSimulationConfig(
        model=self.spec, algorithm=AlgorithmConfig(
            algorithm=self.algorithm,
            client_optimizer=default_client_optimizer(self.algorithm),
            client_learning_rate=self.client_lr),
        mix=ClientMix(*mix), num_clients=self.num_clients,
        modalities=tuple(modalities), rounds=self.rounds,
        clients_per_round=self.clients_per_round, batch_size=self.batch_size,
        max_local_steps=self.max_local_steps, seed=self.seed)


def mix_label(mix: Sequence[float]) -> str:
  """Row name of an ablation run, e.g. ``shared, mix 25/25/50%`` (audio-only
  / image-only / both clients)."""
  return "shared, mix " + "/".join(f"{100 * s:g}" for s in mix) + "%"


def _quality(audio: evaluation.ProbeResult, images: Mapping[str, float],
             tasks: Sequence[str]) -> dict[str, float]:
  """Probe accuracies, their standard errors and test counts, retrieval."""
  # Tasks too small to split are skipped alike for every encoder.
  row, spread = {}, {}
  for t in tasks:
    if t in audio.accuracy:
      column = f"{_AUDIO_PREFIX}{t}"
      row[column] = audio.accuracy[t]
      spread[column + STDERR_SUFFIX] = audio.stderr[t]
      spread[column + NUM_TEST_SUFFIX] = audio.num_test[t]
  row[f"{_AUDIO_PREFIX}retrieval_map"] = audio.retrieval["map"]
  row[DIGITS] = images["accuracy"]
  row[f"{DIGITS} retrieval_map"] = images["retrieval_map"]
  spread[DIGITS + STDERR_SUFFIX] = images["accuracy_stderr"]
  spread[DIGITS + NUM_TEST_SUFFIX] = images["num_test"]
  return {**row, **spread}


#: Columns that are not scores.
_COUNT_COLUMNS = (PARAMS, "audio examples", "image examples", AUDIO_SHARE)


def _is_spread(column: str) -> bool:
  return column.endswith(STDERR_SUFFIX) or column.endswith(NUM_TEST_SUFFIX)


def _probe_columns(rows: Mapping[str, Mapping[str, float]]) -> list[str]:
  """The linear-probe columns (every audio label, digits)."""
  first = next(iter(rows.values()))
  return [c for c in first if c not in _COUNT_COLUMNS and not _is_spread(c)
          and ((c.startswith(_AUDIO_PREFIX) and "retrieval" not in c)
               or c == DIGITS)]


def _stderr(row: Mapping[str, float], probe: str) -> float:
  """A row's standard error of ``probe`` (NaN if not recorded)."""
  return float(row.get(probe + STDERR_SUFFIX, float("nan")))


@dataclasses.dataclass(frozen=True)
class _Trained:
  """A trained (or reloaded) model of one run."""

  model: SSLModel
  examples: dict[str, int]
  wall_s: float


_RESULT_FILE = "result.json"


def _train_or_reuse(run_dir: str, key: dict,
                    train: Callable[[], Any]) -> _Trained:
  """Reloads the run in ``run_dir`` if it was made with ``key``, else trains.

  ``train`` returns an object with ``model``, ``examples`` and ``wall_s``;
  the model is saved to ``<run_dir>/model`` and the rest to ``result.json``.
  """
  key = json.loads(json.dumps(key))
  path = os.path.join(run_dir, _RESULT_FILE)
  model_dir = os.path.join(run_dir, "model")
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved["key"] == key and is_saved_model(model_dir):
      logging.info("reusing the finished run %s", run_dir)
      return _Trained(load_model(model_dir), saved["examples"],
                      saved["wall_s"])
  result = train()
  save_model(result.model, model_dir)
  with open(path + ".tmp", "w") as f:
    json.dump({"key": key, "examples": result.examples,
               "wall_s": result.wall_s}, f, indent=2)
  os.replace(path + ".tmp", path)
  return _Trained(result.model, dict(result.examples), result.wall_s)


def target_checks(rows: Mapping[str, Mapping[str, float]]
                  ) -> list[tuple[str, bool, str]]:
  """The study's targets, measured: ``(target, met, detail)``.

  * The shared encoder is within 2 points of the separate encoders on every
    probe, with half the parameters.
  * It beats random init on digits by >= 20 points and on every audio probe.
  * Federated reaches >= 95% of centralized on every probe.
  """
  shared, separate = rows[SHARED_FEDERATED], rows[SEPARATE_FEDERATED]
  central, random = rows[SHARED_CENTRALIZED], rows[RANDOM_INIT]
  probes = _probe_columns(rows)
  gaps = {p: 100 * (shared[p] - separate[p]) for p in probes}
  lifts = {p: 100 * (shared[p] - random[p]) for p in probes}
  ratios = {p: 100 * shared[p] / max(central[p], 1e-9) for p in probes}

  def difference_se(other):
    return {p: 100 * np.hypot(_stderr(shared, p), _stderr(other, p))
            for p in probes}

  def ratio_se(p):
    # First-order propagation of both standard errors into the ratio.
    return ratios[p] * np.hypot(_stderr(shared, p) / max(shared[p], 1e-9),
                                _stderr(central, p) / max(central[p], 1e-9))

  spread = {"gap": difference_se(separate), "lift": difference_se(random),
            "ratio": {p: ratio_se(p) for p in probes}}

  def fmt(d, unit, kind):
    parts = []
    for p, v in d.items():
      se = spread[kind][p]
      text = f"{p} {v:+.1f}" if unit == " pts" else f"{p} {v:.1f}"
      parts.append(text + (f" ± {se:.1f}" if np.isfinite(se) else "") + unit)
    return ", ".join(parts)
  return [
      ("shared within 2 points of separate on every probe, half the "
       "parameters",
       all(g >= -2.0 for g in gaps.values())
       and 2 * shared[PARAMS] == separate[PARAMS],
       f"shared - separate: {fmt(gaps, ' pts', 'gap')}; params "
       f"{shared[PARAMS]:.0f}"
       f" vs {separate[PARAMS]:.0f}"),
      ("shared beats random init on digits by >= 20 points and on every "
       "audio probe",
       lifts[DIGITS] >= 20.0 and all(v > 0 for p, v in lifts.items()
                                     if p != DIGITS),
       f"shared - random: {fmt(lifts, ' pts', 'lift')}"),
      ("federated >= 95% of centralized on every probe",
       all(r >= 95.0 for r in ratios.values()),
       f"federated / centralized: {fmt(ratios, '%', 'ratio')}"),
  ]


def _format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
  """Markdown; a probe's cell is ``accuracy ± standard error``."""
  columns = [c for c in next(iter(rows.values())) if not _is_spread(c)]
  lines = ["| run | " + " | ".join(columns) + " |",
           "|---|" + "---:|" * len(columns)]

  def cell(row, c):
    if c in (PARAMS, "audio examples", "image examples"):
      return f"{row[c]:.0f}"
    se = _stderr(row, c)
    return f"{row[c]:.3f}" + (f" ± {se:.3f}" if np.isfinite(se) else "")

  for name, row in rows.items():
    cells = [cell(row, c) for c in columns]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _plot_tsne(audio_x: np.ndarray, audio_labels: Sequence[str],
               image_x: np.ndarray, image_labels: Sequence[str], path: str,
               seed: int) -> None:
  """t-SNE of both modalities' embeddings in one map (two colourings)."""
  points = np.concatenate([audio_x, image_x])
  perplexity = max(2.0, min(30.0, (len(points) - 1) / 3.0))
  xy = TSNE(n_components=2, perplexity=perplexity, init="pca",
            random_state=seed).fit_transform(points)
  n = len(audio_x)
  figure = Figure(figsize=(13, 6))
  for ax, (title, own, labels) in zip(
      figure.subplots(1, 2),
      (("audio (by content)", slice(0, n), audio_labels),
       ("digits (by class)", slice(n, None), image_labels))):
    other = np.ones(len(xy), bool)
    other[own] = False
    ax.scatter(xy[other, 0], xy[other, 1], s=6, c="lightgray",
               label="other modality")
    values = sorted(set(labels))
    for k, value in enumerate(values):
      mine = np.asarray(labels) == value
      ax.scatter(xy[own][mine, 0], xy[own][mine, 1], s=8, label=value,
                 color=f"C{k % 10}", marker="o" if k < 10 else "x")
    ax.set_title(f"shared encoder, t-SNE: {title}")
    ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2)
    ax.set_xticks([])
    ax.set_yticks([])
  figure.tight_layout()
  figure.savefig(path, dpi=110)


def _plot_ablation(rows: Mapping[str, Mapping[str, float]],
                   labels: Sequence[str], columns: Sequence[str],
                   path: str) -> None:
  """Probe scores against the audio share of the training examples, one
  point per client mix (annotated), one colour per probe."""
  figure = Figure(figsize=(8, 5))
  ax = figure.subplots()
  for k, column in enumerate(columns):
    share = [rows[r][AUDIO_SHARE] for r in labels]
    score = [rows[r][column] for r in labels]
    ax.scatter(share, score, color=f"C{k}", label=column)
    for label, x, y in zip(labels, share, score):
      mix = label.split("mix ")[-1] if "mix " in label else "main mix"
      ax.annotate(mix, (x, y), fontsize=7, xytext=(4, 3),
                  textcoords="offset points")
  ax.set_xlabel("audio share of the training examples")
  ax.set_ylabel("linear-probe accuracy")
  ax.set_title("client-mix ablation (shared encoder, federated; mix = % "
               "audio-only / image-only / both clients)", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=110)


def _natural_audio_groups(table, segments) -> dict[str, np.ndarray]:
  ids = np.asarray([c.client_id for c in table])
  return {client: np.flatnonzero(np.isin(segments.clip_index,
                                         np.flatnonzero(ids == client)))
          for client in table.client_ids}


def run_multimodal_benchmark(config: MultimodalBenchmarkConfig, *,
                             show_progress: bool = True
                             ) -> dict[str, dict[str, float]]:
  """Runs the study; writes ``results.csv``, ``report.md`` and plots.

  Each run's model is saved under ``<out_dir>/runs/<run>/``; a rerun with the
  same settings reloads finished runs instead of training them again (the
  scores are recomputed).

  Args:
    config: What to run.
    show_progress: Show progress bars.

  Returns:
    Rows (random init, the no-learning baseline, shared federated, separate
    federated, shared centralized, then the ablation) of probe accuracies
    with their standard errors (``<probe> se``) and test predictions
    (``<probe> n``), retrieval mAPs, parameters and examples per modality.
  """
  start = time.time()
  os.makedirs(config.out_dir, exist_ok=True)
  spec = config.spec
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(
          config.corpus_dir or os.path.join(config.out_dir, "corpus"),
          synthetic.CORPUS_PRESETS[config.corpus],
          show_progress=show_progress),
      sample_rate=spec.frontend.sample_rate, show_progress=show_progress)
  digits = load_digits_images(*spec.frontend.patch_shape,
                              num_clients=config.digit_groups,
                              limit=config.max_digits)
  segments = training_segments(waveforms, spec)
  audio_groups = _natural_audio_groups(table, segments)
  image_groups = digits.clients()
  tasks = evaluation.default_tasks(table)
  params = spec.encoder.num_params

  def scores(audio_encoder, image_encoder) -> dict[str, float]:
    audio = evaluation.probe_encoder(audio_encoder, table, waveforms,
                                     spec.frontend, seed=config.seed,
                                     probe_folds=config.probe_folds)
    return _quality(audio, probe_images(image_encoder, digits,
                                        seed=config.seed,
                                        folds=config.probe_folds), tasks)

  data_key = {"corpus": config.corpus, "digit_groups": config.digit_groups,
              "max_digits": config.max_digits}

  def federated(mix, modalities, name) -> _Trained:
    simulation = config.simulation(mix, modalities)
    run_dir = os.path.join(config.out_dir, "runs", name)
    return _train_or_reuse(
        run_dir, {"data": data_key, **simulation.to_dict()},
        lambda: run_multimodal_simulation(
            simulation, segments.waveforms, audio_groups, digits.images,
            image_groups, show_progress=show_progress, run_dir=run_dir))

  def examples(seen: Mapping[str, int]) -> dict[str, float]:
    total = max(seen["audio"] + seen["image"], 1)
    return {"audio examples": seen["audio"], "image examples": seen["image"],
            AUDIO_SHARE: seen["audio"] / total}

  walls = {}
  rows: dict[str, dict[str, float]] = {}
  initial = Encoder(spec.encoder, seed=config.seed)
  rows[RANDOM_INIT] = {**scores(initial, initial), PARAMS: params,
                       **examples({"audio": 0, "image": 0})}
  labelled = np.flatnonzero([bool(clip.labels) for clip in table])
  rows[NO_LEARNING] = {
      **_quality(
          evaluation.probe_embeddings(
              evaluation.logmel_statistics([waveforms[i] for i in labelled],
                                           spec.frontend),
              labelled, table, seed=config.seed,
              probe_folds=config.probe_folds),
          probe_image_features(pixel_features(digits), digits.labels,
                               folds=config.probe_folds, seed=config.seed),
          tasks),
      PARAMS: 0, **examples({"audio": 0, "image": 0})}

  shared = federated(config.mix, ("audio", "image"), "shared")
  walls[SHARED_FEDERATED] = shared.wall_s
  rows[SHARED_FEDERATED] = {
      **scores(shared.model.encoder, shared.model.encoder), PARAMS: params,
      **examples(shared.examples)}

  audio_only = federated(config.mix, ("audio",), "separate_audio")
  image_only = federated(config.mix, ("image",), "separate_image")
  walls[SEPARATE_FEDERATED] = audio_only.wall_s + image_only.wall_s
  rows[SEPARATE_FEDERATED] = {
      **scores(audio_only.model.encoder, image_only.model.encoder),
      PARAMS: 2 * params,
      **examples({"audio": audio_only.examples["audio"],
                  "image": image_only.examples["image"]})}

  central_config = MultimodalTrainConfig(
      audio_steps=max(1, shared.examples["audio"] // config.batch_size),
      image_steps=max(1, shared.examples["image"] // config.batch_size),
      batch_size=config.batch_size, optimizer=config.centralized_optimizer,
      learning_rate=config.centralized_learning_rate, seed=config.seed)
  central = _train_or_reuse(
      os.path.join(config.out_dir, "runs", "centralized"),
      {"data": data_key, "model": spec.to_dict(),
       **dataclasses.asdict(central_config)},
      lambda: train_multimodal(spec, central_config, segments.waveforms,
                               digits.images, show_progress=show_progress))
  walls[SHARED_CENTRALIZED] = central.wall_s
  rows[SHARED_CENTRALIZED] = {
      **scores(central.model.encoder, central.model.encoder), PARAMS: params,
      **examples(central.examples)}

  ablation = []
  for mix in config.ablation_mixes:
    label = mix_label(mix)
    result = federated(mix, ("audio", "image"),
                       "ablation_" + "_".join(f"{s:g}" for s in mix))
    walls[label] = result.wall_s
    rows[label] = {**scores(result.model.encoder, result.model.encoder),
                   PARAMS: params, **examples(result.examples)}
    ablation.append(label)

  rng = np.random.default_rng(config.seed)
  audio_pick = np.sort(rng.choice(len(table), min(config.tsne_points,
                                                  len(table)), replace=False))
  image_pick = np.sort(rng.choice(len(digits), min(config.tsne_points,
                                                   len(digits)), replace=False))
  audio_x = evaluation.clip_embeddings(
      shared.model.encoder, [waveforms[i] for i in audio_pick], spec.frontend)
  image_x = image_embeddings(shared.model.encoder, digits.images[image_pick])
  _plot_tsne(audio_x, [table[i].labels.get("content", "?") for i in audio_pick],
             image_x, [digits.labels[i] for i in image_pick],
             os.path.join(config.out_dir, "tsne.png"), config.seed)
  probes = _probe_columns(rows)
  evaluation.plot_quality_table(
      {k: {c: v[c] for c in probes} for k, v in rows.items()},
      os.path.join(config.out_dir, "probes.png"),
      title="linear probes: shared vs separate encoders (± 1 standard error)",
      errors={k: {c: _stderr(v, c) for c in probes} for k, v in rows.items()})
  if ablation:
    _plot_ablation(rows, [SHARED_FEDERATED, *ablation],
                   [f"{_AUDIO_PREFIX}keyword" if "keyword" in tasks else
                    probes[0], DIGITS],
                   os.path.join(config.out_dir, "ablation.png"))
  evaluation.write_csv(rows, os.path.join(config.out_dir, "results.csv"))
  with open(os.path.join(config.out_dir, "report.md"), "w") as f:
    f.write(_report(config, rows, walls, time.time() - start))
  return rows


def _report(config: MultimodalBenchmarkConfig,
            rows: Mapping[str, Mapping[str, float]],
            walls: Mapping[str, float], wall_s: float) -> str:
  checks = target_checks(rows)
  a, i, b = config.mix
  random, shared = rows[RANDOM_INIT], rows[SHARED_FEDERATED]
  pixels = rows.get(NO_LEARNING, {})
  counts = ", ".join(f"{c} {rows[RANDOM_INIT][c + NUM_TEST_SUFFIX]:.0f}"
                     for c in _probe_columns(rows)
                     if c + NUM_TEST_SUFFIX in rows[RANDOM_INIT])
  folds = (f"{config.probe_folds}-fold cross-validated (every labelled clip "
           "and image tested once, accuracy pooled over the folds)"
           if config.probe_folds > 1 else "one 70/30 split")
  needed = random[DIGITS] + 0.2
  ceiling = (
      f"Digits: +20 points over random init needs {needed:.3f}"
      + (" (above 1: cannot be met)" if needed > 1 else "")
      + f"; the shared encoder reaches {shared[DIGITS]:.3f}"
      + (f", raw pixels {pixels[DIGITS]:.3f}" if DIGITS in pixels else "")
      + ".")
  return "\n".join([
      f"# One encoder for unpaired audio and images: {config.task}, "
      f"{config.encoder} encoder ({config.pooling} pooling), {config.corpus} "
      "corpus + digits", "",
      f"Federated runs: {config.rounds} rounds, {config.clients_per_round} of "
      f"{config.num_clients} clients per round ({100 * a:g}% audio only, "
      f"{100 * i:g}% images only, {100 * b:g}% both; natural groups: speakers"
      f" and {config.digit_groups} digit groups), <= {config.max_local_steps} "
      f"local {'Adam' if config.algorithm == 'mimelite' else 'SGD'} steps "
      f"per modality (lr {config.client_lr:g}) of "
      f"batch {config.batch_size}, {config.algorithm}. The separate encoders "
      "see exactly the shared run's batches of their modality. Centralized: "
      "as many audio and image examples as the shared federated run, "
      f"modalities interleaved, {config.centralized_optimizer} lr "
      f"{config.centralized_learning_rate}. "
      "Audio probes: linear probes on each label of the corpus (unseen "
      "speakers except for `speaker`), keyword retrieval mAP; digits: "
      "linear probe stratified over images, digit retrieval mAP. Probes are "
      f"{folds}; a cell is accuracy ± its binomial standard error. Test "
      f"predictions per probe: {counts}. Row `{NO_LEARNING}`: the linear "
      "probe on each clip's log-mel mean and std per mel bin (audio) and on "
      "the standardized image's pixels (digits). "
      "Ablation rows `shared, mix a/i/b%`: the shared federated run with a% "
      "audio-only, i% image-only and b% audio+image clients.", "",
      _format_table(rows), "",
      "## Targets", "",
      *[f"- **{'met' if met else 'NOT met'}**: {name} ({detail})"
        for name, met, detail in checks], "",
      "± is one standard error of the difference (or ratio) from the two "
      "binomial standard errors. " + ceiling, "",
      "Plots: `tsne.png` (both modalities in the shared encoder's space), "
      "`probes.png`" + (", `ablation.png` (probe accuracy vs the audio share "
                        "of the training examples)." if config.ablation_mixes
                        else "."), "",
      "Training wall time: " + ", ".join(f"{k} {v:.0f} s"
                                         for k, v in walls.items())
      + f". Whole invocation: {wall_s:.0f} s.", "",
      "Configuration as given" + (
          "" if config.client_learning_rate is not None else
          f" (`client_learning_rate` null: the {config.algorithm} client "
          f"optimizer's default, {config.client_lr:g})") + ":", "",
      "```json", json.dumps(dataclasses.asdict(config), indent=2), "```", ""])
