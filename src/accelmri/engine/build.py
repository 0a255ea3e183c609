"""Build what a config describes — the data sets of each split and the model — for training and evaluation.

Data sources (``data.source.kind``):

* ``digital_brain``: simulated once with :func:`accelmri.data.simulate.simulate_dataset` into ``dir`` (default: a
  folder under the digital-brain cache named by a hash of the parameters) and then read like any fastMRI file.
  The folder gets a marker file ``accelmri_dataset.json`` with the parameters (``realism`` included unless it is
  off); an existing folder is reused when its marker matches and refused otherwise (it is never overwritten).
  The reference contrast, if any, is simulated first and gets the realism's ``reference_*`` imperfections. A
  list of reference contrasts (randomised reference) is one such folder per reference contrast
  (:func:`brain_sources`); every target volume is then paired with each of them.
* ``files``: a fastMRI pairing CSV (one for all splits, or one per split), an IXI folder, a data folder (an
  ``accelmri simulate`` output or a folder of fastMRI files; one for all splits, or one per split), or explicit
  paths.

Splits are made by subject (:func:`accelmri.data.splits.split_subjects`) or, for single-subject data, by slab
(:func:`accelmri.data.splits.split_by_slab`). The training set draws fresh masks (and, with ``data.patch_size``,
random patches; with ``data.augment``, random flips/rotations before the acquisition); validation and test masks are
fixed per slice and they see whole, unaugmented slices.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from accelmri.data.datasets import SliceDataset, SliceSource, open_pair, open_source
from accelmri.data.digital_brain import canonical_contrast, default_cache_dir
from accelmri.data.errors import DataError
from accelmri.data.fastmri_protocol import FastMRIProtocolDataset
from accelmri.data.pairing import ContrastPair, align_reference, pairs_from_csv, pairs_from_ixi
from accelmri.data.sample import collate
from accelmri.data.simulate import LAYOUT_VERSION, PAIRS_FILE, kspace_folder, simulate_dataset, simulated_file
from accelmri.data.splits import SPLIT_NAMES, split_by_slab, split_subjects
from accelmri.data.volume import ImageVolume
from accelmri.engine.config import ConfigError, DataConfig, DigitalBrainSource, FileEntry, ModelConfig
from accelmri.engine.contrast import hdf5_acquisition
from accelmri.io import write_json_atomic
from accelmri.models import available, build, check_batch
from accelmri.models.baselines.interpolation import enforce_band_consistency

__all__ = [
    "DATASET_MARKER",
    "brain_sources",
    "build_dataset",
    "build_model",
    "check_compatible",
    "digital_brain_dir",
    "prepare_data",
    "volume_slices",
]

#: Marker file of a digital-brain folder written by :func:`prepare_data`.
DATASET_MARKER = "accelmri_dataset.json"

# One volume before opening: a target/reference pair, or a target alone (path, subject, contrast).
_Entry = ContrastPair | tuple[Path, str, str | None]


def _brain_parameters(brain: DigitalBrainSource) -> dict[str, object]:
    """The parameters that determine a digital brain's files, as JSON types (they key the cache folder's hash and
    are the marker's content, compared after a JSON round trip, so lists, never tuples).

    ``realism`` is left out when it is off (those files are bit-identical to the ones written before realism
    existed); ``layout`` is the folder layout of :func:`~accelmri.data.simulate.simulate_dataset`
    (:data:`~accelmri.data.simulate.LAYOUT_VERSION`), so folders of an older layout are simulated anew.
    """
    parameters = asdict(brain)
    parameters.pop("dir")
    parameters["contrasts"] = [canonical_contrast(c) for c in brain.contrasts]
    parameters["reference"] = canonical_contrast(brain.reference) if brain.reference else None
    if brain.realism.off:
        parameters.pop("realism")
    else:
        parameters["realism"] = brain.realism.to_dict()
    parameters["layout"] = LAYOUT_VERSION
    return json.loads(json.dumps(parameters))


def brain_sources(brain: DigitalBrainSource) -> list[DigitalBrainSource]:
    """The single-reference sources of ``brain``: ``[brain]`` with at most one reference contrast; with a list
    (randomised reference), one source per reference contrast (``dir``, when given, becomes ``dir/<contrast>``),
    each simulated and cached like a source naming that reference alone (the same folder)."""
    if len(brain.references) <= 1:
        return [replace(brain, reference=brain.references[0] if brain.references else None)]
    names = [canonical_contrast(c) for c in brain.references]
    return [replace(brain, reference=name, dir=None if brain.dir is None else str(Path(brain.dir) / name))
            for name in names]


def digital_brain_dir(brain: DigitalBrainSource) -> Path:
    """The folder of a digital-brain source with at most one reference contrast (:func:`brain_sources` splits a
    list): ``dir``, or ``<cache>/datasets/<hash of the parameters>``.

    Raises:
        ValueError: ``brain`` names several reference contrasts.
    """
    if len(brain.references) > 1:
        raise ValueError(f"{list(brain.references)}: several reference contrasts have one folder each "
                         "(brain_sources)")
    if brain.dir is not None:
        return Path(brain.dir).expanduser()
    key = hashlib.sha256(json.dumps(_brain_parameters(brain), sort_keys=True).encode()).hexdigest()[:16]
    return default_cache_dir() / "datasets" / key


def prepare_data(config: DataConfig, source: str = "<config>") -> None:
    """Make the data of ``config`` available: simulate a digital brain unless its folder already holds it.

    Call it once per machine before :func:`build_dataset` (the trainer calls it on local rank 0 behind a barrier).

    Raises:
        ConfigError: ``data.source.dir`` is not empty and holds no digital brain with these parameters.
        OSError: the files cannot be written.
    """
    if not isinstance(config.source, DigitalBrainSource):
        return
    for brain in brain_sources(config.source):
        _prepare_brain(brain, source)


def _prepare_brain(brain: DigitalBrainSource, source: str) -> None:
    folder = digital_brain_dir(brain)
    parameters = _brain_parameters(brain)
    marker = folder / DATASET_MARKER
    if marker.is_file():
        try:
            found = json.loads(marker.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(source, "data.source.dir", f"{marker}: unreadable marker ({err})") from err
        if isinstance(found, dict) and found.get("layout") != LAYOUT_VERSION and (
                {**found, "layout": LAYOUT_VERSION} == parameters):
            raise ConfigError(source, "data.source.dir", f"{folder} holds this digital brain in the file layout of "
                              "an older accelmri (every file at the top); delete the folder to simulate it again, "
                              "or choose another dir")
        if found != parameters:
            raise ConfigError(source, "data.source.dir", f"{folder} holds a digital brain with other parameters "
                              f"({found}); choose another dir")
        return
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(source, "data.source.dir", f"{folder} is not empty and has no {DATASET_MARKER}: not a "
                          "digital-brain folder of accelmri; choose an empty or new dir")
    reference = [parameters["reference"]] if brain.reference else []  # first: the reference column of pairs.csv
    simulate_dataset(folder, [*reference, *parameters["contrasts"]], brain.coils, brain.subjects, brain.size,
                     brain.slices, brain.noise_std, brain.seed, realism=brain.realism,
                     reference=parameters["reference"])
    write_json_atomic(marker, parameters, overwrite=True)  # another node may have just written the same


def _entries(config: DataConfig, split: str) -> tuple[list[_Entry], bool]:
    """The volumes of the source and whether they are already the given split (predefined CSV splits)."""
    data = config.source
    if isinstance(data, DigitalBrainSource):
        entries: list[_Entry] = []
        for subject in range(data.subjects):
            for contrast in (canonical_contrast(c) for c in data.contrasts):
                name = f"brain_sub{subject:03d}"
                for brain in brain_sources(data):  # one per reference contrast (a randomised reference: several)
                    folder = digital_brain_dir(brain)
                    target = simulated_file(folder, subject, contrast, brain.coils)
                    if brain.reference is None:
                        entries.append((target, name, contrast))
                        continue
                    reference = canonical_contrast(brain.reference)
                    entries.append(ContrastPair(target, simulated_file(folder, subject, reference, brain.coils),
                                                name, contrast, reference, "index"))
        return entries, False
    if isinstance(data.csv, dict):
        return (list(pairs_from_csv(data.csv[split])) if split in data.csv else []), True
    if data.csv is not None:
        return list(pairs_from_csv(data.csv)), False
    if data.ixi is not None:
        return list(pairs_from_ixi(data.ixi, data.ixi_target, data.ixi_reference)), False
    if isinstance(data.dir, dict):
        return (_folder_entries(Path(data.dir[split]).expanduser()) if split in data.dir else []), True
    if data.dir is not None:
        return _folder_entries(Path(data.dir).expanduser()), False
    return [_path_entry(entry) for entry in data.paths], False


def _folder_entries(folder: Path) -> list[_Entry]:
    """The volumes of ``data.source.dir``: the pairs of its ``pairs.csv`` (an ``accelmri simulate`` folder; the
    contrasts are read from the files), else its ``.h5`` files and those of its ``multicoil/`` / ``singlecoil/``
    folder (fastMRI's ``knee/multicoil_val``, a single-contrast simulation), by name.

    Raises:
        DataError: the folder is missing or holds neither.
    """
    if not folder.is_dir():
        raise DataError(folder, "data.source.dir: no such folder")
    if (folder / PAIRS_FILE).is_file():
        return [replace(pair, target_contrast="", reference_contrast="")
                for pair in pairs_from_csv(folder / PAIRS_FILE)]
    files = [path for where in (folder, folder / kspace_folder(2), folder / kspace_folder(1))
             for path in sorted(where.glob("*.h5")) if not path.name.startswith(".")]
    if not files:
        raise DataError(folder, f"data.source.dir holds no {PAIRS_FILE} and no .h5 files (nor in its "
                        f"{kspace_folder(2)}/ or {kspace_folder(1)}/ folder)")
    return [(path, path.name.split(".")[0], None) for path in files]


def _path_entry(entry: FileEntry) -> _Entry:
    target = Path(entry.target).expanduser()
    subject = entry.subject or target.name.split(".")[0]
    if entry.reference is None:
        return target, subject, None
    return ContrastPair(target, Path(entry.reference).expanduser(), subject, "", "", "world")


def _with_acquisition(entries: list[_Entry], acquisitions: tuple[str, ...], source: str) -> list[_Entry]:
    """The entries whose target's fastMRI ``acquisition`` attribute is one of ``acquisitions``.

    Raises:
        ConfigError: none is (naming the acquisitions found).
    """
    found = [hdf5_acquisition(str(entry.target if isinstance(entry, ContrastPair) else entry[0]))
             for entry in entries]
    kept = [entry for entry, value in zip(entries, found, strict=True) if value in acquisitions]
    if not kept:
        counts = Counter(value or "none" for value in found)
        raise ConfigError(source, "data.source.acquisition", f"no volume has acquisition {', '.join(acquisitions)} "
                          f"(found: {', '.join(f'{name} ×{n}' for name, n in sorted(counts.items()))})")
    return kept


def _subject(entry: _Entry) -> str:
    return entry.subject if isinstance(entry, ContrastPair) else entry[1]


def _open(entry: _Entry, use_reference: bool) -> tuple[SliceSource, SliceSource | None]:
    if not isinstance(entry, ContrastPair):
        path, subject, contrast = entry
        return open_source(path, subject, contrast), None
    if not use_reference:
        return open_source(entry.target, entry.subject, entry.target_contrast or None), None
    if entry.target_contrast:
        return open_pair(entry)
    target = open_source(entry.target, entry.subject)  # explicit paths: contrasts from the files
    reference = open_source(entry.reference, entry.subject)
    if isinstance(target.volume, ImageVolume) and isinstance(reference.volume, ImageVolume):
        aligned = align_reference(target.volume, reference.volume)
        reference = SliceSource(aligned, subject=reference.subject, contrast=reference.contrast)
    return target, reference


def build_dataset(config: DataConfig, split: str, source: str = "<config>") -> SliceDataset | FastMRIProtocolDataset:
    """The :class:`SliceDataset` of one split (``train`` draws random masks, ``data.patch_size`` patches and
    ``data.augment`` flips/rotations; ``val``/``test`` have fixed masks and whole, unaugmented slices), or with
    ``data.protocol: fastmri`` the :class:`~accelmri.data.fastmri_protocol.FastMRIProtocolDataset`
    (``val``/``test``: one mask per volume, seeded from the file name as fastMRI does). Both estimate coil maps of
    multi-coil data with ``data.sens_maps: espirit`` (the protocol's on the acquired k-space grid).

    Call :func:`prepare_data` first for a digital brain. The dataset may be empty (a zero split ratio, or a split
    without a CSV or folder in ``data.source.csv`` / ``dir``).

    Raises:
        ValueError: ``split`` is not train, val or test.
        DataError: missing or unreadable files, or fastMRI test/challenge files (naming the file).
        ConfigError: dataset arguments the data do not allow (e.g. a crop larger than the images), or a reference
            contrast with ``data.protocol: fastmri``.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_NAMES)}, got {split!r}")
    entries, presplit = _entries(config, split)
    if getattr(config.source, "acquisition", ()) and entries:
        entries = _with_acquisition(entries, config.source.acquisition, source)
    by_slab = config.split.by == "slab"
    if not presplit and not by_slab and entries:
        keep = set(split_subjects([_subject(e) for e in entries], config.split.ratios, config.split.seed)[split])
        entries = [e for e in entries if _subject(e) in keep]
    use_reference = getattr(config.source, "use_reference", True)
    targets: list[SliceSource] = []
    references: list[SliceSource] = []
    slices: list[tuple[int, int]] = []
    for entry in entries:
        target, reference = _open(entry, use_reference)
        count = target.num_slices if reference is None else min(target.num_slices, reference.num_slices)
        chosen = split_by_slab(count, config.split.ratios, config.split.gap)[split] if by_slab else range(count)
        slices.extend((len(targets), index) for index in chosen)
        targets.append(target)
        if reference is not None:
            references.append(reference)
    if config.protocol == "fastmri":
        if references:
            raise ConfigError(source, "data.source", "data.protocol: fastmri is single-contrast; remove the reference")
        fractions, accelerations = config.acquisition.fastmri_lists
        return FastMRIProtocolDataset(targets, config.acquisition.mask_kind, fractions, accelerations,
                                      train=split == "train", normalization=config.normalization, slices=slices,
                                      sens_maps=config.sens_maps)
    try:
        return SliceDataset(
            targets,
            config.task,
            config.acquisition.to_acquisition(),
            references=references if references else None,
            train=split == "train",
            crop=config.crop,
            pad=config.crop is None,  # slices the scale does not divide: padded, scored on their own extent
            patch_size=config.patch_size if split == "train" else None,
            augment=config.augment if split == "train" else None,
            sens_maps=config.sens_maps,
            normalization=config.normalization,
            slices=slices,
        )
    except DataError:  # a bad file: the message names it
        raise
    except ValueError as err:
        raise ConfigError(source, "data", str(err)) from err


