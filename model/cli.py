"""Shared set-up of the command-line launchers.

Every launcher (``*_main.py``, ``__main__.py``) reads: flags -> config ->
one library call -> report. The flags many launchers have (``--seed``,
``--batch_size``, ``--out_dir``, ``--corpus``, ...) are defined here once,
by name, help text and kind, with the default taken from the launcher's
config dataclass (:func:`define`, :func:`define_corpus`); :func:`run` is the
common tail: it parses the flags, and prints a user's mistake as one line
``error: ...`` on stderr with exit status 2 (flag values, configs that fail
validation, missing files or folders, :class:`model.errors.UserError`),
while unexpected errors keep their traceback.

Each launcher owns its flags: ``FLAGS = cli.launcher_flags()`` at the top of
the module, and every ``cli.define*`` / ``flags.DEFINE_*`` of the launcher
passes ``flag_values=FLAGS``; ``cli.run(main, FLAGS)`` parses ``sys.argv``
into it. Launchers share flag names (``--seed`` means the seed of whatever
that launcher runs), so on absl's one global ``FlagValues`` importing two of
them in one process raised ``DuplicateFlagError``. Of the two ways out, this
one was kept over defining the flags in a ``define_flags()`` function that
``run()`` calls first, because:

* the flags stay module-level ``FlagHolder`` constants (``_STEPS.value``),
  as in every absl program, and a launcher's ``config_from_flags()`` stays
  testable in-process: :func:`parse` a command line into ``FLAGS`` and call
  it, for any number of launchers in one process, repeatedly;
* with ``define_flags()`` two launchers still could not both be defined in
  one process, and the holders would have to travel as return values.

absl's own flags keep working: :func:`launcher_flags` registers the very
flag objects of ``absl.logging`` and ``absl.app`` (``--verbosity``,
``--logtostderr``, ``--only_check_args``, ...) in the launcher's
``FlagValues``, so parsing them there sets absl's global state as before;
``--help``/``--helpshort`` print the launcher's docstring and its own flags,
``--helpfull`` adds absl's, ``--helpxml`` writes all as XML.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from typing import Any, Callable, Mapping, Sequence, TypeVar

from absl import app
from absl import flags
from absl import logging

from model.errors import UserError

# Flags defined by the functions below belong to the launcher that calls them
# (its --helpshort lists them).
flags.disclaim_key_flags()

__all__ = [
    "SHARED_FLAGS", "SharedFlag", "UserError", "build_config",
    "FEDERATED_LOOP_FIELDS", "command_line", "define", "define_corpus",
    "define_dataset", "define_federated_loop", "launcher_flags", "parse",
    "print_report", "quiet_logging", "run", "run_study",
]

T = TypeVar("T")


def _encoders() -> list[str]:
  from model.encoders import ENCODERS  # pylint: disable=import-outside-toplevel
  return list(ENCODERS)


def _poolings() -> list[str]:
  from model.encoders import POOLINGS  # pylint: disable=import-outside-toplevel
  return list(POOLINGS)


def _tasks() -> list[str]:
  from model.tasks import SSL_TASKS  # pylint: disable=import-outside-toplevel
  return list(SSL_TASKS)


def _corpora() -> list[str]:
  from model.datasets.synthetic import CORPUS_PRESETS  # pylint: disable=import-outside-toplevel
  return list(CORPUS_PRESETS)


def _datasets() -> list[str]:
  from model.datasets.loaders import DATASETS  # pylint: disable=import-outside-toplevel
  return list(DATASETS)


#: absl's help flags; each launcher gets its own (they print its flags).
_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml")


class _HelpFlag(flags.BooleanFlag):
  """``--help``/``--helpshort`` (the launcher's flags), ``--helpfull`` (also
  absl's) or ``--helpxml``: prints the help of one launcher's ``FlagValues``
  to stdout and exits with status 1, as absl's own help flags do."""

  def __init__(self, name: str, text: str, flag_values: flags.FlagValues,
               doc: str | None, *, short_name: str | None = None):
    super().__init__(name, False, text, short_name=short_name,
                     allow_hide_cpp=True)
    self._flag_values = flag_values
    self._doc = doc

  def parse(self, argument):  # pylint: disable=missing-function-docstring
    if not self._parse(argument):
      return
    values = self._flag_values
    if self.name == "helpxml":
      values.write_help_in_xml_format(sys.stdout)
      sys.exit(1)
    if self.name == "helpfull":
      text = values.get_help()
    else:
      text = "\n\n".join(
          values.module_help(module) for module in
          values.flags_by_module_dict() if not module.startswith("absl."))
    sys.stdout.write(self._doc or f"\nUSAGE: {sys.argv[0]} [flags]\n")
    sys.stdout.write(f"\nflags:\n{text}\n")
    if self.name != "helpfull":
      sys.stdout.write("\nTry --helpfull to get a list of all flags.\n")
    sys.stdout.flush()
    sys.exit(1)


def launcher_flags() -> flags.FlagValues:
  """A new ``FlagValues`` for the calling launcher's flags.

  It already holds absl's flags (the same flag objects as absl's global
  ``FLAGS``: logging, ``absl.app``'s debugging flags) and help flags that
  print the launcher's module docstring with its flags.

  Returns:
    The ``FlagValues`` to pass as ``flag_values=`` to the launcher's flag
    definitions, and to :func:`run` / :func:`parse`.
  """
  doc = sys._getframe(1).f_globals.get("__doc__")  # pylint: disable=protected-access
  values = flags.FlagValues()
  for module, defined in flags.FLAGS.flags_by_module_dict().items():
    if not module.startswith("absl."):
      continue
    for flag in defined:
      if flag.name not in _HELP_FLAGS and flag.name not in values:
        flags.DEFINE_flag(flag, flag_values=values, module_name=module)
  for name, text, short_name in (
      ("help", "show this help", "?"), ("helpshort", "show this help", None),
      ("helpfull", "show full help", None),
      ("helpxml", "like --helpfull, but generates XML output", None)):
    flags.DEFINE_flag(_HelpFlag(name, text, values, doc,
                                short_name=short_name),
                      flag_values=values, module_name="absl.app")
  return values


@dataclasses.dataclass(frozen=True)
class SharedFlag:
  """One flag that several launchers define.

  Attributes:
    kind: ``integer``, ``float``, ``string``, ``bool``, ``list`` or ``enum``.
    help: Help text (a launcher may give its own where the meaning differs).
    choices: For ``enum``: the registry's keys, read when the flag is defined.
    bounds: ``lower_bound`` (and ``upper_bound``) of numeric flags.
  """
  kind: str
  help: str
  choices: Callable[[], list[str]] | None = None
  bounds: Mapping[str, float] = dataclasses.field(default_factory=dict)


#: The flags launchers share, by name. Defaults come from each launcher's
#: config dataclass (:func:`define`'s ``default``).
SHARED_FLAGS: Mapping[str, SharedFlag] = {
    "seed": SharedFlag("integer", "Seed of weights, data order and "
                       "partitions."),
    "batch_size": SharedFlag("integer", "Examples per step.",
                             bounds={"lower_bound": 1}),
    "out_dir": SharedFlag("string", "Output directory."),
    "corpus": SharedFlag("enum", "Built-in synthetic corpus preset.",
                         choices=_corpora),
    "corpus_dir": SharedFlag("string", "Corpus directory (default "
                             "<out_dir>/corpus)."),
    "dataset": SharedFlag("enum", "Layout of --data_dir.", choices=_datasets),
    "data_dir": SharedFlag("string", "Dataset folder (or CSV)."),
    "run_dir": SharedFlag("string", "Run directory; rerunning the same "
                          "command resumes from its last checkpoint."),
    "encoder": SharedFlag("enum", "Encoder preset.", choices=_encoders),
    "pooling": SharedFlag("enum", "Encoder pooling: global max, mean+std, "
                          "both.", choices=_poolings),
    "task": SharedFlag("enum", "Self-supervised task.", choices=_tasks),
    "steps": SharedFlag("integer", "Optimizer steps."),
    "learning_rate": SharedFlag("float", "Learning rate."),
    "segment_hop": SharedFlag("float", "Hop between SSL training segments, "
                              "in patches."),
    "min_clip_fraction": SharedFlag(
        "float", "Shortest SSL training clip, as a fraction of an example "
        "(shorter clips are skipped, longer ones shorter than an example "
        "zero-padded)."),
    "rounds": SharedFlag("integer", "Federated rounds.",
                         bounds={"lower_bound": 0}),
    "clients_per_round": SharedFlag("integer", "Clients sampled per round.",
                                    bounds={"lower_bound": 1}),
    "max_local_steps": SharedFlag("integer", "Cap on local steps per client "
                                  "and round (0: none).",
                                  bounds={"lower_bound": 0}),
    "client_learning_rate": SharedFlag("float", "Client SGD step size."),
    "eval_every": SharedFlag("integer", "Rounds between federated probes.",
                             bounds={"lower_bound": 1}),
    "num_workers": SharedFlag("integer", "TFF worker processes per "
                              "federated run.", bounds={"lower_bound": 1}),
    # Its choices come from export.runtime (model cannot import export).
    "runtime": SharedFlag("enum", "On-device runtime: LiteRT's "
                          "CompiledModel with XNNPACK, or tflite-runtime "
                          "2.14."),
}

_DEFINERS = {
    "integer": flags.DEFINE_integer, "float": flags.DEFINE_float,
    "string": flags.DEFINE_string, "bool": flags.DEFINE_bool,
    "list": flags.DEFINE_list,
}


def define(name: str, default: Any, *, flag_values: flags.FlagValues,
           help: str | None = None,  # pylint: disable=redefined-builtin
           choices: Sequence[str] | None = None,
           required: bool = False) -> flags.FlagHolder:
  """Defines the shared flag ``name`` with the launcher's default.

  Args:
    name: A key of :data:`SHARED_FLAGS`.
    default: The default, from the launcher's config dataclass (``None``
      for no default).
    flag_values: The launcher's flags (:func:`launcher_flags`).
    help: Replaces the shared help text where the flag means something
      narrower in this launcher.
    choices: Replaces the registry keys of an ``enum`` flag.
    required: The flag must be given.

  Returns:
    The flag's holder.

  Raises:
    KeyError: ``name`` is not a shared flag.
  """
  shared = SHARED_FLAGS[name]
  text = help or shared.help
  if shared.kind == "enum":
    if choices is None and shared.choices is None:
      raise ValueError(f"--{name}: pass its choices (the registry of the "
                       f"package that defines them)")
    return flags.DEFINE_enum(
        name, default, list(choices or shared.choices()), text,
        required=required, flag_values=flag_values)
  if shared.kind == "list" and default is not None:
    default = [str(value) for value in default]
  return _DEFINERS[shared.kind](name, default, text, required=required,
                                flag_values=flag_values, **shared.bounds)


def define_corpus(default: str, *, flag_values: flags.FlagValues
                  ) -> tuple[flags.FlagHolder, flags.FlagHolder]:
  """``--corpus`` (built-in preset) and ``--corpus_dir`` of the studies."""
  return (define("corpus", default, flag_values=flag_values),
          define("corpus_dir", None, flag_values=flag_values))


def define_dataset(*, flag_values: flags.FlagValues
                   ) -> tuple[flags.FlagHolder, flags.FlagHolder]:
  """``--dataset`` (layout) and the required ``--data_dir`` of a dataset on
  disk."""
  return (define("dataset", "synthetic", flag_values=flag_values),
          define("data_dir", None, required=True, flag_values=flag_values))


#: Fields of a federated study's loop, named as its config's fields.
FEDERATED_LOOP_FIELDS = ("rounds", "clients_per_round", "batch_size",
                         "max_local_steps", "client_learning_rate",
                         "eval_every")


def define_federated_loop(defaults: Any, *, flag_values: flags.FlagValues
                          ) -> Callable[[], dict[str, Any]]:
  """The flags of a federated study's loop (:data:`FEDERATED_LOOP_FIELDS`),
  defaults from the study's config.

  Args:
    defaults: The study's default config (has every field of
      :data:`FEDERATED_LOOP_FIELDS`).
    flag_values: The launcher's flags (:func:`launcher_flags`).

  Returns:
    A function that returns the parsed values by field name, for the
    config's constructor.
  """
  helps = {"batch_size": "Client and centralized batch size."}
  holders = {name: define(name, getattr(defaults, name), help=helps.get(name),
                         flag_values=flag_values)
             for name in FEDERATED_LOOP_FIELDS}
  return lambda: {name: holder.value for name, holder in holders.items()}


def quiet_logging() -> None:
  """Shows warnings and errors only, unless ``--verbosity`` was given.

  TensorFlow and TFF log every saved state and converted graph at INFO;
  progress bars already show what is happening.
  """
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel("ERROR")


def build_config(factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
  """Calls ``factory`` (a config dataclass or a function building one);
  a ``ValueError`` of its validation becomes a
  :class:`UserError`."""
  try:
    return factory(*args, **kwargs)
  except ValueError as e:
    if isinstance(e, UserError):
      raise
    raise UserError(str(e)) from e


def print_report(out_dir: str, name: str = "report.md") -> None:
  """Prints ``<out_dir>/<name>`` (a study's Markdown report)."""
  with open(os.path.join(out_dir, name), encoding="utf-8") as f:
    print(f.read())


#: Built-in errors that are a user's mistake wherever they are raised.
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError,
                   IsADirectoryError)


def _one_line(error: BaseException) -> str:
  """``error``'s message on one line (OS errors: reason: path)."""
  if isinstance(error, OSError) and error.filename and error.strerror:
    text = f"{error.strerror}: {error.filename}"
  else:
    text = str(error) or type(error).__name__
  return " ".join(text.split())


def _fail(error: BaseException | str) -> None:
  message = error if isinstance(error, str) else _one_line(error)
  sys.stdout.flush()
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  sys.exit(2)


def parse(flag_values: flags.FlagValues, argv: Sequence[str]) -> list[str]:
  """Parses a command line into a launcher's flags.

  Flags not on the command line get their defaults (also when the same
  ``flag_values`` was parsed before). A bad flag prints one line
  ``error: ...`` on stderr and exits with status 2.

  Args:
    flag_values: The launcher's flags (:func:`launcher_flags`).
    argv: The program name, then the arguments.

  Returns:
    The program name and the arguments that are not flags.
  """
  if flag_values.is_parsed():
    flag_values.unparse_flags()
  try:
    rest = flag_values(list(argv))
  except flags.Error as e:
    _fail(e)
    raise  # not reached
  # absl.app reads its own flags (parsed above: the same flag objects)
  # through the global FLAGS.
  flags.FLAGS.mark_as_parsed()
  return rest


def run(main: Callable[[], Any], flag_values: flags.FlagValues, *,
        user_errors: tuple[type[BaseException], ...] = (),
        quiet: bool = True) -> None:
  """Runs a launcher: parses flags, calls ``main()``, reports user errors.

  A bad flag, positional arguments, ``app.UsageError``,
  :class:`UserError`, a missing file or folder, an existing output that
  may not be replaced, or any of ``user_errors`` prints one line
  ``error: <message>`` to stderr and exits with status 2. Anything else
  propagates with its traceback.

  Args:
    main: The launcher's body (reads the parsed flags).
    flag_values: The launcher's flags (:func:`launcher_flags`).
    user_errors: Further exception types that mean wrong input here.
    quiet: Call :func:`quiet_logging` first (imports TensorFlow).
  """
  caught = (UserError, app.UsageError, *_USER_OS_ERRORS, *user_errors)

  def wrapped(argv: list[str]) -> None:
    try:
      if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; every option is "
                        f"a --flag (see --helpshort)")
      if quiet:
        quiet_logging()
      main()
    except caught as e:
      _fail(e)

  app.run(wrapped, flags_parser=lambda argv: parse(flag_values, argv))


