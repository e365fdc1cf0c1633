"""Feature-matching vs. predictive SSL, federated and centralized (Rehman et
al., "FASSL: Federated Audio Self-Supervised Learning", ICASSP-W 2024).

Every task of both families is trained federatedly on the natural partition
(one client per speaker, a sample of clients per round) and centrally on the
same training segments for as many examples. The final encoders are scored by
linear probes and same-label retrieval mean average precision on every
downstream label; the federated runs keep, for every metric they evaluate
every ``eval_every`` rounds, the global model of the best round (FASSL's
selection, ``<run>/best/``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Mapping, Optional, Sequence

from absl import logging
from matplotlib.figure import Figure
import numpy as np

from model import cli
from model import evaluation
from model.config_checks import (require_choice, require_non_negative,
                                 require_positive)
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.clips import ClipTable
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS, Encoder
from model.features import FrontendConfig
from model.ssl_model import ModelSpec, load_model
from model.tasks import FEATURE_MATCHING_TASKS, SSL_TASKS
from model.train import OPTIMIZERS, TrainConfig, train_centralized
from tff_sim.algorithms import ALGORITHMS, AlgorithmConfig
from tff_sim.partition import PartitionConfig
from tff_sim.report import read_release_csv
from tff_sim.simulation import (RETRIEVAL_METRIC, SimulationConfig,
                                run_simulation)

__all__ = ["FEATURE_MATCHING", "PREDICTIVE", "TIE", "PREDICTIVE_TASKS",
           "QUICK",
           "RANDOM_INIT", "NEW_TASKS", "RETRIEVAL_GOAL", "FasslConfig",
           "FasslResult", "probe_column", "map_column", "score_encoder",
           "usable_labels", "command_line",
           "run_fassl_benchmark"]

#: Family names, and the winner of a column where both families' best tie.
FEATURE_MATCHING, PREDICTIVE, TIE = "feature-matching", "predictive", "tie"
#: Predictive tasks of the study (reconstruct or regress part of the input).
PREDICTIVE_TASKS = ("audio2vec_cbow", "audio2vec_skipgram", "temporal_gap")
#: Row of the encoder at its initial (seeded) weights.
RANDOM_INIT = "random init"
#: Tasks whose "beats random init on every probe" the report checks.
NEW_TASKS = ("barlow_twins", "simsiam")
#: FASSL's claim: federated retrieval mAP >= this % of centralized.
RETRIEVAL_GOAL = 95.0
_LAUNCHER = "python -m benchmarks.fassl_main"
#: The smallest setting (``--quick``): the tiny corpus, 2 rounds of 2
#: clients, one task per family; a smoke test of the whole study.
QUICK = dict(corpus="tiny", feature_matching=("barlow_twins",),
             predictive=("temporal_gap",), rounds=2, clients_per_round=2,
             batch_size=4, max_local_steps=1, eval_every=1)


def probe_column(label: str) -> str:
  """Column of the linear-probe accuracy on ``label``."""
  return f"{label} probe"


def map_column(label: str) -> str:
  """Column of the same-``label`` retrieval mean average precision."""
  return f"{label} mAP"


@dataclasses.dataclass(frozen=True)
class FasslConfig:
  """What the study runs.

  Attributes:
    corpus: Key of :data:`model.datasets.synthetic.CORPUS_PRESETS` (``fl``:
      120 speakers, i.e. clients).
    corpus_dir: Where the corpus is generated (reused when complete); None:
      ``<out_dir>/corpus``.
    encoder: Encoder preset of every run.
    feature_matching: Feature-matching tasks (keys of ``SSL_TASKS``).
    predictive: Predictive tasks (keys of ``SSL_TASKS``).
    algorithm: Federated algorithm (key of ``ALGORITHMS``), default server
      learning rate.
    rounds: Federated rounds.
    clients_per_round: Clients sampled per round.
    batch_size: Client (and centralized) batch size.
    max_local_steps: Cap on local steps per client and round.
    client_learning_rate: Client SGD step size.
    eval_every: Rounds between the federated runs' probes (the curves and
      the best-round selection).
    centralized_optimizer: Key of ``model.train.OPTIMIZERS``.
    centralized_learning_rate: Its step size.
    num_workers: TFF worker processes of each federated run.
    seed: Seed of weights, sampling, batches and probe splits.
    out_dir: Output directory (``runs/``, ``report.md``, ``results.csv``,
      ``best_rounds.csv``, ``quality_vs_rounds.png``, the corpus by default).
  """

  corpus: str = "fl"
  corpus_dir: Optional[str] = None
  encoder: str = "tiny"
  feature_matching: tuple[str, ...] = FEATURE_MATCHING_TASKS
  predictive: tuple[str, ...] = PREDICTIVE_TASKS
  algorithm: str = "fedavg"
  rounds: int = 30
  clients_per_round: int = 10
  batch_size: int = 8
  max_local_steps: int = 4
  client_learning_rate: float = 0.05
  eval_every: int = 5
  centralized_optimizer: str = "adam"
  centralized_learning_rate: float = 1e-3
  num_workers: int = 1
  seed: int = 0
  out_dir: str = "fassl_output"

  def __post_init__(self):
    for field in ("feature_matching", "predictive"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    require_choice(self, ["encoder"], ENCODERS)
    require_choice(self, ["algorithm"], ALGORITHMS)
    require_choice(self, ["centralized_optimizer"], OPTIMIZERS)
    tasks = self.tasks
    if not self.feature_matching or not self.predictive:
      raise ValueError("FasslConfig: feature_matching and predictive need at "
                       "least one task each")
    if unknown := [t for t in tasks if t not in SSL_TASKS]:
      raise ValueError(f"FasslConfig: unknown tasks {unknown}; expected keys "
                       f"of {sorted(SSL_TASKS)}")
    if len(set(tasks)) != len(tasks):
      raise ValueError(f"FasslConfig: a task is listed twice in {tasks}")
    require_positive(self, ("rounds", "clients_per_round", "batch_size",
                            "eval_every", "num_workers", "client_learning_rate",
                            "centralized_learning_rate"))
    require_non_negative(self, ("max_local_steps",))

  @property
  def tasks(self) -> tuple[str, ...]:
    return self.feature_matching + self.predictive

  def family(self, task: str) -> str:
    return FEATURE_MATCHING if task in self.feature_matching else PREDICTIVE

  @property
  def corpus_path(self) -> str:
    """The corpus directory: ``corpus_dir`` or ``<out_dir>/corpus``."""
    return self.corpus_dir or os.path.join(self.out_dir, "corpus")

  def spec(self, task: str) -> ModelSpec:
    return ModelSpec(task=task, encoder=ENCODERS[self.encoder], seed=self.seed)

  def simulation(self, task: str) -> SimulationConfig:
    """The federated run of ``task`` on the natural partition."""
    return SimulationConfig(
        model=self.spec(task),
        algorithm=AlgorithmConfig(
            algorithm=self.algorithm,
            client_learning_rate=self.client_learning_rate),
        partition=PartitionConfig(method="natural", seed=self.seed),
        rounds=self.rounds, clients_per_round=self.clients_per_round,
        batch_size=self.batch_size, max_local_steps=self.max_local_steps,
        eval_every=self.eval_every, seed=self.seed,
        num_workers=self.num_workers)


@dataclasses.dataclass(frozen=True)
class FasslResult:
  """What the study measured.

  Attributes:
    rows: Row (``"<task> federated"``, ``"<task> centralized"``,
      :data:`RANDOM_INIT`) -> probe accuracy and retrieval mAP per label.
    best: Task -> evaluated metric -> ``(round, value)`` of the federated
      run's best global model.
    curves: Task -> the federated run's evaluation rows (``round`` and the
      metrics).
    winners: ``(column, setting)`` -> ``(family, task)``: the family whose
      best task scores highest on the column in that setting
      (``federated``/``centralized``), or :data:`TIE` (then a best
      feature-matching task), and that task.
    checks: The report's verdicts (name -> passed).
  """

  rows: dict[str, dict[str, float]]
  best: dict[str, dict[str, tuple[int, float]]]
  curves: dict[str, list[dict[str, float]]]
  winners: dict[tuple[str, str], tuple[str, str]]
  checks: dict[str, bool]


def score_encoder(encoder: Encoder, table: ClipTable,
                  waveforms: Sequence[np.ndarray], frontend: FrontendConfig,
                  labels: Sequence[str], *, seed: int = 0) -> dict[str, float]:
  """Linear-probe accuracy and retrieval mAP on every label, one embedding pass.

  Args:
    encoder: The encoder (not modified).
    table: The clips.
    waveforms: One waveform per clip of ``table``.
    frontend: Front-end parameters.
    labels: Label columns (splits as :func:`model.evaluation.split_for_task`).
    seed: Seed of the probe splits.

  Returns:
    :func:`probe_column` and :func:`map_column` of every label.
  """
  embeddings = evaluation.clip_embeddings(encoder, waveforms, frontend)
  scores = {}
  for label in labels:
    rows = np.asarray([i for i, clip in enumerate(table)
                       if label in clip.labels])
    y = np.asarray([table[i].labels[label] for i in rows], dtype=object)
    x = embeddings[rows]
    train, test = evaluation.split_for_task(table, label, seed=seed)
    scores[probe_column(label)] = evaluation.linear_probe(
        x[train], y[train], x[test], y[test])
    scores[map_column(label)] = evaluation.retrieval_map(x, y)["map"]
  return scores


def usable_labels(table: ClipTable, *, seed: int = 0) -> tuple[str, ...]:
  """Label columns that can be split for a probe (others skipped, logged)."""
  usable = []
  for label in evaluation.default_tasks(table):
    try:
      evaluation.split_for_task(table, label, seed=seed)
    except ValueError as e:
      logging.warning("skipping downstream label %r: %s", label, e)
      continue
    usable.append(label)
  return tuple(usable)


def command_line(config: FasslConfig) -> str:
  """The launcher command that reproduces ``config`` (flags = fields)."""
  return cli.command_line(_LAUNCHER, {f.name: getattr(config, f.name)
                                      for f in dataclasses.fields(config)})


def _fed_row(task: str) -> str:
  return f"{task} federated"


def _central_row(task: str) -> str:
  return f"{task} centralized"


def _winners(config: FasslConfig, rows: Mapping[str, Mapping[str, float]],
             columns: Sequence[str]
             ) -> dict[tuple[str, str], tuple[str, str]]:
  winners = {}
  for setting, row_of in (("federated", _fed_row),
                          ("centralized", _central_row)):
    for column in columns:
      best = {family: max(tasks, key=lambda t: rows[row_of(t)][column])
              for family, tasks in ((FEATURE_MATCHING, config.feature_matching),
                                    (PREDICTIVE, config.predictive))}
      fm, pr = (rows[row_of(best[f])][column]
                for f in (FEATURE_MATCHING, PREDICTIVE))
      family = (TIE if fm == pr else FEATURE_MATCHING if fm > pr
                else PREDICTIVE)
      winners[(column, setting)] = (
          family, best[PREDICTIVE if family == PREDICTIVE else
                       FEATURE_MATCHING])
  return winners


def _checks(config: FasslConfig, rows: Mapping[str, Mapping[str, float]],
            columns: Sequence[str], best: Mapping[str, Mapping]
            ) -> tuple[dict[str, bool], list[str]]:
  """Verdicts on the study's targets and the report lines explaining them."""
  checks, lines = {}, []
  random_row = rows[RANDOM_INIT]
  for task in (t for t in NEW_TASKS if t in config.tasks):
    for row in (_fed_row(task), _central_row(task)):
      worse = [c for c in columns if rows[row][c] <= random_row[c]]
      checks[f"{row} beats random init"] = not worse
      lines.append(f"- `{row}` beats `{RANDOM_INIT}` on every probe and "
                   f"retrieval column: {'yes' if not worse else 'NO'}"
                   + (f" (not on {', '.join(worse)})" if worse else "") + ".")
  keyword_map = RETRIEVAL_METRIC  # Keyword retrieval, as evaluated per round.
  column = map_column("keyword")
  if column not in columns:
    return checks, lines + ["- No `keyword` labels: the retrieval target "
                            "is not checked."]
  fm = config.feature_matching
  top = max(fm, key=lambda t: rows[_fed_row(t)][column])
  fed = rows[_fed_row(top)][column]
  central = rows[_central_row(top)][column]
  ratio = 100.0 * fed / central if central > 0 else float("nan")
  checks["best feature-matching federated >= 95% of centralized mAP"] = (
      ratio >= RETRIEVAL_GOAL)
  lines.append(
      f"- Best feature-matching task federated (final model): `{top}`, "
      f"keyword mAP {fed:.3f} = {ratio:.1f}% of its centralized {central:.3f} "
      f"(FASSL: >= {RETRIEVAL_GOAL:g}%: "
      f"{'met' if ratio >= RETRIEVAL_GOAL else 'NOT met'}).")
  if keyword_map in best.get(top, {}):
    round_num, value = best[top][keyword_map]
    lines.append(
        f"- Its best-round global model (FASSL's selection, round "
        f"{round_num}): keyword mAP {value:.3f} = "
        f"{100.0 * value / central:.1f}% of centralized.")
  return checks, lines


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
  """Markdown table of the scores (3 decimals)."""
  columns = list(dict.fromkeys(c for values in rows.values() for c in values))
  lines = ["| run | " + " | ".join(columns) + " |",
           "|---|" + "---:|" * len(columns)]
  lines += [f"| {name} | " + " | ".join(
      f"{values[c]:.3f}" if c in values else "-" for c in columns) + " |"
            for name, values in rows.items()]
  return "\n".join(lines)


