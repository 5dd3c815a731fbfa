"""Every config composes; wrong overrides fail before training, naming key and allowed values."""

import logging
import re
from pathlib import Path

import pytest
import torch
import yaml
from hydra.errors import ConfigCompositionException

import fer_lightning
from fer_lightning.config import ConfigError, build_net, check_config, check_hardware
from fer_lightning.train import build_datamodule, build_loss

CONF = Path(fer_lightning.__file__).parent / "conf"
SWAPPABLE_GROUPS = ("data", "landmarks", "model", "head", "loss", "optimizer", "scheduler",
                    "trainer", "logger", "callbacks")


def options(group: str) -> list[str]:
    """The options of a group; files named ``_*.yaml`` are shared bases, not options."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_every_group_of_the_design_exists():
    for group in (*SWAPPABLE_GROUPS, "paths", "hydra", "experiment"):
        assert options(group), f"config group {group!r} has no options"


@pytest.mark.parametrize("group, option",
                         [(g, o) for g in SWAPPABLE_GROUPS for o in options(g)])
def test_every_group_option_composes_and_passes_checks(make_cfg, group, option):
    # the tiny synthetic overrides only fit data=synthetic; checks never read a dataset
    cfg = make_cfg(f"{group}={option}", tiny=group != "data")
    check_config(cfg)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_with_plus_syntax(make_cfg, experiment):
    cfg = make_cfg(f"+experiment={experiment}", tiny=False)
    check_config(cfg)
    assert "experiment" not in cfg, "experiments are merged at the root (@package _global_)"


def test_ablation_axes_reach_the_objects_they_configure(make_cfg):
    cfg = make_cfg("head=fc", "loss=weighted_ce", "landmarks=groundtruth")
    datamodule = build_datamodule(cfg)
    assert datamodule.use_landmarks
    assert datamodule.batch_transform.encoding == "overlay"
    net = build_net(cfg, num_classes=7)
    assert sum(p.numel() for p in net.parameters()) == 8_064_631
    loss = build_loss(cfg.loss, datamodule.class_counts("train"))
    assert loss.weight is not None and len(loss.weight) == 7


def test_unknown_group_option_lists_the_available_ones(make_cfg):
    with pytest.raises(ConfigCompositionException) as error:
        make_cfg("head=attention")
    assert "head" in str(error.value) and "fc" in str(error.value) and "gap" in str(error.value)


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=-4", r"data.batch_size must be a positive integer, got -4"),
    ("data.image_size=0", r"data.image_size must be a positive integer"),
    ("data.num_workers=-1", r"data.num_workers must be an integer >= 0, got -1"),
    ("trainer.precision=8", r"trainer.precision='8' is not supported; allowed values: "
                            r"\['32', '32-true', '16-mixed', 'bf16-mixed'\]"),
])
def test_bad_values_fail_with_key_and_allowed_values(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        check_config(make_cfg(override))


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epochs=abc",
     "trainer.max_epochs must be a positive integer (or -1: no limit), got 'abc'"),
    ("trainer.min_epochs=-2", "trainer.min_epochs must be an integer >= 0, got -2"),
    ("trainer.max_epochs=2 trainer.min_epochs=3",
     "trainer.min_epochs=3 exceeds trainer.max_epochs=2"),
    ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches must be null, a number "
                                        "of batches (integer >= 0) or a fraction in [0.0, 1.0]"),
    ("trainer.devices=two", "trainer.devices must be a positive integer, -1 (every GPU), "
                            "'auto' or a list of device indices, got 'two'"),
    ("trainer.accelerator=tpu", "trainer.accelerator must be one of ['auto', 'cpu', 'gpu', "
                                "'cuda', 'mps'], got 'tpu'"),
    ("seed=abc", "seed must be an integer in [0, 2**32), got 'abc'"),
    ("seed=1.5", "seed must be an integer in [0, 2**32), got 1.5"),
    ("optimizer.lr=abc", "optimizer.lr must be a number, got 'abc'"),
    ("optimizer.lr=-0.1", "optimizer.lr must be a number >= 0, got -0.1"),
    ("optimizer.weight_decay=null", "optimizer.weight_decay must be a number, got null"),
    ("scheduler.step_size=ten", "scheduler.step_size must be an integer, got 'ten'"),
    ("data.source.train_size=0", "data.source.train_size must be a positive integer, got 0"),
    ("data.source.noise_std=abc", "data.source.noise_std must be a number, got 'abc'"),
    ("task_name=../../x", "task_name must be a plain folder name (letters, digits, '_', '.', "
                          "'-'; no '/' or '..'), got '../../x'"),
    ("task_name=a/b", "task_name must be a plain folder name"),
    ("callbacks.last_checkpoint.every_n_train_steps=0",
     "callbacks.last_checkpoint.every_n_train_steps must be a positive integer, got 0"),
])
def test_values_that_would_fail_deep_inside_fail_first_with_their_key(make_cfg, override,
                                                                      message):
    with pytest.raises(ConfigError) as error:
        check_config(make_cfg(*override.split()))
    assert str(error.value).startswith(message)


def test_values_are_checked_before_any_data_is_read(make_cfg, monkeypatch):
    from fer_lightning import build
    from fer_lightning import train as train_module

    monkeypatch.setattr(build, "build_datamodule",
                        lambda cfg: pytest.fail("data was read before the checks"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for override in ("seed=abc", "trainer.max_epochs=abc", "optimizer.lr=abc",
                     "data.source.train_size=0", "trainer=gpu"):
        with pytest.raises(ConfigError):
            train_module.train(make_cfg(override))


@pytest.mark.parametrize("overrides", [[f"+experiment={name}"] for name in
                                       options("experiment")]
                         + [[f"trainer={name}"] for name in options("trainer")]
                         + [["trainer.precision=16-mixed"],
                            ["trainer=ddp", "trainer.accelerator=cpu"]])
def test_hardware_this_machine_lacks_is_named_with_the_override_that_runs(make_cfg, overrides,
                                                                          monkeypatch):
    """A CPU-only machine: every experiment and trainer option either runs or says which
    overrides run it, and those overrides pass."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    cfg = make_cfg(*overrides, tiny=False)
    try:
        check_hardware(cfg)
        return
    except ConfigError as error:
        message = str(error)
    hints = re.findall(r"(?:with:|processes:|add) ((?:[^\s()]+=[^\s()]+ ?)+)", message)
    assert hints, message
    for hint in hints:  # e.g. "trainer=cpu trainer.precision=32"
        check_hardware(make_cfg(*overrides, *hint.split(), tiny=False))