def build_model(config: ModelConfig, scale: int, source: str = "<config>", key: str = "model") -> nn.Module:
    """Build the registered model and check that it upsamples by the data's scale.

    Args:
        config: name and constructor arguments; the extra argument ``kspace_consistency: true`` (any SR model)
            makes the output k-space consistent with the measured LR data
            (:func:`accelmri.models.baselines.interpolation.enforce_band_consistency`).
        scale: ``data.acquisition.scale``; a model with a ``scale`` attribute must have been built for it.
        source: the config file (for messages).
        key: the config key of ``config`` (for messages).

    Raises:
        ConfigError: unknown model name, bad constructor arguments, or a model scale other than ``scale``.
    """
    if config.name not in available():
        raise ConfigError(source, f"{key}.name", f"unknown model {config.name!r}; registered: {', '.join(available())}")
    kwargs = dict(config.kwargs)
    consistency = kwargs.pop("kspace_consistency", False)
    if not isinstance(consistency, bool):
        raise ConfigError(source, f"{key}.kspace_consistency", f"must be true or false, got {consistency!r}")
    try:
        model = build(config.name, **kwargs)
    except (TypeError, ValueError, ImportError) as err:  # ImportError: a plugin model (entry point) that fails
        raise ConfigError(source, key, f"{config.name}: {err}") from err
    built_scale = getattr(model, "scale", scale)
    if built_scale != scale:
        raise ConfigError(source, f"{key}.scale", f"{config.name} was built for scale {built_scale} but "
                          f"data.acquisition.scale is {scale}; set {key}.scale: {scale}")
    if consistency:
        if scale < 2:
            raise ConfigError(source, f"{key}.kspace_consistency", "is for super-resolution (scale ≥ 2)")
        enforce_band_consistency(model, scale)
    return model