def _best_table(best: Mapping[str, Mapping[str, tuple[int, float]]]) -> str:
  metrics = list(dict.fromkeys(m for per in best.values() for m in per))
  lines = ["| federated run | " + " | ".join(metrics) + " |",
           "|---|" + "---:|" * len(metrics)]
  for task, per in best.items():
    lines.append(f"| {task} | " + " | ".join(
        f"{per[m][1]:.3f} (r{per[m][0]})" if m in per else "-"
        for m in metrics) + " |")
  return "\n".join(lines)


def _plot(config: FasslConfig, curves: Mapping[str, Sequence[Mapping]],
          central: Mapping[str, Mapping[str, float]],
          random_init: Mapping[str, float], metrics: Sequence[str],
          path: str) -> None:
  """Quality vs. rounds, a line per federated task coloured by family, the
  best centralized score of each family and random init as levels."""
  colours = {FEATURE_MATCHING: "tab:blue", PREDICTIVE: "tab:orange"}
  styles = ["-", "--", ":", "-."]
  figure = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
  axes = figure.subplots(1, len(metrics), squeeze=False)[0]
  for ax, metric in zip(axes, metrics):
    index = {FEATURE_MATCHING: 0, PREDICTIVE: 0}
    for task, rows in curves.items():
      family = config.family(task)
      points = [(r["round"], r[metric]) for r in rows if metric in r]
      if points:
        ax.plot(*zip(*points), marker="o", markersize=3,
                color=colours[family],
                linestyle=styles[index[family] % len(styles)],
                label=f"{task} ({family})")
      index[family] += 1
    for family, colour in colours.items():
      values = [central[t][metric] for t in config.tasks
                if config.family(t) == family and metric in central.get(t, {})]
      if values:
        ax.axhline(max(values), color=colour, alpha=0.4, linewidth=1,
                   label=f"best centralized {family}")
    if metric in random_init:
      ax.axhline(random_init[metric], color="grey", linestyle=":",
                 label=RANDOM_INIT)
    ax.set_xlabel("round")
    ax.set_ylabel("keyword retrieval mAP" if metric == RETRIEVAL_METRIC
                  else f"{metric} probe accuracy")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize="x-small")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=110)


