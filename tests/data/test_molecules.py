"""Molecules: SMILES read by RDKit into fingerprints and descriptors, the scaffold split, and a run end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import train
from modelfoundry.config import Config
from modelfoundry.data.config import MoleculeConfig
from modelfoundry.data.molecules import descriptor_names, featurize, scaffold, scaffold_groups, scaffold_split
from modelfoundry.data.schema import infer_schema
from modelfoundry.data.sources import DataError
from modelfoundry.predictor import Predictor

from ..conftest import REPO, tiny_config

pytest.importorskip("rdkit")
ESOL = REPO / "datasets" / "molecules" / "esol.csv"


def test_featurize_counts_substructures_and_names_what_it_cannot_parse():
    fp, ds, keep, bad = featurize(["CCO", "c1ccccc1", "C1CC", ""], "morgan", 2, 256, True)
    assert keep == [0, 1] and [b["row"] for b in bad] == [2, 3]
    assert "RDKit cannot parse" in bad[0]["error"] and "empty" in bad[1]["error"]
    assert fp.shape == (2, 256) and ds.shape == (2, len(descriptor_names()))
    assert fp[1].max() == pytest.approx(np.log1p(6))  # benzene: six identical aromatic carbons in one counter
    logp = descriptor_names().index("MolLogP")
    assert ds[1, logp] > ds[0, logp]  # benzene is more lipophilic than ethanol
    fp_only, no_desc, _, _ = featurize(["CCO"], "morgan", 3, 128, False)
    assert fp_only.shape == (1, 128) and no_desc.shape == (1, 0)
    caffeine = "Cn1cnc2c1c(=O)n(C)c(=O)n2C"
    assert not np.array_equal(featurize([caffeine], "morgan", 1, 256, False)[0], featurize([caffeine], "morgan", 3, 256, False)[0])
    _, desc_only, _, _ = featurize(["CCO"], "none", 2, 128, True)
    assert desc_only.shape[1] > 100
    with pytest.raises(ValueError, match="no features"):
        MoleculeConfig(fingerprint="none", descriptors=False)


def test_scaffold_split_holds_out_whole_scaffolds_largest_groups_train():
    smiles = pd.read_csv(ESOL)["smiles"].tolist()
    parts = scaffold_split(smiles, test=0.1, val=0.1, seed=0)
    assert sum(len(p) for p in parts.values()) == len(smiles)
    groups = np.asarray(scaffold_groups(smiles))
    train, held = set(groups[parts["train"]]), set(groups[parts["val"]]) | set(groups[parts["test"]])
    assert not train & held
    assert scaffold("c1ccccc1CCO") in train  # benzene's scaffold, the commonest, trains
    again, other = scaffold_split(smiles, test=0.1, val=0.1, seed=0), scaffold_split(smiles, test=0.1, val=0.1, seed=1)
    assert all(np.array_equal(parts[s], again[s]) for s in parts)  # deterministic for a seed
    assert not np.array_equal(parts["test"], other["test"])
    bbbp = pd.read_csv(REPO / "datasets" / "molecules" / "bbbp.csv")
    test_labels = bbbp["p_np"].to_numpy()[scaffold_split(bbbp["smiles"].tolist(), 0.1, 0.1, seed=0)["test"]]
    assert 0 < test_labels.mean() < 1  # both classes held out (DeepChem's fixed order held out only one)
    assert 0.08 < len(parts["test"]) / len(smiles) < 0.12


def test_a_column_named_smiles_is_read_as_molecules_unless_declared():
    df = pd.DataFrame({"SMILES": ["CCO", "CCN", "c1ccccc1"] * 10, "y": range(30)})
    assert infer_schema(df, "y", {}, None)["SMILES"] == "smiles"
    assert infer_schema(df, "y", {"SMILES": "categorical"}, None)["SMILES"] == "categorical"


def _esol_frame(n: int = 240) -> pd.DataFrame:
    return pd.read_csv(ESOL).head(n).rename(columns={"smiles": "mol", "logp": "solubility"})


def test_each_training_molecule_is_featurized_once(tmp_path, monkeypatch):
    """fit describes the training molecules, and transforming those same rows reuses that work (RDKit's ~200
    descriptors cost ~4 ms a molecule: ESOL's recipe spent 5 s doing it twice); a later transform computes them again,
    with the same result."""
    from rdkit.Chem import Descriptors

    from modelfoundry.data.prepare import prepare

    described = []
    calc = Descriptors.CalcMolDescriptors
    monkeypatch.setattr(Descriptors, "CalcMolDescriptors", lambda mol, **kw: described.append(1) or calc(mol, **kw))
    data = {"target": "solubility", "types": {"mol": "smiles"}, "split": {"test": 0.2, "val": 0.0},
            "molecule": {"bits": 64}}
    prepared = prepare(Config.model_validate(tiny_config(tmp_path, data)), _esol_frame(60))
    assert len(prepared.frames["train"]) == 48 and len(described) == 60  # 48 training molecules once, 12 test ones
    again = prepared.preprocessor.transform(prepared.frames["train"])
    assert len(described) == 60 + 48
    for k, v in prepared.encoded["train"].features.items():
        np.testing.assert_allclose(again.features[k].numpy(), v.numpy(), atol=1e-6)


@pytest.mark.slow  # a whole training: CI runs it, the fast tier does not
def test_a_solubility_run_learns_on_a_scaffold_split_and_predicts_new_smiles(tmp_path):
    df = _esol_frame()
    df.loc[3, "mol"] = "C1CC"  # an unclosed ring: skipped and reported, the run goes on
    path = tmp_path / "mols.csv"
    df.to_csv(path, index=False)
    data = {"path": str(path), "target": "solubility", "types": {"mol": "smiles"},
            "split": {"method": "scaffold", "test": 0.2, "val": 0.1},
            "molecule": {"bits": 256, "radius": 2, "descriptors": True}}
    cfg = Config.model_validate(tiny_config(tmp_path, data, model={"type": "mlp", "hidden": [64]},
                                            train={"epochs": 30, "lr": 3e-3}, evaluate={"baselines": True}))
    run = train(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["test"]["rmse"] < 0.8 * m["baselines"]["mean"]["rmse"]
    profile = json.loads((run.path / "data_profile.json").read_text())
    assert profile["scaffold_split"]["held_out_scaffolds_in_training"] == 0
    assert sum(len(v) for v in profile["unparsed_smiles"].values()) == 1
    arch = json.loads((run.path / "model" / "architecture.json").read_text())
    assert arch["spec"]["n_numeric"] == 256 + len(descriptor_names())
    pred = Predictor.load(run.path)
    out = pred.predict(pd.DataFrame({"mol": ["CCCCCCCCCC", "OCC(O)CO", "C1CC"]}))
    assert out["prediction"][0] < out["prediction"][1]  # decane is far less soluble than glycerol
    assert "unparsable SMILES 'C1CC'" in out["error"][2]
    cfg_error = cfg.model_copy(update={"data": cfg.data.model_copy(update={"bad_smiles": "error"})})
    with pytest.raises(DataError, match=r"row \d+, column 'mol': SMILES 'C1CC'"):
        train(cfg_error)


@pytest.mark.slow  # whole trainings (or a CLI process): CI runs it, the fast tier does not
def test_fingerprint_only_and_a_wider_radius_change_the_features(tmp_path):
    df = _esol_frame(80)
    path = tmp_path / "mols.csv"
    df.to_csv(path, index=False)
    widths = {}
    for name, mol in {"fp": {"bits": 128, "descriptors": False}, "r3": {"bits": 128, "descriptors": False, "radius": 3},
                      "desc": {"fingerprint": "none"}}.items():
        data = {"path": str(path), "target": "solubility", "types": {"mol": "smiles"}, "molecule": mol}
        run = train(Config.model_validate(tiny_config(tmp_path, data, name=name, train={"epochs": 1})))
        pre = json.loads((run.path / "model" / "preprocessor.json").read_text())
        widths[name] = (pre["molecule"]["mol"]["bits"], len(pre["molecule"]["mol"]["fill"]))
        preds = Predictor.load(run.path).predict(pd.DataFrame({"mol": ["CCO", "CCCO"]}))["prediction"]
        widths[name + "_distinct"] = preds[0] != preds[1]
    assert widths["fp"] == (128, 0) and widths["r3"] == (128, 0) and widths["desc"][0] == 0 and widths["desc"][1] > 100
    assert all(v for k, v in widths.items() if k.endswith("_distinct"))


@pytest.mark.slow  # whole trainings (or a CLI process): CI runs it, the fast tier does not
def test_scaffold_k_fold_and_serving_a_molecule_run(tmp_path):
    from fastapi.testclient import TestClient

    from modelfoundry.serve.app import ServeSettings, create_app, load_models

    path = tmp_path / "mols.csv"
    _esol_frame(120).to_csv(path, index=False)
    data = {"path": str(path), "target": "solubility", "split": {"method": "scaffold"}, "molecule": {"bits": 64}}
    run = train(Config.model_validate(tiny_config(tmp_path, {**data, "types": {"mol": "smiles"}}, train={"epochs": 1},
                                                  evaluate={"cv": {"folds": 2}})))
    cv = json.loads((run.path / "cv.json").read_text())
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2
    with TestClient(create_app(load_models([run.path]), ServeSettings())) as c:
        r = c.post("/v1/predict", json=[{"mol": "CCO"}, {"mol": "C1CC"}])
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        assert isinstance(got[0]["value"], float) and "unparsable SMILES" in got[1]["error"]
        assert c.post("/v1/predict", json=[{"mol": 3}]).status_code == 422  # a SMILES is a string


def test_a_scaffold_split_groups_by_the_column_group_column_names():
    from modelfoundry.data.config import SplitConfig
    from modelfoundry.data.split import split_frame

    df = _esol_frame(200)
    df["other"] = ["c1ccccc1O" if i % 2 else "CCO" for i in range(len(df))]  # two scaffolds: benzene, none
    cfg = SplitConfig(method="scaffold", test=0.2, val=0.1)
    by_mol = split_frame(df, cfg, "regression", "solubility", 0, False, None, "mol")
    assert len(by_mol["test"]) > 0
    by_other = split_frame(df, cfg.model_copy(update={"group_column": "other"}), "regression", "solubility", 0, False)
    assert {len(set(df["other"].iloc[by_other[s]])) for s in ("train", "test")} == {1}  # each split: one scaffold
    assert set(df["other"].iloc[by_other["train"]]) != set(df["other"].iloc[by_other["test"]])
    with pytest.raises(DataError, match="one scaffold of column 'other' holds more of the 200 rows"):
        split_frame(df.assign(other="CCO"), cfg.model_copy(update={"group_column": "other"}), "regression", "solubility",
                    0, False)
    with pytest.raises(DataError, match="needs a SMILES column"):
        split_frame(df, cfg, "regression", "solubility", 0, False)
