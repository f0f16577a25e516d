"""Hardware classes: parsing, routing a job to the smallest class that fits (or refusing it with the
reason), and the queues a worker serves."""

from __future__ import annotations

import pytest

from runner.jobs import hardware

CLASSES = hardware.parse_classes(["cpu:0:0", "a10:1:24G", "a100x4:4:80G", "h100x8:8:80G"])
GIB = 2**30


def test_sizes_and_classes_parse_and_bad_ones_are_named() -> None:
    assert [hardware.parse_size(t) for t in ("80G", "80GiB", "24g", "512M", "1.5T", "1000")] == [
        80 * GIB,
        80 * GIB,
        24 * GIB,
        512 * 2**20,
        int(1.5 * 2**40),
        1000,
    ]
    assert [(c.name, c.gpus, c.gpu_mem // GIB, c.queue) for c in CLASSES][1] == ("a10", 1, 24, "train-a10")
    for bad in (["a10:1"], ["A10:1:24G"], ["a10:x:24G"], ["a10:1:lots"], ["a:1:1G", "a:2:2G"]):
        with pytest.raises(ValueError):
            hardware.parse_classes(bad)


def test_a_job_goes_to_the_smallest_gpu_class_that_fits() -> None:
    assert hardware.route(CLASSES, procs=1, memory_bytes=6 * GIB).name == "a10"  # a 135M-7B 4-bit job
    assert hardware.route(CLASSES, procs=1, memory_bytes=40 * GIB).name == "a100x4"
    assert hardware.route(CLASSES, procs=8, memory_bytes=40 * GIB).name == "h100x8"
    assert hardware.route(CLASSES, procs=2, memory_bytes=None).name == "a100x4"
    assert hardware.route(hardware.parse_classes(["cpu:0:0"]), procs=2, memory_bytes=99 * GIB).name == "cpu"


def test_a_job_nothing_can_run_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError) as refused:
        hardware.route(CLASSES, procs=16, memory_bytes=100 * GIB)
    message = str(refused.value)
    assert "needs 16 GPUs with ~100.0 GiB each" in message and "h100x8 (8 GPUs, 80 GiB each)" in message


def test_a_worker_serves_every_class_it_can_stand_in_for_its_own_first() -> None:
    assert hardware.served_queues(CLASSES, gpus=8, gpu_mem=80 * GIB) == [
        "train-h100x8",
        "train-a100x4",
        "train-a10",
        "train-cpu",
    ]
    assert hardware.served_queues(CLASSES, gpus=1, gpu_mem=24 * GIB) == ["train-a10", "train-cpu"]
    assert hardware.served_queues(CLASSES, gpus=1, gpu_mem=16 * GIB) == ["train-cpu"]
    assert hardware.served_queues(CLASSES, gpus=0, gpu_mem=0) == ["train-cpu"]


def test_a_worker_counts_as_the_largest_class_it_matches_else_as_what_it_has() -> None:
    assert hardware.worker_class(CLASSES, gpus=8, gpu_mem=80 * GIB) == "h100x8"
    assert hardware.worker_class(CLASSES, gpus=2, gpu_mem=24 * GIB) == "a10"  # stands in for an a10
    assert hardware.worker_class(CLASSES, gpus=0, gpu_mem=0) == "cpu"
    assert hardware.worker_class([], gpus=0, gpu_mem=0) == "cpu"
    assert hardware.worker_class([], gpus=2, gpu_mem=80 * GIB) == "2gpu-80G"
    no_cpu_class = hardware.parse_classes(["a10:1:24G"])
    assert hardware.worker_class(no_cpu_class, gpus=0, gpu_mem=0) == "cpu"
