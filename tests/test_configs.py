"""The config spine: every shipped YAML loads, round-trips and is reachable; one override syntax, one error type."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import reviosa
from reviosa.config import Config, ConfigError, parse_override

PACKAGE = Path(reviosa.__file__).parent


def _all_config_classes() -> list[type[Config]]:
    """Every Config subclass of the package (all modules imported first, so none hides)."""
    for mod in pkgutil.walk_packages([str(PACKAGE)], "reviosa."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    seen, todo = [], list(Config.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo += cls.__subclasses__()
    return [c for c in seen if c.__module__.startswith("reviosa.")]


CLASSES = _all_config_classes()
SHIPPED = [(cls, name) for cls in CLASSES if cls.shipped_dir is not None for name in cls.shipped()]


def test_the_spine_is_used_everywhere():
    names = {c.__name__ for c in CLASSES}
    # model, train, pretrain, eval, serve, storage, annotate, demo, synthetic world, clips, ablation rows
    assert {"ModelConfig", "TrainConfig", "PretrainConfig", "EvalConfig", "ServeConfig", "StorageConfig",
            "AnnotateConfig", "DemoConfig", "SyntheticConfig", "ClipConfig", "Ablation"} <= names
    for cls in CLASSES:
        assert cls.model_config["extra"] == "forbid" and cls.model_config["frozen"], cls


def test_every_yaml_next_to_the_code_is_a_shipped_config():
    shipped = {(cls.shipped_dir / f"{name}.yaml").resolve() for cls, name in SHIPPED}
    # a shipped checkpoint carries its own config.yaml (a ModelConfig, checked in test_pretrained_base)
    checkpoints = PACKAGE / "model" / "pretrained"
    on_disk = {p.resolve() for p in PACKAGE.rglob("*.yaml") if checkpoints not in p.parents}
    assert on_disk == shipped, f"YAML no config class ships: {sorted(map(str, on_disk - shipped))}"


@pytest.mark.parametrize("cls, name", SHIPPED, ids=[f"{c.__name__}:{n}" for c, n in SHIPPED])
def test_every_shipped_config_loads_and_round_trips(cls, name, tmp_path):
    cfg = cls.from_yaml(name)
    text = cfg.to_yaml()
    assert cls.from_dict(yaml.safe_load(text)) == cfg
    (tmp_path / "again.yaml").write_text(text)
    assert cls.from_yaml(tmp_path / "again.yaml") == cfg  # a path loads like a name


@pytest.mark.parametrize("cls", [c for c in CLASSES if (c.shipped_dir and "default" in c.shipped())],
                         ids=lambda c: c.__name__)
def test_a_shipped_default_file_says_what_the_class_defaults_are(cls):
    assert cls.from_yaml("default") == cls()


def test_overrides_reach_nested_configs_and_keep_their_siblings():
    from reviosa.train.config import TrainConfig

    cfg = TrainConfig.from_yaml("tiny", ["model.loss.aml_heads=[]", "optim.lr=1e-4", "data.augment.hflip=0.5",
                                         "data.val=null", "epochs=2"])
    base = TrainConfig.from_yaml("tiny")
    assert cfg.model.loss.aml_heads == [] and cfg.model.loss.dice_weight == base.model.loss.dice_weight
    assert cfg.optim.lr == 1e-4 and cfg.optim.warmup_steps == base.optim.warmup_steps
    assert cfg.data.augment.hflip == 0.5 and cfg.data.augment.contrast == base.data.augment.contrast
    assert cfg.data.val is None and cfg.epochs == 2.0
    # a nested config named by another shipped name is swapped in whole, then reached into
    big = TrainConfig.from_yaml("tiny", ["model=1b", "model.lora.r=16"])
    assert big.model.name == "reviosa-1b" and big.model.lora.r == 16
    assert big.model.mllm.text.hidden_size == 896
    assert cfg.with_overrides(["steps=3"]).steps == 3 and cfg.steps == base.steps  # frozen: a copy


def test_one_error_type_names_file_and_field(tmp_path):
    from reviosa.train.config import TrainConfig

    bad = tmp_path / "run.yaml"
    bad.write_text("model: tiny\ndata: {train: x}\noptim: {lr: -1}\n")
    with pytest.raises(ConfigError, match=r"run.yaml: invalid TrainConfig: optim.lr"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match=r"with overrides \['optim.bogus=1'\].*optim.bogus"):
        TrainConfig.from_yaml("tiny", ["optim.bogus=1"])
    with pytest.raises(ConfigError, match="steps is a value .*not a section"):
        TrainConfig.from_yaml("tiny", ["steps.x=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        TrainConfig.from_yaml("tiny", ["steps"])
    bad.write_text("model: nope\ndata: {train: x}\n")
    with pytest.raises(ConfigError, match="run.yaml: field model: nope: no such ModelConfig"):
        TrainConfig.from_yaml(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        TrainConfig.from_yaml(bad)
    bad.write_bytes(b"steps: \xff\n")
    with pytest.raises(ConfigError, match="cannot read"):
        TrainConfig.from_yaml(bad)


def test_override_values_are_yaml():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=null") == (["a"], None) and parse_override("a=") == (["a"], None)
    assert parse_override("a=true") == (["a"], True) and parse_override("x=s3://b/k") == (["x"], "s3://b/k")
    with pytest.raises(ConfigError, match="not YAML"):
        parse_override("a=[1")


def test_a_nested_config_file_is_found_beside_the_file_that_names_it(tmp_path):
    from reviosa.model.config import ModelConfig
    from reviosa.train.config import TrainConfig

    (tmp_path / "m.yaml").write_text(ModelConfig.from_yaml("tiny", ["lora.r=2"]).to_yaml())
    (tmp_path / "run.yaml").write_text("model: m.yaml\ndata: {train: x}\n")
    assert TrainConfig.from_yaml(tmp_path / "run.yaml").model.lora.r == 2


def test_a_checkpoint_config_with_the_earlier_single_prompts_still_loads(tmp_path):
    from reviosa.model.config import ModelConfig
    from reviosa.model.tokenizer import question_text

    asked = "Find {expression} here, and its partner if it has one."
    cfg = ModelConfig.from_yaml("tiny").model_dump(mode="json")
    cfg["prompt"] = {"question": asked, "answer_actor": "Yes: [SEG_ACT].",
                     "answer_interaction": "Yes: [SEG_ACT], [SEG_TAR]."}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    old = ModelConfig.from_yaml(tmp_path / "config.yaml")
    want = asked.format(expression="the red circle")
    rng = np.random.default_rng(0)
    assert question_text(old, "The red circle.", rng) == want  # training asks what it asked before
    assert question_text(old, "The red circle.", inference=True) == want
    assert old.prompt.answers_actor == ["Yes: [SEG_ACT]."]
    assert old.prompt.answers_interaction == ["Yes: [SEG_ACT], [SEG_TAR]."]
    with pytest.raises(ConfigError, match="answer"):  # the old forms are still checked
        ModelConfig.from_dict({**cfg, "prompt": {**cfg["prompt"], "answer_actor": "no token"}})