def run_study(config_from_flags: Callable[[], Any],
              run_fn: Callable[[Any], Any], flag_values: flags.FlagValues,
              **kwargs: Any) -> None:
  """:func:`run` of a study: flags -> config -> ``run_fn(config)`` -> prints
  ``<config.out_dir>/report.md``.

  Args:
    config_from_flags: Builds the study's config from the parsed flags
      (its validation errors are user errors).
    run_fn: The study (writes ``report.md`` into ``config.out_dir``).
    flag_values: The launcher's flags (:func:`launcher_flags`).
    **kwargs: Passed to :func:`run`.
  """

  def main() -> None:
    config = build_config(config_from_flags)
    run_fn(config)
    print_report(config.out_dir)

  run(main, flag_values, **kwargs)


def command_line(launcher: str, values: Mapping[str, Any]) -> str:
  """The command that reproduces a config whose flags are named like fields.

  Args:
    launcher: E.g. ``"python -m benchmarks.quality_main"``.
    values: Flag name -> value (``None`` left out, tuples comma-joined).

  Returns:
    A shell-quoted command line.
  """
  args = []
  for name, value in values.items():
    if value is None:
      continue
    if isinstance(value, tuple):
      value = ",".join(map(str, value))
    args.append(shlex.quote(f"--{name}={value}"))
  return " ".join([launcher, *args])
