from pathlib import Path

import pytest
import yaml

from modelfoundry.config import ConfigError, load_config, parse_override, reference_markdown

from .conftest import REPO

BASE = {"name": "x", "data": {"path": "d.csv", "target": "y"}}


def problems(raw: dict, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(raw, overrides)
    return exc.value.problems


def test_defaults_are_filled_in():
    cfg = load_config(BASE)
    assert cfg.model.type == "mlp" and cfg.train.optimizer == "adamw" and cfg.data.split.test == 0.2


def test_unknown_key_suggests_the_nearest():
    (p,) = problems({**BASE, "train": {"learning_rate": 0.1, "lr": 0.1, "epoch": 3}})[:1]
    ps = problems({**BASE, "train": {"epoch": 3}})
    assert ps == ["train.epoch: unknown key; did you mean 'epochs'?"]
    assert "train.learning_rate: unknown key" in p


def test_a_short_section_lists_its_keys_beside_a_guess_that_may_miss():
    (p,) = problems({**BASE, "data": {**BASE["data"], "task": "clm", "corpus": {"column": "text"}}})[:1]
    assert p.startswith("data.corpus.column: unknown key; did you mean")
    assert "field" in p  # "column" looks like "documents" to a spelling guess; the corpus' column key is "field"


def test_unknown_key_in_model_family():
    ps = problems({**BASE, "model": {"type": "mlp", "hiden": [3]}})
    assert ps == ["model.hiden: unknown key; did you mean 'hidden'? (valid keys here: backend, keras_backend, "
                  "saved_model, type, hidden, dropout, activation, text_embedding_dim)"]


def test_every_problem_is_reported_at_once():
    ps = problems({**BASE, "train": {"lr": -0.1, "batch_size": 0, "optimizer": "adamm"}, "model": {"type": "mlp", "dropout": "x"}})
    text = "\n".join(ps)
    assert len(ps) == 4
    assert "train.lr: must be > 0, got -0.1" in text
    assert "train.batch_size: must be > 0, got 0" in text
    assert "train.optimizer: must be one of 'adamw', 'adam' or 'sgd', got \"adamm\"; did you mean 'adam'?" in text
    assert "model.dropout:" in text


def test_wrong_type_and_missing_section():
    ps = problems({"name": "x", "train": {"epochs": "many"}})
    assert any(p.startswith("data: required") for p in ps)
    assert any(p.startswith("train.epochs:") and '"many"' in p for p in ps)


def test_unknown_model_type():
    ps = problems({**BASE, "model": {"type": "xgboost"}})
    assert ps == ['model: must be one of mlp, autoencoder, bert, cnn, deep_svdd, dkt, gpt, mf, pretrained, rnn, transformer, '
                  'two_tower, got "xgboost"']


def test_overrides_by_dotted_path():
    cfg = load_config(BASE, ["train.lr=3e-4", "model.hidden=[256,128]", "data.split.test=0.3"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.hidden == [256, 128]
    assert cfg.data.split.test == 0.3


def test_override_of_unknown_path_is_a_config_error():
    ps = problems(BASE, ["train.lrr=1"])
    assert ps == ["train.lrr: unknown key; did you mean 'lr'?"]


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="expected PATH=VALUE"):
        parse_override("train.lr")


def test_yaml_exponent_without_dot_is_a_number(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndata: {path: d.csv}\ntrain: {lr: 1e-3}\n")
    assert load_config(path).train.lr == pytest.approx(1e-3)


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_cross_field_rules():
    assert any("needs `group_column`" in p for p in problems({**BASE, "data": {"split": {"method": "group"}}}))
    assert any("divisible by num_heads" in p for p in problems({**BASE, "model": {"type": "transformer", "hidden_size": 30, "num_heads": 4}}))


def test_config_reference_doc_is_up_to_date():
    """docs/config.md is generated from the schema: regenerate with `foundry config reference > docs/config.md`."""
    assert (REPO / "docs" / "config.md").read_text(encoding="utf-8").strip() == reference_markdown().strip()


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*/*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_validates_and_its_data_exists(recipe: Path):
    """Its data exists, or (a corpus assembled from several sources) the script that builds it sits beside it, or (data
    not shipped) the datasets/fetch_*.py script that brings it is named in the recipe."""
    text = recipe.read_text(encoding="utf-8")
    chained = str((yaml.safe_load(text).get("model") or {}).get("path", "")).startswith("run:")  # a later step of a chain
    cfg = load_config(recipe, ["model.path=gpt-mini"] if chained else [])
    built = any(f.name in text for f in [*recipe.parent.glob("build_*.py"), *(REPO / "datasets").glob("fetch_*.py")])
    assert cfg.resolve_path(cfg.data.path).exists() or built
    if cfg.data.test_path:
        assert cfg.resolve_path(cfg.data.test_path).exists() or built


def test_a_tune_or_early_stopping_metric_is_checked_before_anything_runs():
    base = {"name": "x", "data": {"path": "a.csv", "target": "y"},
            "tune": {"space": {"train.lr": {"log_uniform": [1e-4, 1e-2]}}}}
    for given, reported in [("roc_auc", "val_roc_auc"), ("auc", "val_roc_auc"), ("val_f1", "val_f1_macro"),
                            ("val_loss", "val_loss"), ("rmse", "val_rmse")]:
        assert load_config({**base, "tune": {**base["tune"], "metric": given}}).tune.metric == reported
    with pytest.raises(ConfigError, match=r"tune\.metric: 'rocauc' is not a metric runs report.*did you mean 'val_roc_auc'"):
        load_config({**base, "tune": {**base["tune"], "metric": "rocauc"}})
    cfg = load_config({**base, "train": {"early_stopping": {"metric": "f1"}}})
    assert cfg.train.early_stopping.metric == "val_f1_macro"
    with pytest.raises(ConfigError, match=r"train\.early_stopping\.metric: 'val_acc' is not a metric"):
        load_config({**base, "train": {"early_stopping": {"metric": "val_acc"}}})


def test_a_value_in_chinese_is_shown_as_written():
    with pytest.raises(ConfigError) as err:
        load_config({"name": "心脏-联邦", "data": {"path": "x.csv", "target": "y"}})
    assert '"心脏-联邦"' in str(err.value) and "\\u" not in str(err.value)