def test_more_loader_workers_than_cores_warns(make_cfg, monkeypatch):
    import fer_lightning.config as config

    monkeypatch.setattr(config, "available_cpus", lambda: 2)
    assert check_hardware(make_cfg("data.num_workers=8")) == [
        "data.num_workers=8 loader processes on 2 cores: they compete with training for the "
        "same cores"]
    assert check_hardware(make_cfg("data.num_workers=2")) == []


def test_gpu_trainer_without_gpu_names_trainer_cpu(make_cfg, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"trainer.accelerator=gpu needs a CUDA GPU and none "
                                          r"is visible .* run on the CPU with: trainer=cpu "
                                          r"trainer.precision=32$"):
        check_hardware(make_cfg("+experiment=ms_fpn", tiny=False))


def test_image_too_small_for_network_names_key_and_minimum(make_cfg):
    cfg = make_cfg("data.image_size=24")
    with pytest.raises(ConfigError, match=r"data.image_size=24 .* needs data.image_size >= 36"):
        check_config(cfg)


def test_family_that_cannot_honour_head_fails_at_check(make_cfg, monkeypatch):
    from fer_lightning.nets.mini_xception import MiniXception

    monkeypatch.setattr(MiniXception, "supported_heads", ("gap",))
    expected = (r"model=mini_xception cannot honour head=fc \(head.pool='flatten'\); "
                r"it supports head.pool in \['gap'\]")
    with pytest.raises(ConfigError, match=expected):
        check_config(make_cfg("head=fc"))


