"""`jessl train`: the command line over `jessl.config` and `jessl.train.trainer.train`.

    jessl train --config x.yaml --train train.jessl --val val.jessl --method simclr --epochs 2 \\
        --optim.lr 0.5 --method.temperature 0.2 model.backbone=small_cnn

Any config field can be set as `--section.field VALUE` (or `--section.field=VALUE`), or as
`section.field=VALUE` at the end of the line; values are typed by the config's dataclasses.
`jessl train --method NAME --help` lists that method's own options with their defaults, and
its recipe: the paper's optimizer settings, used for every key the command line and the config
file leave unset.
A config that cannot run prints one `jessl: error: ...` line and exits with status 2 before
any work starts.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from jessl.config import SECTIONS, ConfigError, RunConfig, load_config
from jessl.errors import USER_ERRORS, print_error
from jessl.flags import add_flags, field_default, field_docs, metavar

# the short flags most runs need -> the config field they set
SHORTCUTS = {
    "train": ("data.train", "FILE", "dataset file to pretrain on (data.train)"),
    "val": ("data.val", "FILE", "dataset file for the probe accuracy and kNN (data.val)"),
    "method": ("method.name", "NAME", "SSL method (method.name)"),
    "backbone": ("model.backbone", "NAME", "backbone (model.backbone)"),
    "epochs": ("train.epochs", "N", "epochs (train.epochs)"),
    "batch_size": ("data.batch_size", "N", "global batch size (data.batch_size)"),
    "lr": ("optim.lr", "LR", "learning rate per 256 images (optim.lr)"),
    "out": ("train.out", "DIR", "run folder (train.out)"),
    "resume": ("train.resume", "PATH|auto", "continue from a checkpoint (train.resume)"),
    "seed": ("train.seed", "N", "seed (train.seed)"),
    "threads": ("train.threads", "N", "torch threads, 0 = all cores (train.threads)"),
}
_SET = "set:"  # argparse dest prefix of the dotted options


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `jessl train` on an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "train", add_help=False, help="pretrain a backbone with an SSL method",
        description=__doc__.split("\n\n")[0] + " Every config field is an option below.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Overrides may also be written section.field=VALUE after the options. "
               "The defaults above are RunConfig's; a method's recipe replaces them for the "
               "keys you leave unset. `jessl train --method NAME --help` adds the method's "
               "own options and its recipe.")
    p.add_argument("-h", "--help", action="store_true", help="show this help (with --method "
                   "NAME: that method's options too) and exit")
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML config; options override it")
    for flag, (key, metavar, text) in SHORTCUTS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=_SET + key, metavar=metavar,
                       default=argparse.SUPPRESS, help=text)
    for section, cls in SECTIONS.items():
        group = p.add_argument_group(f"{section} options")
        add_flags(group, cls, names={f.name for f in fields(cls)} - {"options"}, typed=False,
                  flag=lambda name, s=section: f"--{s}.{name}",
                  dest=lambda name, s=section: f"{_SET}{s}.{name}")
        if section == "method":
            for name in _method_option_names():
                group.add_argument(f"--method.{name}", dest=_SET + f"method.{name}",
                                   metavar="V", default=argparse.SUPPRESS,
                                   help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", metavar="section.field=VALUE",
                   help=argparse.SUPPRESS)
    p.set_defaults(run=run, train_parser=p)
    p.error = _one_line_error  # a bad option value: one line and status 2, as a bad config
    return p


def _one_line_error(message: str):
    print_error(message)
    sys.exit(2)


def run(args) -> int:
    """The `jessl train` action: help, or config -> validate -> train."""
    if args.help:
        print(args.train_parser.format_help())
        print(method_help(_method_name(args)))
        return 0
    from jessl import distributed
    # under torchrun (RANK, WORLD_SIZE, MASTER_ADDR in the environment) join the process group
    # first: validate() checks the batch against the number of processes
    joined = distributed.init_from_env()
    is_main = distributed.rank() == 0
    try:
        try:
            cfg = config_from_args(args)
            from jessl.train.trainer import train
            # validates the config, then its files, then checks the data can train a model,
            # all before it writes
            metrics = train(cfg)
        except USER_ERRORS as err:  # a bad config, file or checkpoint
            if is_main:
                print_error(err)
            return 2 if isinstance(err, ConfigError) else 1
    finally:
        if joined:
            distributed.shutdown()
    if not is_main:
        return 0
    print(f"run folder: {cfg.train.out}")
    shown = {k: v for k, v in metrics.items() if k in ("loss", "probe/backbone_val_top1",
                                                       "knn_top1", "knn_top1_random_init",
                                                       "rankme")}
    if shown:
        print("final: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    return 0


def config_from_args(args) -> RunConfig:
    """--config, then shortcut and dotted options, then trailing key=value overrides."""
    overrides = []
    for dest, value in vars(args).items():
        if dest.startswith(_SET):
            overrides += [f"--{dest[len(_SET):]}", value]
    for item in args.overrides or []:
        if "=" not in item:
            raise ConfigError(f"unexpected argument {item!r}: overrides are section.field=VALUE")
        overrides.append(item)
    return load_config(args.config, overrides)


def main(argv=None) -> int:
    """`jessl train ...` without the rest of the CLI: main(["--train", "x.jessl", ...])."""
    parser = argparse.ArgumentParser(prog="jessl")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return args.run(args)


# --- help text --------------------------------------------------------------------------

def method_help(name: str) -> str:
    """The options of method `name` with their defaults and the comments that source them."""
    from jessl.methods import METHODS
    if name not in METHODS:
        return f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}"
    cls = METHODS[name]
    lines = [f"{name} options (--method.FIELD VALUE), view preset {cls.views!r}, projector "
             f"{getattr(cls, 'default_projector', '') or 'none'!r}:"]
    opts = getattr(cls, "options", None)
    if opts is None or not fields(opts):
        lines.append("  (none)")
    else:
        docs = field_docs(opts)
        for f in fields(opts):
            lines.append(f"  --method.{f.name} {metavar(f)}  (default {field_default(f)!r})"
                         + (f"  {docs[f.name]}" if docs.get(f.name) else ""))
    recipe = cls.recipe_for(opts() if opts is not None else None)
    lines.append(f"{name} recipe (the paper's settings, for every key you leave unset; "
                 f"otherwise RunConfig's defaults above):")
    lines += [f"  --{key} {value!r}  {source}" for key, (value, source) in recipe.items()]
    if not recipe:
        lines.append("  (none: RunConfig's defaults)")
    return "\n".join(lines)


def _method_name(args) -> str:
    name = vars(args).get(_SET + "method.name")
    if name:
        return name
    try:
        return config_from_args(args).method.name
    except ConfigError:
        return RunConfig().method.name


def _method_option_names() -> list[str]:
    try:
        from jessl.methods import METHODS
    except ImportError:
        return []
    names = set()
    for cls in METHODS.values():
        if getattr(cls, "options", None) is not None:
            names.update(f.name for f in fields(cls.options))
    return sorted(names - {"name"})