def check_compatible(model: nn.Module, name: str, dataset: SliceDataset, source: str = "<config>") -> None:
    """Refuse a dataset that lacks a batch field the model declares in ``required_fields``.

    Reads one sample (under a forked, seeded RNG, so training randomness is untouched).

    Raises:
        ConfigError: naming the model, the missing fields and the config keys that provide them.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        batch = collate([dataset[0]])
    try:
        check_batch(name, tuple(getattr(model, "required_fields", ())), batch)
    except ValueError as err:
        raise ConfigError(source, "model.name", f"{err} (a reference needs data.source.reference or use_reference; "
                          "sens_maps need data.sens_maps: espirit and multi-coil data)") from err


def volume_slices(dataset: SliceDataset) -> list[tuple[int, list[int]]]:
    """The dataset items of every volume in slice order: ``[(volume index, [item, ...]), ...]`` by volume.

    Raises:
        DataError: two volumes come from the same file (volumes are identified by their file).
    """
    items: dict[int, list[tuple[int, int]]] = {}
    for item, (volume, index) in enumerate(dataset.slices):
        items.setdefault(volume, []).append((index, item))
    seen: dict[Path, int] = {}
    for volume in items:
        path = dataset.targets[volume].path
        if path in seen:
            raise DataError(path, "the same file is listed twice as a target volume")
        seen[path] = volume
    return [(volume, [item for _, item in sorted(pairs)]) for volume, pairs in sorted(items.items())]

