"""Molecules: a SMILES column turned into numbers with RDKit (a Morgan count fingerprint and RDKit's 2-D descriptors),
and the Bemis-Murcko scaffold split that MoleculeNet recommends for property prediction (whole scaffolds held out, so
the test set measures generalisation to new chemical series, not to near-copies of training molecules).

RDKit is an extra (`modelfoundry[molecules]`); nothing here is imported without it."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from typing import Any

import numpy as np

from .sources import DataError

INSTALL = "pip install 'modelfoundry[molecules]'"


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise DataError(f"SMILES columns need RDKit: {INSTALL}") from None
    RDLogger.DisableLog("rdApp.*")  # a bad SMILES is reported by row here, not as a line on stderr
    return Chem


def parse(smiles: Any):
    """One SMILES -> an RDKit molecule; ValueError with RDKit's reason when it cannot be parsed."""
    Chem = _rdkit()
    if smiles is None or (isinstance(smiles, float) and math.isnan(smiles)) or not str(smiles).strip():
        raise ValueError("the SMILES is empty")
    mol = Chem.MolFromSmiles(str(smiles).strip())
    if mol is None:
        raise ValueError("RDKit cannot parse it (bad syntax or valence)")
    return mol


def descriptor_names() -> list[str]:
    from rdkit.Chem import Descriptors

    _rdkit()
    return [name for name, _ in Descriptors.descList]


def featurize(values: list, fingerprint: str, radius: int, bits: int, descriptors: bool
              ) -> tuple[np.ndarray, np.ndarray, list[int], list[dict]]:
    """SMILES -> (fingerprint [n, bits] as log(1 + count), descriptors [n, d] (NaN where RDKit gives none), the
    positions that parsed, one {row, smiles, error} per value that did not)."""
    _rdkit()
    from rdkit.Chem import Descriptors, rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits) if fingerprint == "morgan" else None
    names = descriptor_names() if descriptors else []
    fps, descs, keep, bad = [], [], [], []
    for i, v in enumerate(values):
        try:
            mol = parse(v)
        except ValueError as exc:
            bad.append({"row": i, "smiles": str(v), "error": str(exc)})
            continue
        keep.append(i)
        if gen is not None:
            fps.append(np.log1p(gen.GetCountFingerprintAsNumPy(mol).astype(np.float32)))
        if names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy overflow warnings inside a few descriptors (Ipc)
                d = Descriptors.CalcMolDescriptors(mol, missingVal=float("nan"))
            descs.append(np.asarray([d[n] for n in names], dtype=np.float64))
    n = len(keep)
    fp = np.stack(fps) if fps else np.zeros((n, 0), np.float32)
    ds = np.stack(descs) if descs else np.zeros((n, 0), np.float64)
    ds[~np.isfinite(ds)] = np.nan
    return fp, ds, keep, bad


def scaffold(smiles: Any) -> str:
    """The Bemis-Murcko scaffold of a molecule (ring systems and the linkers between them; '' for an acyclic one)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(mol=parse(smiles), includeChirality=False)


def scaffold_groups(smiles: list) -> list[str]:
    """Each molecule's scaffold ('<unparsed>' for a SMILES RDKit cannot parse): the groups of a scaffold split."""
    out = []
    for s in smiles:
        try:
            out.append(scaffold(s))
        except ValueError:
            out.append("<unparsed>")
    return out


def scaffold_split(smiles: list, test: float, val: float, seed: int = 0) -> dict[str, np.ndarray]:
    """The balanced scaffold split (chemprop's `scaffold_balanced`): molecules grouped by scaffold; groups larger than
    half the validation or test share go to training first, the other groups follow in a seeded random order,
    filling training, then validation, then test. No scaffold is in two splits. (DeepChem's fully deterministic
    order, largest groups first and then by position, makes the test set the file's last singletons: on BBBP all of
    one class.) SMILES RDKit cannot parse form one group of their own (the featurizer skips or refuses them, naming
    each row)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(scaffold_groups(smiles)):
        groups[key].append(i)
    n = len(smiles)
    rng = np.random.default_rng(seed)
    big = [g for g in groups.values() if len(g) > max(val, test) * n / 2]
    small = [g for g in groups.values() if len(g) <= max(val, test) * n / 2]
    ordered = [big[i] for i in rng.permutation(len(big))] + [small[i] for i in rng.permutation(len(small))]
    train_cut, val_cut = (1 - test - val) * n, (1 - test) * n
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for g in ordered:
        if len(out["train"]) + len(g) <= train_cut:
            out["train"] += g
        elif len(out["train"]) + len(out["val"]) + len(g) <= val_cut:
            out["val"] += g
        else:
            out["test"] += g
    return {k: np.asarray(sorted(v), dtype=np.int64) for k, v in out.items()}


def looks_like_smiles(name: str) -> bool:
    return name.strip().lower() in ("smiles", "canonical_smiles", "smiles_string", "mol_smiles")
