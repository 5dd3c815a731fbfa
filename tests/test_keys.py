"""The named key sets of fer_lightning.keys and what report and resume derive from them."""

from fer_lightning import keys
from fer_lightning.report import keys as report_keys
from fer_lightning.resume import config_differences

#: What resume ignored before the sets were shared (issue #18): the shared set keeps all.
FORMER_RESUME_IGNORED = (
    "paths", "ckpt_path", "train", "test", "tags", "optimized_metric", "hint_without_data",
    "logger", "callbacks.progress_bar", "callbacks.model_summary", "callbacks.epoch_summary",
    "callbacks.last_checkpoint", "callbacks.confusion_matrix",
    "trainer.max_epochs", "trainer.min_epochs", "trainer.max_steps", "trainer.min_steps",
    "trainer.max_time", "trainer.accelerator", "trainer.devices", "trainer.num_nodes",
    "trainer.strategy", "trainer.sync_batchnorm", "trainer.use_distributed_sampler",
    "trainer.plugins", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.log_every_n_steps", "trainer.limit_val_batches", "trainer.limit_test_batches",
    "trainer.check_val_every_n_epoch", "data.num_workers",
)


def test_resume_ignores_bookkeeping_except_checked_plus_runtime():
    assert set(keys.RESUME_IGNORED) == (set(keys.BOOKKEEPING) - set(keys.RESUME_CHECKED)
                                        | set(keys.RUNTIME))
    assert set(keys.RESUME_CHECKED) <= set(keys.BOOKKEEPING)


def test_runtime_keys_are_treatments_for_the_report():
    assert not any(keys.is_bookkeeping(key) for key in keys.RUNTIME)


def test_shared_set_keeps_every_key_resume_ignored_before():
    assert set(FORMER_RESUME_IGNORED) <= set(keys.RESUME_IGNORED)


def test_report_reads_the_same_sets():
    assert report_keys.BOOKKEEPING is keys.BOOKKEEPING
    assert report_keys.is_bookkeeping is keys.is_bookkeeping


def test_report_bookkeeping_no_longer_refuses_a_resume():
    """landmarks.num_workers / chunk_size and callbacks.evaluation_epoch were bookkeeping
    for the report yet refused a resume."""
    base = {"landmarks": {"num_workers": 1, "chunk_size": 64},
            "callbacks": {"evaluation_epoch": {"x": 1}}, "model": {"name": "a"}}
    other = {"landmarks": {"num_workers": 4, "chunk_size": 256},
             "callbacks": {"evaluation_epoch": None}, "model": {"name": "a"}}
    assert config_differences(base, other) == []
    assert config_differences(base, {**other, "model": {"name": "b"}}) == [
        "model.name: 'a' there, 'b' here"]
    assert config_differences({"task_name": "a"}, {"task_name": "b"})  # still compared


def test_a_run_from_before_the_cpu_time_projection_resumes():
    """callbacks.cpu_time_projection only logs: a run whose config lacks it (or switched
    it off) is continued, and it is never a report axis."""
    here = {"callbacks": {"cpu_time_projection": {"warn_hours": 1.0}}, "model": {"name": "a"}}
    assert config_differences({"model": {"name": "a"}}, here) == []
    assert keys.is_bookkeeping("callbacks.cpu_time_projection.warn_hours")