def run_fassl_benchmark(config: FasslConfig, *, show_progress: bool = True
                        ) -> FasslResult:
  """Runs every task federatedly and centrally; writes the report.

  Runs live in ``<out_dir>/runs/<task>_{federated,centralized}`` and are
  resumed or reused by a rerun (more ``rounds`` extends them).

  Args:
    config: What to run.
    show_progress: Show progress bars.

  Returns:
    The scores, best rounds, curves, winners and verdicts; also written to
    ``results.csv``, ``best_rounds.csv``, ``report.md`` and
    ``quality_vs_rounds.png`` in ``config.out_dir``.
  """
  start = time.time()
  frontend = config.spec(config.tasks[0]).frontend
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(config.corpus_path,
                                synthetic.CORPUS_PRESETS[config.corpus],
                                show_progress=show_progress),
      sample_rate=frontend.sample_rate, show_progress=show_progress)
  labels = usable_labels(table, seed=config.seed)
  runs_dir = os.path.join(config.out_dir, "runs")
  score = lambda encoder: score_encoder(encoder, table, waveforms, frontend,
                                        labels, seed=config.seed)

  random_encoder = Encoder(ENCODERS[config.encoder], seed=config.seed)
  rows = {RANDOM_INIT: score(random_encoder)}
  random_scores = evaluation.evaluate_encoder(random_encoder, table, waveforms,
                                              frontend, seed=config.seed)
  best, curves, central_scores, walls = {}, {}, {}, {}
  for task in config.tasks:
    run_dir = os.path.join(runs_dir, f"{task}_federated")
    result = run_simulation(config.simulation(task), table, waveforms,
                            run_dir, show_progress=show_progress)
    rows[_fed_row(task)] = score(load_model(result.model_dir).encoder)
    best[task] = result.best
    curves[task] = read_release_csv(os.path.join(run_dir, "eval.csv"))
    walls[_fed_row(task)] = result.totals["wall_s"]

    spec = config.spec(task)
    steps = max(1, round(result.totals["examples"] / config.batch_size))
    trained = train_centralized(
        spec, TrainConfig(steps=steps, batch_size=config.batch_size,
                          optimizer=config.centralized_optimizer,
                          learning_rate=config.centralized_learning_rate,
                          seed=config.seed),
        training_segments(waveforms, spec).waveforms,
        os.path.join(runs_dir, f"{task}_centralized"),
        dataset_info={"kind": "synthetic", "preset": config.corpus},
        show_progress=show_progress)
    rows[_central_row(task)] = score(trained.model.encoder)
    central_scores[task] = evaluation.evaluate_encoder(
        trained.model.encoder, table, waveforms, frontend, seed=config.seed)
    walls[_central_row(task)] = trained.wall_s

  columns = [c for label in labels for c in (probe_column(label),
                                             map_column(label))]
  winners = _winners(config, rows, columns)
  checks, check_lines = _checks(config, rows, columns, best)
  metrics = [m for m in (*labels, RETRIEVAL_METRIC)
             if any(m in r for rs in curves.values() for r in rs)]
  os.makedirs(config.out_dir, exist_ok=True)
  _plot(config, curves, central_scores, random_scores, metrics,
        os.path.join(config.out_dir, "quality_vs_rounds.png"))
  evaluation.write_csv(rows, os.path.join(config.out_dir, "results.csv"))
  evaluation.write_csv(
      {task: {f"{m} best": v for m, (_, v) in per.items()}
       | {f"{m} round": float(r) for m, (r, _) in per.items()}
       for task, per in best.items()},
      os.path.join(config.out_dir, "best_rounds.csv"))
  result = FasslResult(rows=rows, best=best, curves=curves, winners=winners,
                       checks=checks)
  with open(os.path.join(config.out_dir, "report.md"), "w") as f:
    f.write(_report(config, result, columns, check_lines, walls,
                    time.time() - start))
  return result


