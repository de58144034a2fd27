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
