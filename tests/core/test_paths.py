import shutil

import pytest

from modelfoundry.core import paths


def test_minilm_is_checked_against_its_pinned_sha256(tmp_path, monkeypatch):
    folder = paths.resolve_model_path("minilm")
    assert (folder / "model.safetensors").is_file()
    copy = tmp_path / "minilm"
    copy.mkdir()
    for name in paths.MINILM_SHA256:
        shutil.copy(folder / name, copy / name)
    monkeypatch.setenv("FOUNDRY_MINILM_PATH", str(copy))
    assert paths.resolve_model_path("minilm") == copy  # a verified local copy is used instead
    data = bytearray((copy / "config.json").read_bytes())
    data[10] ^= 1  # one flipped bit
    (copy / "config.json").write_bytes(bytes(data))
    paths._verified.clear()
    with pytest.raises(ValueError, match=r"minilm/config\.json has sha256 .* not all-MiniLM-L6-v2's"):
        paths.resolve_model_path("minilm")


def test_gpt_mini_ships_in_the_package_and_is_checked_against_its_pinned_sha256(tmp_path, monkeypatch):
    folder = paths.resolve_model_path("gpt-mini")
    assert set(paths.GPT_MINI_SHA256) <= {f.name for f in folder.iterdir()}
    assert (folder / "README.md").is_file() and (folder / "sources.json").is_file()
    copy = tmp_path / "gpt-mini"
    shutil.copytree(folder, copy)
    data = bytearray((copy / "tokenizer.json").read_bytes())
    data[100] ^= 1
    (copy / "tokenizer.json").write_bytes(bytes(data))
    monkeypatch.setattr(paths, "GPT_MINI_DIR", copy)
    with pytest.raises(ValueError, match=r"gpt-mini/tokenizer\.json has sha256 .* not gpt-mini's"):
        paths.resolve_model_path("gpt-mini")
