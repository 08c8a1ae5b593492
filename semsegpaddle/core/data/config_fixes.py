"""The config fixes ``semseg check-data --write-config`` infers from a scan, and the YAML it writes.

Pure: the scan (a :class:`~semsegpaddle.core.data.check.DataReport` with its per-split
:class:`~semsegpaddle.core.data.check.SplitStats`) and the dataset's options go in;
:func:`infer_fixes` gives :class:`Fix` objects (key, value, reason) and, where the data leaves
the answer open, :class:`Question` objects (the choice, and the config line of each answer);
:func:`render_config` turns them into YAML text with a comment on every line. Nothing here reads
or writes a file.

What is inferred:

- class-id masks read as they are (no label option set): 0/255 binary masks -> ``label_map:
  {255: 1}``; values that only ever form thin rims above the class ids (e.g. 254 painted along
  object borders) -> ``label_map: {254: <ignore_index>}``; ids one above ``num_classes``, or
  ids starting at 1 -> ``reduce_zero_label: true``;
- colour masks -> ``color_masks: true``, the ``palette`` (colours in a stable order: those of the
  PASCAL VOC palette by their index there, then the others by RGB value), colours that only form
  thin rims and are no palette colour -> ``ignore_colors``;
- ``num_classes`` when the dataset needs it and it was not set, and placeholder ``class_names``
  when the dataset has none;
- ``model.mean`` / ``model.std``: per channel over the training split's images (0-255), one per band
  of ``model.in_channels``.

Not guessed: ids 0..k without an ignore value and no class count (is 0 a class or unlabelled?),
ids with gaps, values far above the classes, masks smeared by JPEG or interpolation, more or
fewer colours than classes. These become questions: the written file leaves the line out and
says why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.data.base import default_palette

Colour = tuple[int, int, int]
#: more values than this that only form thin structures means smeared masks, not rims
MAX_RIM_VALUES = 8
#: the colours of the PASCAL VOC palette that mean classes (its colour 255, (224, 224, 192), is VOC's "void")
VOC_CLASS_COLOURS: dict[Colour, int] = {
    tuple(int(v) for v in colour): index for index, colour in enumerate(default_palette(255))  # type: ignore[misc]
}
VALUES_SHOWN = 8
#: the order of the written lines (keys not listed come after, in the order found)
KEY_ORDER = ["dataset.num_classes", "dataset.label_map", "dataset.reduce_zero_label", "dataset.color_masks",
             "dataset.palette", "dataset.ignore_colors", "dataset.class_names", "model.mean", "model.std"]


@dataclass(frozen=True)
class Fix:
    """One config line the data calls for: the dotted key, its value and why."""

    key: str
    value: Any
    reason: str
    #: one note per item of a list value (the list is then written one item per line)
    items: tuple[str, ...] = ()

    def line(self) -> str:
        """``key=value`` as it would be given on the command line."""
        return f"{self.key}={flow(self.value)}"


@dataclass(frozen=True)
class Question:
    """A line the data leaves open: what is unclear, and per answer its meaning and config line(s)."""

    key: str
    text: str
    answers: tuple[tuple[str, str], ...] = ()


@dataclass
class Inference:
    """What :func:`infer_fixes` found."""

    fixes: list[Fix] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)

    def get(self, key: str) -> Fix | None:
        """The fix of ``key``, if any."""
        return next((f for f in self.fixes if f.key == key), None)

    def text(self, path: str, base: str) -> str:
        """What the CLI prints after writing ``path``: the fixes, then the questions."""
        lines = [f"config written to {path} (inherits {base}); "
                 + (f"{len(self.fixes)} fix(es):" if self.fixes else "no fix inferred")]
        lines += [f"  {fix.line()}  ({fix.reason})" for fix in self.fixes]
        for question in self.questions:
            lines.append(f"QUESTION {question.key} (left out of {path}): {question.text}")
            lines += [f"  {meaning}: {config_line}" for meaning, config_line in question.answers]
        if self.questions:
            lines.append(f"  answer by adding the line to {path}, or by giving it on the command line")
        lines.append(f"{'then ' if self.questions else ''}check it: semseg check-data {path}")
        return "\n".join(lines)


@dataclass(frozen=True)
class WrittenConfig:
    """A config file ``--write-config`` wrote: where, what it inherits, what it fixes and asks."""

    path: Any
    base: str
    inference: Inference

    def text(self) -> str:
        """What the CLI prints about it."""
        return self.inference.text(str(self.path), self.base)


@dataclass
class _Seen:
    """The stats of every split checked, added up."""

    values: dict[int, int] = field(default_factory=dict)
    region_values: set[int] = field(default_factory=set)
    colours: dict[Colour, int] = field(default_factory=dict)
    region_colours: set[Colour] = field(default_factory=set)
    colour_masks: int = 0
    crowded_masks: int = 0
    jpeg_masks: int = 0

    @property
    def thin_values(self) -> set[int]:
        return set(self.values) - self.region_values

    @property
    def thin_colours(self) -> set[Colour]:
        return set(self.colours) - self.region_colours


# -------------------------------------------------------------------------------------------------
# inference
# -------------------------------------------------------------------------------------------------


def infer_fixes(report: Any, dataset: Mapping[str, Any], *, train_split: str, pretrained: str | None = None
                ) -> Inference:
    """The fixes and questions a check-data ``report`` supports, for the validated ``dataset``
    section (its ``num_classes`` counts only when ``report.num_classes_known``).

    ``train_split`` names the split whose images give ``model.mean`` / ``model.std`` (left out,
    with a question, when the config starts from ``pretrained`` weights). Placeholder class names
    are written when neither the config nor the dataset names the classes.
    """
    seen = _add_up(report.stats.values())
    out = Inference()
    if report.splits:  # the dataset's own label space (a dataset may fix it without options)
        dataset = {**dataset, "num_classes": report.splits[0].num_classes,
                   "ignore_index": report.splits[0].ignore_index}
    named = dataset.get("class_names") or dataset.get("palette")
    known = report.num_classes_known or named
    classes: int | None = int(dataset["num_classes"]) if known and "num_classes" in dataset else None
    if not report.num_classes_known and classes is not None:
        option = "class_names" if dataset.get("class_names") else "palette"
        out.fixes.append(Fix("dataset.num_classes", classes, f"one class per entry of dataset.{option}"))
    if seen.colour_masks:
        names = _colour_fixes(seen, dataset, classes, not report.num_classes_known and classes is None, out)
    elif seen.values:
        names = _id_fixes(seen, dataset, classes, not report.num_classes_known and classes is None, out)
    else:
        names = None
    if names is not None and not dataset.get("class_names") and not any(s.class_names for s in report.splits):
        labels, notes = names
        out.fixes.append(Fix("dataset.class_names", labels, "placeholder names (the dataset has none): "
                             "put yours here, one per class id", tuple(notes)))
    _normalisation(report.stats.get(train_split), train_split, pretrained, out)
    out.fixes.sort(key=lambda fix: KEY_ORDER.index(fix.key) if fix.key in KEY_ORDER else len(KEY_ORDER))
    return out


def _add_up(stats: Any) -> _Seen:
    seen = _Seen()
    for split in stats:
        for value, count in split.values.items():
            seen.values[value] = seen.values.get(value, 0) + count
        for colour, count in split.colours.items():
            seen.colours[colour] = seen.colours.get(colour, 0) + count
        seen.region_values |= split.region_values
        seen.region_colours |= split.region_colours
        seen.colour_masks += split.colour_masks
        seen.crowded_masks += split.crowded_masks
        seen.jpeg_masks += split.jpeg_masks
    seen.values = dict(sorted(seen.values.items()))
    return seen


def _id_fixes(seen: _Seen, dataset: Mapping[str, Any], classes: int | None, count_wanted: bool,
              out: Inference) -> tuple[list[str], list[str]] | None:
    """Fixes for class-id masks; returns placeholder class names and their notes once the count is known."""
    values, ignore = seen.values, int(dataset.get("ignore_index", 255))
    present = set(values)
    if dataset.get("label_map") or dataset.get("reduce_zero_label") or dataset.get("color_masks"):
        if count_wanted:
            out.questions.append(Question("dataset.num_classes", "the label options already set change the mask "
                                          f"values ({_counts(values)}); set the class count they give"))
        return ([f"class_{i}" for i in range(classes)], [""] * classes) if classes else None
    thin = seen.thin_values
    if seen.jpeg_masks or seen.crowded_masks or len(thin - {ignore}) > MAX_RIM_VALUES:
        out.questions.append(Question("dataset.label_map", f"the masks hold {len(values)} distinct values, "
                                      "smeared by lossy (JPEG) saving or by resizing with interpolation; no config "
                                      "line undoes that: save the masks as PNG, resized with nearest-neighbour only"))
        return None
    if present == {0, 255}:
        return _binary(values, ignore, classes, count_wanted, thin, out)
    regions = present - thin - {ignore}
    top = max(regions, default=-1)
    rims = sorted(v for v in thin - {ignore} if v > top + 1 and (classes is None or v >= classes))
    label_map = {v: ignore for v in rims}
    if rims:
        out.fixes.append(Fix("dataset.label_map", label_map, f"{_counts(values, rims)}: only in thin rims (never "
                             f"filling a 7×7 square), e.g. unlabelled object borders, so they become "
                             f"ignore_index {ignore}"))
    ids = sorted(present - {ignore} - set(rims))
    if not ids:
        if count_wanted:
            out.questions.append(Question("dataset.num_classes", f"the masks hold no class ids ({_counts(values)})"))
        return None
    low, high = ids[0], ids[-1]
    consecutive = ids == list(range(low, high + 1))
    if classes is not None:
        return _against_count(values, ids, classes, ignore, label_map, out)
    if consecutive and low == 0 and (high == 1 or ignore in present or rims):
        if ignore in present or rims:
            unlabelled = f"unlabelled pixels are marked {ignore if ignore in present else rims[0]}"
        else:
            unlabelled = "0/1 masks: 0 cannot be 'unlabelled', one class alone cannot be trained"
        out.fixes.append(Fix("dataset.num_classes", high + 1, f"ids 0..{high} are the classes ({unlabelled}); "
                             f"{_counts(values, ids)}"))
        return _names(high + 1, values, lambda v: label_map.get(v, v))
    if consecutive and low == 0:
        out.questions.append(Question(
            "dataset.num_classes",
            f"the masks hold the ids 0..{high} ({_counts(values)}) and no value for unlabelled pixels: "
            f"is 0 a class, or unlabelled?",
            (("0 is a class", f"dataset.num_classes={high + 1}"),
             (f"0 is unlabelled (ids 1..{high} are the classes)",
              f"dataset.num_classes={high} dataset.reduce_zero_label=true"))))
        return None
    if consecutive and low == 1 and high > 1:
        out.fixes.append(Fix("dataset.num_classes", high, f"ids 1..{high} are the classes; {_counts(values, ids)}"))
        out.fixes.append(Fix("dataset.reduce_zero_label", True, f"no pixel is 0: ids start at 1 (1 -> class 0, ..., "
                             f"{high} -> class {high - 1}); if a class 0 exists but is absent here, write "
                             f"num_classes: {high + 1} instead of this line"))
        return _names(high, values, lambda v: v - 1 if v else ignore)
    renumber = {v: i for i, v in enumerate(ids) if v != i}
    out.questions.append(Question(
        "dataset.num_classes",
        f"the masks hold the ids {_counts(values, ids)}, not 0, 1, 2, ... in a row: are the missing ids classes "
        f"absent from these masks, or should the ids be renumbered?",
        (("the ids are the classes", f"dataset.num_classes={high + 1}"),
         (f"renumber the {len(ids)} ids found", f"dataset.num_classes={len(ids)} "
                                                f"dataset.label_map={flow({**label_map, **renumber})}"))))
    return None


def _binary(values: dict[int, int], ignore: int, classes: int | None, count_wanted: bool, thin: set[int],
            out: Inference) -> tuple[list[str], list[str]] | None:
    """0/255 masks: 255 is the foreground, even when it only forms thin lines (cracks, edges)."""
    if classes is not None and classes < 2:
        answer = ("background and foreground", "dataset.num_classes=2 dataset.label_map={255: 1}")
        out.questions.append(Question("dataset.num_classes", f"0/255 masks ({_counts(values)}) need 2 classes, "
                                      f"num_classes is {classes}", (answer,)))
        return None
    thin_note = ", thin structures such as cracks or edges" if 255 in thin else ""
    out.fixes.append(Fix("dataset.label_map", {255: 1}, f"0/255 binary masks ({_counts(values)}): 255 is the "
                         f"foreground{thin_note} (class 1), not 'unlabelled'"
                         + ("" if ignore == 255 else f" (ignore_index is {ignore})")))
    if count_wanted:
        out.fixes.append(Fix("dataset.num_classes", 2, "0/255 binary masks: background (0) and foreground (255)"))
    count = classes or 2
    labels = ["background", "foreground", *(f"class_{i}" for i in range(2, count))]
    notes = [f"value 0: {values[0]:,} px", f"value 255: {values[255]:,} px", *("absent" for _ in range(2, count))]
    return labels, notes


def _against_count(values: dict[int, int], ids: list[int], classes: int, ignore: int, label_map: dict[int, int],
                   out: Inference) -> tuple[list[str], list[str]] | None:
    """Ids checked against a stated class count."""
    high = ids[-1]
    if high < classes:
        return _names(classes, values, lambda v: label_map.get(v, v))
    if high == classes and set(ids) <= set(range(classes + 1)):
        if 0 in ids:
            reason = (f"the ids run 0..{classes}, one more than num_classes={classes}: 0 is 'unlabelled' (ADE20K's "
                      f"convention), 1..{classes} become classes 0..{classes - 1}; if 0 is a class, write "
                      f"num_classes: {classes + 1} instead of this line; {_counts(values, ids)}")
        else:
            reason = f"the ids run 1..{classes}: 1-based, 1..{classes} become classes 0..{classes - 1}; " \
                     f"{_counts(values, ids)}"
        out.fixes.append(Fix("dataset.reduce_zero_label", True, reason))
        return _names(classes, values, lambda v: ignore if label_map.get(v, v) in (0, ignore) else v - 1)
    above = [v for v in ids if v >= classes]
    out.questions.append(Question(
        "dataset.label_map",
        f"the values {_counts(values, above)} lie above the classes 0..{classes - 1}: are they classes, or marks "
        f"of pixels to ignore?",
        (("they are classes", f"dataset.num_classes={high + 1}"),
         ("they mark pixels to ignore", f"dataset.label_map={flow({**label_map, **{v: ignore for v in above}})}"))))
    return None


def _names(count: int, values: dict[int, int], to_class: Callable[[int], int]) -> tuple[list[str], list[str]]:
    """Placeholder names class_0.. and, per class, the mask values read as it with their pixels."""
    per_class: dict[int, list[str]] = {}
    for value, pixels in values.items():
        per_class.setdefault(to_class(value), []).append(f"value {value}: {pixels:,} px")
    return [f"class_{i}" for i in range(count)], ["; ".join(per_class.get(i, ["absent"])) for i in range(count)]


def _colour_fixes(seen: _Seen, dataset: Mapping[str, Any], classes: int | None, count_wanted: bool,
                  out: Inference) -> tuple[list[str], list[str]] | None:
    """Fixes for colour masks; returns placeholder class names and their notes once the palette is known."""
    colours, thin = seen.colours, seen.thin_colours
    if "color_masks" not in dataset:
        out.questions.append(Question("dataset.color_masks", f"{seen.colour_masks} masks are colour images, and "
                                      f"dataset '{dataset.get('name')}' reads only class ids: save them as ids"))
        return None
    if not dataset.get("color_masks"):
        out.fixes.append(Fix("dataset.color_masks", True, f"{seen.colour_masks} masks are colour images "
                             f"({len(colours)} colours): read them through the palette"))
    ignored = {tuple(c) for c in dataset.get("ignore_colors") or ()}
    rest = sorted(set(colours) - ignored)
    given = [tuple(c) for c in dataset.get("palette") or ()]
    if given:
        return _against_palette(colours, thin, given, ignored, out)
    default = [tuple(int(v) for v in c) for c in default_palette(classes)] if classes else []
    if classes is not None and (set(rest) <= set(default) or len(rest) == classes):
        palette = default if set(rest) <= set(default) else _stable(rest)
        how = "the PASCAL VOC colours of its classes" if palette == default else "every colour found"
        return _palette_fix(palette, colours, f"{how}, in a stable order", [], out)
    rims = sorted(c for c in set(rest) & thin if c not in (default if classes else VOC_CLASS_COLOURS))
    kept = [c for c in rest if c not in rims]
    if classes is not None and not (set(kept) <= set(default) or len(kept) == classes):
        out.questions.append(Question(
            "dataset.palette",
            f"the masks hold {len(kept)} class colours ({_colour_counts(colours, kept)}) for num_classes={classes}",
            ((f"{len(kept)} classes", f"dataset.num_classes={len(kept)} dataset.palette={flow(_stable(kept))}"),)))
        return None
    if classes is None and len(kept) < 2:
        out.questions.append(Question("dataset.num_classes", f"the masks hold {len(kept)} class colour(s) "
                                      f"({_colour_counts(colours, kept)}); a model needs at least two classes"))
        return None
    palette = default if classes is not None and set(kept) <= set(default) else _stable(kept)
    if count_wanted:
        out.fixes.append(Fix("dataset.num_classes", len(palette), f"{len(palette)} class colours in the masks"
                             + (f" (and {len(rims)} colour(s) of thin rims, ignored)" if rims else "")))
    return _palette_fix(palette, colours, "the class colours found, in a stable order (those of the PASCAL VOC "
                        "palette by their index there, then by RGB value)", rims, out)


def _against_palette(colours: dict[Colour, int], thin: set[Colour], palette: list[Colour], ignored: set[Colour],
                     out: Inference) -> tuple[list[str], list[str]]:
    """Colours checked against the palette the config gives: rims outside it are ignored, the rest asked about."""
    unknown = sorted(set(colours) - set(palette) - ignored)
    rims = [c for c in unknown if c in thin]
    others = [c for c in unknown if c not in thin]
    if rims:
        out.fixes.append(Fix("dataset.ignore_colors", [list(c) for c in sorted(ignored | set(rims))],
                             "colours outside dataset.palette that only form thin rims (e.g. unlabelled object "
                             "borders): read as ignore_index",
                             tuple(_colour_note(colours, c, "thin rims only") for c in sorted(ignored | set(rims)))))
    if others:
        every = [list(c) for c in sorted(ignored | set(unknown))]
        out.questions.append(Question(
            "dataset.ignore_colors",
            f"the colours {_colour_counts(colours, others)} are not in dataset.palette: classes, or unlabelled?",
            (("they are classes", "append them to dataset.palette (and raise dataset.num_classes to match)"),
             ("they mark unlabelled pixels", f"dataset.ignore_colors={flow(every)}"))))
    return _colour_names(palette, colours)


def _palette_fix(palette: list[Colour], colours: dict[Colour, int], how: str, rims: list[Colour],
                 out: Inference) -> tuple[list[str], list[str]]:
    out.fixes.append(Fix("dataset.palette", [list(c) for c in palette], f"class id -> colour: {how}",
                         tuple(_colour_note(colours, c, f"class {i}") for i, c in enumerate(palette))))
    if rims:
        out.fixes.append(Fix("dataset.ignore_colors", [list(c) for c in rims], "colours that only form thin rims "
                             "(never filling a 7×7 square), e.g. unlabelled object borders: read as ignore_index",
                             tuple(_colour_note(colours, c, "thin rims only") for c in rims)))
    return _colour_names(palette, colours)


def _colour_names(palette: list[Colour], colours: dict[Colour, int]) -> tuple[list[str], list[str]]:
    notes = [f"colour {list(c)}: {colours[c]:,} px" if c in colours else f"colour {list(c)}: absent" for c in palette]
    return [f"class_{i}" for i in range(len(palette))], notes


def _stable(colours: Sequence[Colour]) -> list[Colour]:
    """Colours of the PASCAL VOC palette by their index there, then the others by RGB value."""
    return sorted(colours, key=lambda c: (VOC_CLASS_COLOURS.get(c, len(VOC_CLASS_COLOURS)), c))


def _colour_note(colours: dict[Colour, int], colour: Colour, what: str) -> str:
    total = sum(colours.values()) or 1
    pixels = colours.get(colour, 0)
    return f"{what}: {pixels:,} px ({100 * pixels / total:.1f}%)" if pixels else f"{what}: absent from the masks"


def _normalisation(train: Any, split: str, pretrained: str | None, out: Inference) -> None:
    """model.mean / model.std over the train split's images (a question when weights are pretrained)."""
    if train is None or not train.images:
        out.questions.append(Question("model.mean", f"the '{split}' split's images were not read (check it, "
                                      f"e.g. --split {split}), so model.mean / model.std were not computed"))
        return
    mean = [round(m, 3) for m in train.mean()]
    std = [round(s, 3) for s in train.std()]
    flat = [i for i, s in enumerate(std) if s <= 0]
    std = [1.0 if s <= 0 else s for s in std]
    where = f"the {train.images} '{split}' images ({train.pixels:,} pixels in all)"
    rgb = len(mean) == 3
    if pretrained and rgb:  # N-band inputs have no pretrained statistics to keep: the data's own are used
        out.questions.append(Question(
            "model.mean", f"the model starts from pretrained weights ({pretrained}), which expect the "
            f"normalisation they were trained with; over {where}: mean {mean}, std {std}",
            (("normalise with this data's statistics", f"model.mean={flow(mean)} model.std={flow(std)}"),)))
        return
    per = "per-channel (R, G, B)" if rgb else f"per-band ({len(mean)} bands; 16-bit bands on the 0-255 scale)"
    out.fixes.append(Fix("model.mean", mean, f"{per} mean over {where}, 0-255"))
    constant = f"; {'channel' if rgb else 'band'}(s) {flat} are constant: 1.0 there" if flat else ""
    out.fixes.append(Fix("model.std", std, f"{per} standard deviation over {where}, 0-255{constant}"))