def _report(config: FasslConfig, result: FasslResult, columns: Sequence[str],
            check_lines: Sequence[str], walls: Mapping[str, float],
            wall_s: float) -> str:
  winner_lines = []
  for column in columns:
    parts = []
    for setting in ("federated", "centralized"):
      family, task = result.winners[(column, setting)]
      parts.append(f"{setting}: {family} (`{task}` "
                   f"{result.rows[f'{task} {setting}'][column]:.3f})")
    winner_lines.append(f"- `{column}`: " + "; ".join(parts))
  return "\n".join([
      f"# FASSL study: feature-matching vs. predictive SSL, federated vs. "
      f"centralized ({config.encoder} encoder, {config.corpus} corpus)", "",
      f"Feature-matching: {', '.join(config.feature_matching)}. Predictive: "
      f"{', '.join(config.predictive)}. Federated: {config.algorithm}, "
      f"natural partition (one client per speaker), {config.rounds} rounds x "
      f"{config.clients_per_round} sampled clients x <= "
      f"{config.max_local_steps} local SGD steps (lr "
      f"{config.client_learning_rate}) of batch {config.batch_size}. "
      f"Centralized: {config.centralized_optimizer} (lr "
      f"{config.centralized_learning_rate}) on the same training segments "
      f"for as many examples as the task's federated run saw. Columns: "
      f"linear-probe test accuracy (`<label> probe`; speakers unseen in "
      f"training except for `speaker`) and same-label retrieval mean average "
      f"precision over all labelled clips (`<label> mAP`), final models.", "",
      format_table(result.rows), "",
      "## Which family wins which task", "", *winner_lines, "",
      "## Targets", "", *check_lines, "",
      f"## Best global model per metric (federated, evaluated every "
      f"{config.eval_every} rounds; in `runs/<task>_federated/best/`)", "",
      _best_table(result.best), "",
      "![quality vs rounds](quality_vs_rounds.png)", "",
      "Training wall time per run: " + ", ".join(
          f"{name} {seconds:.0f} s" for name, seconds in walls.items())
      + f". Whole invocation: {wall_s:.0f} s.", "",
      "Reproduce (reuses finished runs):", "", command_line(config), "",
      "```json", json.dumps(dataclasses.asdict(config), indent=2), "```", ""])
