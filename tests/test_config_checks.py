"""Keys nothing reads and data values out of range are Config errors before any work,
each naming the key, what is accepted there and the nearest known keys."""

from __future__ import annotations

import pytest

from fer_lightning.config import ConfigError, check_config
from fer_lightning.config_checks import nearest, top_level_keys


def config_error(make_cfg, *overrides: str) -> str:
    with pytest.raises(ConfigError) as error:
        check_config(make_cfg(*overrides))
    return str(error.value)


def test_a_top_level_key_nothing_reads_names_the_nearest_known_keys(make_cfg):
    message = config_error(make_cfg, "+lr=0.1")
    assert message.startswith("lr=0.1 is a key nothing reads; nearest known keys: optimizer.lr")
    assert "top-level keys: callbacks, ckpt_path, data," in message


@pytest.mark.parametrize("override, message", [
    ("+data.batchsize=64", r"data.batchsize is not a key of data \(fer_lightning.data."
                           r"datamodule.FERDataModule\) \(did you mean data.batch_size\?\); "
                           r"accepted keys: augment, balanced_sampler, batch_size,"),
    ("+optimizer.learning_rate=0.1", r"optimizer.learning_rate is not a key of optimizer "
                                     r"\(torch.optim.Adam\).*accepted keys: .*conv_l2, .*lr,"),
    ("+data.source.trainsize=8", r"data.source.trainsize is not a key of data.source .*did "
                                 r"you mean data.source.train_size"),
    ("+data.augment.rotation=5", r"data.augment.rotation is not a key of data.augment "
                                 r"\(fer_lightning.data.transforms.LandmarkAugment\) \(did you "
                                 r"mean data.augment.rotate\?\)"),
    ("+head.dropot=0.5", r"head.dropot is not a key of head \(fer_lightning.nets.heads."
                         r"ClassifierHead\) \(did you mean head.dropout, head.final_dropout"
                         r"\?\); accepted keys: conv_kernel, dropout, final_dropout, hidden, "
                         r"name, pool$"),
    ("+paths.logdir=/x", r"paths.logdir is not a key of paths; accepted keys: data_dir, "
                         r"log_dir, output_dir, root_dir$"),
    ("+scheduler.step=3", r"scheduler.step is not a key of scheduler .*accepted keys: .*"
                          r"interval, .*step_size"),
])
def test_unknown_keys_under_a_node_list_the_accepted_ones(make_cfg, override, message):
    assert __import__("re").match(message, config_error(make_cfg, override))


@pytest.mark.parametrize("override", ["+model.image_size=96", "+trainer.callbacks=[]",
                                      "+data.landmarks=null"])
def test_arguments_the_code_passes_itself_are_refused(make_cfg, override):
    key = override[1:].split("=")[0]
    assert config_error(make_cfg, override).startswith(
        f"{key} is passed by the code that builds {key.rsplit('.', 1)[0]} (from other "
        f"settings")


def test_every_shipped_option_passes_the_key_check(make_cfg):
    for overrides in (["optimizer=sgd", "scheduler=plateau", "loss=focal", "logger=many"],
                      ["+experiment=mba"], ["+experiment=vgg_cbam", "trainer=cpu"],
                      ["data=rafdb", "model=timm"], ["callbacks=staged_finetune"]):
        from fer_lightning.config_checks import unknown_keys

        assert unknown_keys(make_cfg(*overrides, tiny=False)) == [], overrides


def test_experiment_keys_left_for_another_dataset_are_explained(make_cfg, tmp_path):
    message = config_error(make_cfg, "+experiment=smoke", "data=fer2013",
                           f"data.root={tmp_path}")
    assert message.splitlines()[0] == (
        "data.source.train_size is not a key of data.source (fer_lightning.data.sources."
        "fer2013.FER2013Source); accepted keys: file, holdout_fraction, root, seed, splits. "
        "+experiment=smoke sets data.source.train_size for the dataset it was written for; "
        "with data=fer2013 nothing reads it: drop it with ~data.source.train_size, or run "
        "the experiment on its own dataset")
    assert len(message.splitlines()) == 3  # val_size and test_size too
    check_config(make_cfg("+experiment=smoke", "data=fer2013", f"data.root={tmp_path}",
                          "~data.source.train_size", "~data.source.val_size",
                          "~data.source.test_size"))


@pytest.mark.parametrize("override, message", [
    ("data.augment.scale=[2,1]", "data.augment.scale must be [low, high] with 0 < low <= high "
                                 "(zoom factors), got [2, 1]"),
    ("data.augment.scale=[0,1]", "data.augment.scale must be [low, high]"),
    ("data.augment.scale=[1.1]", "data.augment.scale must be [low, high]"),
    ("data.augment.hflip=1.5", "data.augment.hflip must be a probability in [0, 1], got 1.5"),
    ("data.augment.rotate=-3", "data.augment.rotate must be degrees in [0, 180], got -3"),
    ("data.augment.translate=1", "data.augment.translate must be a fraction of the image in "
                                 "[0, 1), got 1"),
    ("data.mean=[0.5,0.5,0.5]", "data.mean has 3 values but data.channels=1: give one value, "
                                "or one per channel"),
    ("data.std=0", "data.std must be > 0 (inputs are divided by it), got 0"),
])
def test_data_values_out_of_range_are_config_errors(make_cfg, override, message):
    assert config_error(make_cfg, override).startswith(message)


def test_one_mean_per_channel_and_shipped_ranges_pass(make_cfg):
    check_config(make_cfg("data.channels=3", "data.mean=[0.5,0.4,0.3]", "data.std=[0.2,0.2,0.2]",
                          "data.augment.scale=[1.0,1.0]"))


def test_nearest_matches_whole_keys_and_last_parts():
    known = ["optimizer.lr", "data.batch_size", "data.image_size", "seed"]
    assert nearest("lr", known) == ["optimizer.lr"]
    assert nearest("data.batchsize", known)[0] == "data.batch_size"
    assert "hint_without_data" in top_level_keys() and "defaults" not in top_level_keys()


def test_composing_and_checking_ms_fpn_logs_no_stray_hydra_error(make_cfg, caplog):
    """scheduler=none's `_target_: null` used to reach hydra's get_class, which logs
    'Error getting class at None' before the check swallowed the exception."""
    import logging

    with caplog.at_level(logging.DEBUG):
        check_config(make_cfg("+experiment=ms_fpn", "trainer=cpu", "trainer.precision=32",
                              "model.backbone=resnet18", tiny=False))
        check_config(make_cfg("scheduler=none"))
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