def _counts(values: Mapping[int, int], keys: Sequence[int] | None = None) -> str:
    """``0: 1,234 px, 255: 56 px`` for ``keys`` (default all), the first VALUES_SHOWN of them."""
    keys = list(values) if keys is None else list(keys)
    shown = ", ".join(f"{k}: {values.get(k, 0):,} px" for k in keys[:VALUES_SHOWN])
    return shown + (f", ... ({len(keys) - VALUES_SHOWN} more)" if len(keys) > VALUES_SHOWN else "")


def _colour_counts(colours: Mapping[Colour, int], keys: Sequence[Colour]) -> str:
    shown = ", ".join(f"{list(c)}: {colours.get(c, 0):,} px" for c in keys[:VALUES_SHOWN])
    return shown + (f", ... ({len(keys) - VALUES_SHOWN} more)" if len(keys) > VALUES_SHOWN else "")


# -------------------------------------------------------------------------------------------------
# the written file
# -------------------------------------------------------------------------------------------------


def fold_overrides(overrides: Sequence[tuple[str, Any]], resolved: Mapping[str, Any], folder: str) -> list[Fix]:
    """The command line's ``key=value`` overrides as lines of a config file written in ``folder``.

    A value the loader resolved as a path (``resolved`` holds it absolute where it was given
    relative to the current folder) is rewritten to stay right from the file: relative to
    ``folder`` when it lies below it, else absolute.
    """
    return [Fix(key, _portable(value, _select(resolved, key.split(".")), folder), "from the command line")
            for key, value in overrides]


