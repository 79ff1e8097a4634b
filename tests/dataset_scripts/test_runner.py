"""dataset_scripts/runner.py's options: one source for each default, shared with synthesize.py's command line."""

import inspect

from dataset_scripts import synthesize
from dataset_scripts.batch_runner import BatchOptions
from dataset_scripts.endpoints import EndpointPool
from dataset_scripts.runner import RunOptions
from dataset_scripts.teacher_client import TeacherClient


def test_the_run_options_defaults_are_the_command_lines_and_the_documented_pixel_budget():
    args = synthesize.build_parser().parse_args(["--mode", "text", "--input", "x", "--output", "o", "--model", "m"])
    run, batch = RunOptions(), BatchOptions()
    assert run.max_pixels == 89_478_485  # docs/failure-behaviour.md's budget, modeling_allava's
    for name in ("concurrency", "max_parse_retries", "max_side", "max_image_bytes", "fetch_timeout"):
        assert getattr(args, name) == getattr(run, name), name
    assert args.max_consecutive_failures == run.max_consecutive_failures and args.max_pixels is None
    batch_args = (args.batch_poll_interval, args.batch_max_requests, args.batch_max_bytes)
    assert batch_args == (batch.poll_interval, batch.max_requests, batch.max_bytes)

    client = inspect.signature(TeacherClient).parameters
    pool = inspect.signature(EndpointPool).parameters
    assert args.endpoint_failures == client["failures_to_eject"].default == pool["failures_to_eject"].default
    assert args.endpoint_cooldown == client["eject_seconds"].default == pool["cooldown"].default
    assert args.backoff_base == client["backoff_base"].default