def test_sweep_files_only_name_options_that_exist(make_cfg):
    repo = Path(__file__).resolve().parents[1]
    sweeps = sorted((repo / "sweeps").glob("*.yaml"))
    assert sweeps, "sweeps/ holds no sweep file"
    for sweep in sweeps:
        spec = yaml.safe_load(sweep.read_text())  # W&B's ${...} are not OmegaConf's
        fixed = [arg for arg in spec["command"] if "=" in str(arg)]
        for key, choice in spec["parameters"].items():
            for value in choice["values"]:
                check_config(make_cfg(*fixed, f"{key}={value}"))


def test_keypoint_experiment_reaches_all_four_table1_variants(make_cfg):
    for head, params in (("gap", 201_079), ("fc", 8_064_631)):
        for landmarks in ("dlib", "none"):
            cfg = make_cfg("+experiment=mini_xception_ferplus", f"head={head}",
                           f"landmarks={landmarks}", tiny=False)
            check_config(cfg)
            assert cfg.data.source._target_.endswith("FERPlusSource")
            assert cfg.landmarks.enabled == (landmarks == "dlib")
            # FER+ has 8 classes; the pinned counts are for 7, so build for 7 to compare
            net = build_net(cfg, num_classes=7)
            assert sum(p.numel() for p in net.parameters()) == params


def test_keypoint_experiment_trains_on_synthetic_faces(make_cfg):
    from fer_lightning.train import train

    results = train(make_cfg("+experiment=mini_xception_ferplus", "data=synthetic",
                             "landmarks=groundtruth", "trainer.fast_dev_run=true"))
    assert "test" in results


def test_slurm_launcher_composes_for_cluster_multiruns():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="fer_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=submitit_slurm", "trainer=ddp",
                                          "hydra.launcher.gpus_per_node=4"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 4


def test_datamodule_class_weights_are_what_weighted_ce_uses(make_cfg):
    cfg = make_cfg("loss=weighted_ce", "data.source.train_size=300",
                   "data.source.class_probs=[8,1,4,6,4,3,4]")
    datamodule = build_datamodule(cfg)
    counts = datamodule.class_counts("train")
    assert sum(counts) == 300 and counts[0] > 3 * counts[1]  # imbalanced like FER2013
    expected = [300 / (7 * n) for n in counts]
    assert datamodule.class_weights().tolist() == pytest.approx(expected, rel=1e-6)
    loss = build_loss(cfg.loss, counts)
    assert loss.weight.tolist() == pytest.approx(expected, rel=1e-6)


def test_balanced_sampler_draws_classes_about_equally(make_cfg):
    cfg = make_cfg("data.balanced_sampler=true", "data.source.train_size=400",
                   "data.source.class_probs=[8,1,4,6,4,3,4]", "data.batch_size=400")
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    torch.manual_seed(0)
    drawn = torch.cat([next(iter(datamodule.train_dataloader()))["label"] for _ in range(5)])
    shares = torch.bincount(drawn, minlength=7).float() / len(drawn)
    assert shares.min() > 0.09 and shares.max() < 0.2  # 1/7 = 0.143 each, not 8:1


def test_missing_dataset_names_the_path_and_how_to_run_on_synthetic_faces(make_cfg, tmp_path):
    from fer_lightning.train import train

    missing = tmp_path / "no_fer2013_here"
    with pytest.raises(ConfigError, match=str(missing)) as error:
        train(make_cfg("+experiment=mba", f"data.root={missing}", tiny=False))
    assert "fer2013.csv" in str(error.value)  # the expected layout
    # the experiment's own hint, with the README's short synthetic budget (not 100 epochs)
    assert ("+experiment=mba data=synthetic landmarks=groundtruth trainer=cpu "
            "trainer.max_epochs=10") in str(error.value)