def _portable(value: Any, resolved: Any, folder: str) -> Any:
    if isinstance(value, dict):
        sub = resolved if isinstance(resolved, dict) else {}
        return {k: _portable(v, sub.get(k), folder) for k, v in value.items()}
    if (isinstance(value, str) and isinstance(resolved, str) and resolved != value and os.path.isabs(resolved)
            and "://" not in value):
        relative = os.path.relpath(resolved, folder)
        return relative if not relative.startswith("..") else resolved
    return value


def _select(node: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def render_config(base: str, folded: Sequence[Fix], inference: Inference, header: Sequence[str] = ()) -> str:
    """The YAML text: ``_base_``, the folded overrides, the fixes (each line with its reason) and,
    as comments where their line would be, the questions."""
    tree: dict[str, Any] = {}
    for fix in [*folded, *inference.fixes]:
        _insert(tree, fix.key.split("."), fix)
    for question in inference.questions:
        _insert(tree, question.key.split("."), question, replace=False)
    lines = [f"# {line}" for line in header]
    lines.append(f"_base_: {flow(base)}  # the config this one inherits")
    lines += _render(tree, 0, "")
    return "\n".join(lines) + "\n"


def _insert(tree: dict[Any, Any], parts: list[str], entry: Fix | Question, replace: bool = True) -> None:
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, Fix) and isinstance(child.value, dict):  # a mapping given whole: open it up
            child = {k: Fix(f"{child.key}.{k}", v, child.reason) for k, v in child.value.items()}
            node[part] = child
        elif not isinstance(child, dict):
            child = node[part] = {}
        node = child
    leaf = parts[-1]
    if replace or leaf not in node:
        node.pop(leaf, None)  # a fix replaces what the command line gave, and moves to the end
        node[leaf] = entry


