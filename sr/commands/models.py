"""List the bundled models, the zoo's official files (filtered by task, family, scale or what is downloaded)
and the supported network families; download zoo models ahead of use."""

from __future__ import annotations

import argparse

from sr.commands.common import error

HELP = "list or download models (bundled and zoo) and list network families"
EXAMPLES = """examples:
  sr models                                   # everything
  sr models --task denoise                    # the denoising models
  sr models --family HAT --scale 4
  sr models --downloaded                      # what is in the cache already
  sr models --download SwinIR-M-x4-DF2K HAT-S-x4"""

BUNDLED_TEXT = {
    "default": "PAN x4 super-resolution (used by `sr upscale` without -m)",
    "realworld": "PAN x4 for real photos: blur, noise, JPEG (`sr upscale -m realworld`)",
    "denoise": "RCAN x1 colour denoising, any noise level up to 50 (`sr restore --task denoise`)",
    "jpeg": "RCAN x1 colour JPEG artifact removal, any quality from 10 (`sr restore --task jpeg`)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sr.zoo import TASKS

    parser.add_argument("--task", choices=tuple(TASKS), help="only models for this task")
    parser.add_argument("--family", help="only this network family (e.g. SwinIR)")
    parser.add_argument("--scale", type=int, help="only models of this scale (1 for restoration)")
    parser.add_argument("--downloaded", action="store_true", help="only zoo models already in the cache")
    parser.add_argument(
        "--download", nargs="+", metavar="NAME", help="download (and verify) these zoo models"
    )


def run(args: argparse.Namespace) -> int:
    if args.download:
        return _download(args.download)
    _list(args)
    return 0


def _download(names: list[str]) -> int:
    from sr import zoo
    from sr.loading import ModelLoadError, load_model

    failures = 0
    for name in names:
        entry = zoo.lookup(name)
        if entry is None:
            error(f"{name}: not a zoo model (see `sr models`)")
            failures += 1
            continue
        try:
            net = load_model(entry.name)  # downloads, checks the hash, or checks and trusts on first use
        except ModelLoadError as problem:
            error(str(problem))
            failures += 1
            continue
        print(f"{entry.name}: {entry.path} ({net.family} x{net.scale}, verified)")
    return 0 if failures == 0 else 1


def _list(args: argparse.Namespace) -> None:
    import archs
    from sr import zoo
    from sr.loading import BUNDLED, WEIGHTS_DIR

    selected = [
        e
        for e in zoo.ZOO.values()
        if (args.task is None or e.task == args.task)
        and (args.family is None or e.family.lower() == args.family.lower())
        and (args.scale is None or e.scale == args.scale)
        and (not args.downloaded or zoo.is_cached(e))
    ]
    if not (args.task or args.family or args.scale or args.downloaded):
        print("Bundled models, trained by this project (use with -m NAME):")
        for name, filename in BUNDLED.items():
            state = "" if (WEIGHTS_DIR / filename).is_file() else "  (missing: reinstall sr)"
            print(f"  {name:<10} {BUNDLED_TEXT[name]}{state}")
    print(
        f"Zoo models: {len(selected)} of {len(zoo.ZOO)} official files (use with -m NAME; downloaded once, "
        f"verified, cached in {zoo.models_dir()}):"
    )
    for entry in selected:
        print(f"  {entry.name:<28} {_state(entry):<11} {_describe(entry)}")
    if not (args.task or args.family or args.scale or args.downloaded):
        print("Network families (detected automatically from any weight file):")
        for family in archs.FAMILIES:
            scales = "/".join(f"x{s}" for s in family.scales)
            print(f"  {family.name:<12} {scales}")


def _state(entry) -> str:
    from sr import zoo

    if zoo.is_cached(entry):
        return "cached"
    if entry.unsupported:
        return "unsupported"
    return "download" if entry.urls else "by hand"


def _describe(entry) -> str:
    from sr import zoo

    size = f", {entry.bytes / 1e6:.0f} MB" if entry.bytes else ""
    licence = entry.licence or "licence not stated"
    if entry.non_commercial:
        licence += " (NON-COMMERCIAL use only)"
    text = f"{entry.family} {zoo.TASKS[entry.task]} x{entry.scale}{size}, {licence}: {entry.description}"
    if entry.unsupported:
        text += f" [{entry.unsupported}]"
    elif not entry.urls:
        text += f" [fetch {entry.filename} from {entry.page}]"
    return text
