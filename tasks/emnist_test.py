"""EMNIST's data set is named from the file's own writer count, never "EMNIST" for a subset."""

from __future__ import annotations

from tasks import emnist, sql_client_data
from tasks.settings import TaskConfig


def test_the_name_follows_the_writer_count() -> None:
    assert emnist.data_name(3_400) == "EMNIST"
    assert emnist.data_name(300) == "FEMNIST-300"


def test_a_subset_file_is_described_as_femnist(emnist_dir: str) -> None:
    writers = sql_client_data.client_count(f"{emnist_dir}/emnist_all.sqlite", "all_train")
    assert writers < 3_400
    task = emnist.build_task(TaskConfig(data_dir=emnist_dir, model="logistic"))
    assert task.description.startswith(f"FEMNIST-{writers} ({writers:,} writers, 62 classes)")
    digits = emnist.build_task(TaskConfig(data_dir=emnist_dir, model="logistic",
                                          only_digits=True))
    assert f"FEMNIST-{writers} ({writers:,} writers, digits only, 10 classes)" in (
        digits.description)
    assert task.data_summary()["description"] == task.description  # what hparams.json gets