def _render(node: dict[str, Any], depth: int, prefix: str) -> list[str]:
    pad = "  " * depth
    lines: list[str] = []
    for name, child in node.items():
        if isinstance(child, dict):
            if _holds_value(child):
                lines.append(f"{pad}{flow(name)}:")
                lines += _render(child, depth + 1, f"{prefix}{name}.")
            else:  # only questions: a bare `name:` would set the section to null
                lines += _render(child, depth, f"{prefix}{name}.")
        elif isinstance(child, Fix):
            lines += _render_fix(pad, name, child)
        else:
            text = _one_line(child.text)
            lines.append(f"{pad}# {prefix}{name}: not written. {text[:1].upper()}{text[1:]}")
            lines += [f"{pad}#   {meaning}: {config_line}" for meaning, config_line in child.answers]
    return lines


def _render_fix(pad: str, name: str, fix: Fix) -> list[str]:
    if fix.items and isinstance(fix.value, list) and len(fix.items) == len(fix.value):
        lines = [f"{pad}{flow(name)}:  # {_one_line(fix.reason)}"]
        lines += [f"{pad}  - {flow(item)}" + (f"  # {_one_line(note)}" if note else "")
                  for item, note in zip(fix.value, fix.items)]
        return lines
    return [f"{pad}{flow(name)}: {flow(fix.value)}  # {_one_line(fix.reason)}"]


