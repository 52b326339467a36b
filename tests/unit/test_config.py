import pytest
from pydantic import Field

from rlpost.common.config import ConfigError, StrictModel, apply_override, load_config


class Inner(StrictModel):
    lr: float = Field(1e-3, gt=0, description="learning rate")
    nets: list[str] = Field(default_factory=lambda: ["fkk_in"], description="networks")


class Outer(StrictModel):
    name: str = "run"
    inner: Inner = Field(default_factory=Inner)


def test_defaults_yaml_and_overrides(tmp_path):
    assert load_config(Outer).inner.lr == 1e-3
    path = tmp_path / "c.yaml"
    path.write_text("name: a\ninner:\n  lr: 0.5\n")
    cfg = load_config(Outer, path, ["inner.lr=1e-4", "inner.nets=[A10KW, DRT]", "name=b"])
    assert cfg.inner.lr == 1e-4 and cfg.inner.nets == ["A10KW", "DRT"] and cfg.name == "b"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["inner.lr=-1"], "inner.lr"),
        (["inner.lrr=1"], "inner.lrr"),
        (["inner.lr=fast"], "inner.lr"),
        (["nope"], "expected dotted.key=value"),
        (["name.x=1"], "name"),
    ],
)
def test_bad_overrides_name_the_field(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(Outer, None, overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Outer, bad)


def test_apply_override_builds_sections():
    tree = {}
    apply_override(tree, "a.b.c=3")
    assert tree == {"a": {"b": {"c": 3}}}
