"""Speed switches: each gives the same outputs as without it (on CPU)."""

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from fer_lightning.losses import CrossEntropy
from fer_lightning.modules.classifier import FERClassifier
from fer_lightning.nets.vgg_cbam import VGGCBAM
from fer_lightning.speed import (
    SpeedSwitches,
    apply_speed_switches,
    fused_option,
    trainer_arguments,
)


def make_module(compile_options=None, **switches) -> FERClassifier:
    torch.manual_seed(0)
    net = VGGCBAM(3, 1, 8, {"pool": "gap", "hidden": [8], "dropout": 0.0},
                  layers=[4, "M", 4], reduction=2)
    module = FERClassifier(net, CrossEntropy(), ["a", "b", "c"],
                           optimizer={"_target_": "torch.optim.Adam", "lr": 0.01})
    return apply_speed_switches(module, SpeedSwitches(**switches), compile_options)


def train_steps(module: FERClassifier, steps: int = 3, **adam) -> torch.Tensor:
    """Logits on a fixed batch after ``steps`` Adam steps on it."""
    batch = {"image": torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1)),
             "label": torch.tensor([0, 1, 2, 0])}
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01, **adam)
    for _ in range(steps):
        optimizer.zero_grad()
        CrossEntropy()(module(batch), batch["label"]).backward()
        optimizer.step()
    with torch.no_grad():
        return module.eval()(batch)


def test_channels_last_trains_to_the_same_outputs():
    plain, nhwc = train_steps(make_module()), train_steps(make_module(channels_last=True))
    assert torch.allclose(plain, nhwc, atol=1e-5)


def test_compile_gives_the_same_outputs_and_keeps_checkpoint_keys():
    """Through TorchDynamo and AOTAutograd (the ``aot_eager`` backend: inductor's C++
    build would cost minutes of the suite on two cores)."""
    plain, compiled = make_module(), make_module({"backend": "aot_eager"}, compile=True)
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    assert torch.allclose(train_steps(plain, 1), train_steps(compiled, 1), atol=1e-5)


def test_fused_adam_takes_the_same_steps_and_is_asked_for_on_cuda_only():
    assert torch.allclose(train_steps(make_module()), train_steps(make_module(), fused=True),
                          atol=1e-5)
    assert fused_option("torch.optim.Adam", "cuda", True, {}) == {"fused": True}
    assert fused_option("torch.optim.AdamW", "cuda", True, {}) == {"fused": True}
    assert fused_option("torch.optim.Adam", "cpu", True, {}) == {}
    assert fused_option("torch.optim.SGD", "cuda", True, {}) == {}
    assert fused_option("torch.optim.Adam", "cuda", False, {}) == {}
    assert fused_option("torch.optim.Adam", "cuda", True, {"fused": False}) == {}


def test_switches_are_not_passed_to_the_trainer_and_cudnn_benchmark_is_lightnings():
    cfg = OmegaConf.create({"_target_": "lightning.pytorch.Trainer", "benchmark": True,
                            "compile": True, "channels_last": False, "fused_optimizer": True})
    arguments = trainer_arguments(cfg)
    assert set(arguments) == {"_target_", "benchmark"}
    assert SpeedSwitches.from_trainer_config(cfg) == SpeedSwitches(True, False, True)
    before = torch.backends.cudnn.benchmark
    try:
        L.Trainer(benchmark=True, logger=False, accelerator="cpu")
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before


def test_a_switch_that_is_not_a_boolean_is_refused():
    with pytest.raises(ValueError, match="trainer.compile must be true or false"):
        SpeedSwitches.from_trainer_config({"compile": "yes"})


def test_trainer_arguments_resolve_interpolations_to_the_rest_of_the_config():
    cfg = OmegaConf.create({"paths": {"output_dir": "/tmp/run"},
                            "trainer": {"default_root_dir": "${paths.output_dir}",
                                        "compile": False}})
    assert trainer_arguments(cfg.trainer) == {"default_root_dir": "/tmp/run"}