def _holds_value(node: dict[str, Any]) -> bool:
    return any(isinstance(c, Fix) or (isinstance(c, dict) and _holds_value(c)) for c in node.values())


def flow(value: Any) -> str:
    """``value`` as one line of YAML (flow style: ``{255: 1}``, ``[0, 0, 0]``, ``true``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, sort_keys=False, allow_unicode=True)
    text = text.strip()
    return text[: -len("\n...")] if text.endswith("\n...") else text


def _one_line(text: str) -> str:
    return " ".join(text.split())


#: the config ``load_config`` loads when it is given none
DEFAULT_CONFIG = "synthetic_deeplabv3"


def check_config_target(path: str | Path, config_source: str | None, *, overwrite: bool = False) -> Path:
    """``path`` as the file ``--write-config`` may write: never the config being checked, and not
    an existing file unless ``overwrite`` (a one-line SemsegError naming the file otherwise)."""
    target = Path(path)
    if config_source and Path(config_source).is_file() and target.resolve() == Path(config_source).resolve():
        raise SemsegError(f"--write-config {path}: that is the config being checked; write the fixed config to "
                          f"another file (it inherits this one)")
    if target.is_dir():
        raise SemsegError(f"--write-config {path}: is a folder; give a file name such as {target / 'fixed.yaml'}")
    if target.exists() and not overwrite:
        raise SemsegError(f"--write-config {path}: the file exists; choose another name, or add --overwrite "
                          f"to replace it")
    return target


def write_fixed_config(config_source: str | None, overrides: Sequence[str], report: Any, path: str | Path, *,
                       overwrite: bool = False):
    """Write (atomically) a config that inherits ``config_source`` (a file or a packaged name;
    default the packaged default), holds ``overrides`` and every fix the check-data ``report``
    supports, each line commented with its reason; lines the data leaves open are comments.
    Returns the :class:`~semsegpaddle.core.data.config_fixes.WrittenConfig` (path, base, fixes, questions)."""
    from semsegpaddle.core.common.atomic import write_text_atomic
    from semsegpaddle.core.config.loader import parse_override
    from semsegpaddle.core.data.check import load_check_config as load

    target = check_config_target(path, config_source, overwrite=overwrite)
    config = load(config_source, overrides)
    folder = os.path.abspath(target.parent)
    source = config_source or DEFAULT_CONFIG
    base = os.path.relpath(os.path.abspath(source), folder) if Path(source).is_file() else source
    model = config["model"]
    pretrained = model["backbone"].get("pretrained") or model.get("pretrained")
    inference = infer_fixes(report, config["dataset"], train_split=config["dataset"]["train_split"],
                            pretrained=pretrained)
    checked = ", ".join(f"{s.split}: {s.samples}" for s in report.splits) or "none"
    header = ["Written by `semseg check-data --write-config`: the config of _base_, the command line's overrides",
              f"and the fixes the data called for (samples checked per split: {checked}); each line says why.",
              f"Check it: semseg check-data {path}"]
    text = render_config(base, fold_overrides([parse_override(o) for o in overrides], config, folder), inference,
                         header)
    write_text_atomic(target, text)
    return WrittenConfig(target, base, inference)
