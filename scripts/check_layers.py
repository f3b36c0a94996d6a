#!/usr/bin/env python3
"""Fails when a lower layer of loom includes a higher one (docs/architecture.md).

Every file under src/loom/<module>/ and include/loom/<module>/ belongs to <module>; its
`#include "loom/<other>/..."` lines are arrows. An arrow may point to the same module
or to a module of a lower layer; an arrow to a module of the same layer must be listed
in SIDEWAYS. And the installed API stays closed: a header under include/loom/ (installed)
may include only headers that are installed too (private ones live in src/loom/).
Run by `make test`; exits 1 naming every arrow that runs the wrong way.
"""
import pathlib
import re
import sys

# The layers, lowest first. The CLI (tools/loom) sits above them all.
LAYERS = [
    ["core"],                                              # errors, logs, options, files
    ["trace", "optim", "comm", "data", "models", "launch"],  # services the blocks share
    ["dp", "ps", "pipeline", "hybrid"],                    # the building blocks
    ["strategies"],                                        # the five strategies, one factory
    ["plan"],                                              # the planner: profiles, cost model
    ["train"],                                             # the Trainer and the CLI's config
]
# Arrows between modules of one layer that are part of the design.
SIDEWAYS = set()

LEVEL = {m: i for i, layer in enumerate(LAYERS) for m in layer}
INCLUDE = re.compile(r'^\s*#\s*include\s+"loom/([a-z_]+)/')
INCLUDE_PATH = re.compile(r'^\s*#\s*include\s+"(loom/[^"]+)"')


def module_of(path, root):
    rel = path.relative_to(root).parts
    if rel[:2] in (("src", "loom"), ("include", "loom")) and len(rel) > 3:
        return rel[2]
    return None


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    problems = []
    files = sorted(p for d in ("src/loom", "include/loom") for p in (root / d).rglob("*") if p.suffix in (".h", ".cpp"))
    for path in files:
        mod = module_of(path, root)
        if mod not in LEVEL:
            problems.append(f"{path.relative_to(root)}: module '{mod}' is in no layer of scripts/check_layers.py")
            continue
        public = path.relative_to(root).parts[0] == "include"
        for n, line in enumerate(path.read_text().splitlines(), 1):
            full = INCLUDE_PATH.match(line)
            if public and full and not (root / "include" / full.group(1)).exists():
                problems.append(f"{path.relative_to(root)}:{n}: an installed header includes {full.group(1)}, "
                                f"which is not installed (move it to include/loom/ or stop including it)")
            m = INCLUDE.match(line)
            if not m or m.group(1) == mod:
                continue
            target = m.group(1)
            if target not in LEVEL:
                problems.append(f"{path.relative_to(root)}:{n}: includes unknown module '{target}'")
            elif LEVEL[target] > LEVEL[mod]:
                problems.append(f"{path.relative_to(root)}:{n}: {mod} (layer {LEVEL[mod]}) includes {target} "
                                f"(layer {LEVEL[target]}): an arrow going up")
            elif LEVEL[target] == LEVEL[mod] and (mod, target) not in SIDEWAYS:
                problems.append(f"{path.relative_to(root)}:{n}: {mod} includes {target}, a module of its own layer "
                                f"(not in SIDEWAYS)")
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} arrow(s) break the layering (docs/architecture.md)")
        return 1
    print(f"check_layers: {len(files)} files, every include points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
