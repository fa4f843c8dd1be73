"""`distill bench …`: each benchmark's flags come from its settings model; the harness loads inside ``run``."""

from __future__ import annotations

import argparse

from distill.bench import (
    admission,
    batch,
    engine,
    engine_data,
    eval,
    eval_overhead,
    pool,
    review,
    serve,
    train,
)
from distill.bench.admission import AdmissionBenchConfig
from distill.bench.batch import BatchBenchConfig
from distill.bench.engine import EngineBenchConfig
from distill.bench.engine_data import EngineDataBenchConfig
from distill.bench.eval import EvalBenchConfig
from distill.bench.eval_overhead import EvalOverheadBenchConfig
from distill.bench.pool import PoolBenchConfig
from distill.bench.review import ReviewBenchConfig
from distill.bench.serve import ServeBenchConfig
from distill.bench.train import TrainBenchConfig
from distill.options import Command


class EngineBench(Command):
    name = "engine"
    help = "the generation engine's targets: CPU per request vs a bare loop, RPM, 10k in flight, 1M rows"
    description = engine.__doc__
    config = EngineBenchConfig

    def run(self, config: EngineBenchConfig, args: argparse.Namespace) -> int:
        return engine.bench_engine(config)


class TrainBench(Command):
    name = "train"
    help = "trainer throughput vs a plain HF Trainer with padded batches (same data, same run)"
    description = train.__doc__
    epilog = train.EPILOG
    config = TrainBenchConfig

    def run(self, config: TrainBenchConfig, args: argparse.Namespace) -> int:
        return train.bench_train(config)


class EvalBench(Command):
    name = "eval"
    help = "batched student generation (vLLM, transformers) vs one-prompt-at-a-time transformers"
    description = eval.__doc__
    config = EvalBenchConfig

    def run(self, config: EvalBenchConfig, args: argparse.Namespace) -> int:
        return eval.bench_eval(config)


class EvalOverheadBench(Command):
    name = "eval-overhead"
    help = "one distill eval against local fake endpoints: the evaluator's own time vs generation and HTTP"
    description = eval_overhead.__doc__
    config = EvalOverheadBenchConfig

    def run(self, config: EvalOverheadBenchConfig, args: argparse.Namespace) -> int:
        eval_overhead.run(config)
        return 0


class ReviewBench(Command):
    name = "review"
    help = "review page: first page and filter changes on a large run"
    description = review.__doc__
    config = ReviewBenchConfig

    def run(self, config: ReviewBenchConfig, args: argparse.Namespace) -> int:
        return review.bench_review(config)


class ServeBench(Command):
    name = "serve"
    help = "student vs teacher under load: latency percentiles, throughput, goodput and cost per point of a sweep"
    description = serve.__doc__
    epilog = serve.EPILOG
    config = ServeBenchConfig

    def run(self, config: ServeBenchConfig, args: argparse.Namespace) -> int:
        return serve.bench_serve(config)


class BatchBench(Command):
    name = "batch"
    help = "batch mode at scale: plan, upload and submit a 1M-request run; time and peak memory"
    description = batch.__doc__
    config = BatchBenchConfig

    def run(self, config: BatchBenchConfig, args: argparse.Namespace) -> int:
        return batch.bench_batch(config)


class EngineDataBench(Command):
    name = "engine-data"
    help = "the engine's data path per record (validate, jobs, on_result) and resume start-up"
    description = engine_data.__doc__
    config = EngineDataBenchConfig

    def run(self, config: EngineDataBenchConfig, args: argparse.Namespace) -> int:
        return engine_data.bench_engine_data(config)


class PoolBench(Command):
    name = "pool"
    help = "a pool of four rate-limited endpoints: the summed rate, and one endpoint killed mid-run"
    description = pool.__doc__
    config = PoolBenchConfig

    def run(self, config: PoolBenchConfig, args: argparse.Namespace) -> int:
        return pool.bench_pool(config)


class AdmissionBench(Command):
    name = "admission"
    help = "the engine's admission control vs aiolimiter under a tokens-per-minute limit"
    description = admission.__doc__
    config = AdmissionBenchConfig

    def run(self, config: AdmissionBenchConfig, args: argparse.Namespace) -> int:
        return admission.bench_admission(config)


COMMANDS = (
    EngineBench(),
    TrainBench(),
    EvalBench(),
    EvalOverheadBench(),
    ReviewBench(),
    ServeBench(),
    BatchBench(),
    EngineDataBench(),
    PoolBench(),
    AdmissionBench(),
)