def readme_synthetic_commands() -> list[str]:
    """The synthetic commands of the README's "The papers' experiments" section."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### The papers' experiments", 1)[1].split("\n### ", 1)[0]
    return [line.strip() for line in section.splitlines()
            if line.startswith("python -m fer_lightning +experiment=") and "data=synthetic" in line]


def test_readme_synthetic_commands_are_the_experiments_no_data_hints(make_cfg):
    commands = readme_synthetic_commands()
    named = {command.split("+experiment=")[1].split()[0] for command in commands}
    assert {"mba", "mini_xception_ferplus", "vgg_cbam", "ms_fpn", "baseline_small_cnn"} <= named
    for command in commands:
        experiment = command.split("+experiment=")[1].split()[0]
        hint = make_cfg(f"+experiment={experiment}", tiny=False).hint_without_data
        assert command in " ".join(hint.split()), f"{experiment}: README and hint differ"
        assert "trainer.max_epochs=" in command  # a short budget, not the paper's epochs


@pytest.mark.parametrize("override, message", [
    ("landmarks.on_missing=ignore",
     "landmarks.on_missing must be one of ['mean_shape', 'drop'], got 'ignore'"),
    ("landmarks.heatmap_sigma=0", "landmarks.heatmap_sigma must be a number >= 1e-06, got 0"),
    ("landmarks.overlay_groups=[ears]", "landmarks.overlay_groups: unknown groups ['ears']"),
    ("landmarks.chunk_size=0", "landmarks.chunk_size must be an integer >= 1, got 0"),
    ("landmarks.quality.min_prob=2", "landmarks.quality.min_prob must be a number in [0.0, 1.0]"),
])
def test_bad_landmark_settings_are_config_errors_before_data_is_read(make_cfg, override,
                                                                     message):
    cfg = make_cfg("landmarks=mtcnn", override, "data=fer2013", "data.root=/nonexistent",
                   tiny=False)
    with pytest.raises(ConfigError) as error:
        build_datamodule(cfg)  # the dataset root does not exist: nothing was read
    assert message in str(error.value)


def test_landmarks_config_rejects_unknown_keys():
    from fer_lightning.data.landmarks.config import LandmarksConfig

    with pytest.raises(ConfigError, match=r"landmarks: unknown key\(s\) \['on_mising'\]"):
        LandmarksConfig.from_mapping({"on_mising": "drop"})


def test_a_group_without_target_passes_the_checks_without_an_error_line(make_cfg, caplog):
    # scheduler=none has `_target_: null`; Hydra logs "Error getting class at None" when
    # asked to import it
    with caplog.at_level(logging.DEBUG):
        check_config(make_cfg("scheduler=none"))
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_gpu_experiment_without_gpu_and_data_names_both_problems_at_once(make_cfg, tmp_path,
                                                                          monkeypatch):
    from fer_lightning.train import train

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    missing = tmp_path / "no_fer2013_here"
    with pytest.raises(ConfigError) as error:
        train(make_cfg("+experiment=mba", f"data.root={missing}", "trainer=gpu", tiny=False))
    message = str(error.value)
    assert message.startswith("2 problems stop this run:\n1. trainer.accelerator=gpu needs a "
                              "CUDA GPU")
    assert f"\n2. FER2013 root {missing} is not a directory" in message
    assert ("+experiment=mba data=synthetic landmarks=groundtruth trainer=cpu "
            "trainer.max_epochs=10") in message
    with pytest.raises(ConfigError) as error:  # no experiment hint: both overrides named
        train(make_cfg("data=fer2013", f"data.root={missing}", "trainer=gpu", tiny=False))
    assert str(error.value).endswith("add data=synthetic trainer=cpu")
    (tmp_path / "fer2013").mkdir()  # the dataset is there: the hardware problem alone
    with pytest.raises(ConfigError) as error:
        train(make_cfg("data=fer2013", f"data.root={tmp_path}", "trainer=gpu", tiny=False))
    assert str(error.value).startswith("trainer.accelerator=gpu needs a CUDA GPU")
