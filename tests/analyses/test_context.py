"""The start every analysis shares: models loaded, data arranged, one generator, the first step."""

import numpy as np

from onnx_lineage.analyses.context import begin
from onnx_lineage.model.loading import LoadedModel, load_model


def test_a_run_loads_paths_arranges_the_digits_and_seeds_its_generator(family):
    said = []
    with begin(family["parent"], load_model(family["finetuned_light"]), seed=4,
               progress=said.append, first="reading the models") as run:
        assert isinstance(run.a, LoadedModel) and isinstance(run.b, LoadedModel)
        assert said == ["reading the models"]
        assert len(run.data) > 0  # the built-in digits, arranged for both models' inputs
        assert run.rng.random() == np.random.default_rng(4).random()
        assert run.seconds() >= 0


def test_a_run_continues_a_generator_already_in_use(family):
    rng = np.random.default_rng(1)
    rng.random()
    with begin(family["parent"], family["parent"], rng=rng, seed=99) as run:
        assert run.rng is rng


def test_a_run_s_budget_holds_inside_it_only(family):
    from onnx_lineage import memory
    before = memory.budget()
    with begin(family["parent"], family["parent"], max_memory="64M"):
        assert memory.budget() == 64 * 1024**2
    assert memory.budget() == before


def test_an_analysis_implements_its_run_only_and_calling_it_begins_the_run(family):
    from dataclasses import dataclass
    from onnx_lineage.analyses.context import Analysis

    @dataclass(frozen=True)
    class Names(Analysis):
        suffix: str = "!"
        first = "reading"

        def run(self, run):
            return run.a.name + self.suffix, run.seed, run.rng.random()

    said = []
    name, seed, draw = Names(suffix="?")(family["parent"], family["noisy"], seed=7,
                                         progress=said.append)
    assert name.endswith(".onnx?") and seed == 7 and draw == np.random.default_rng(7).random()
    assert said == ["reading"]


def test_determine_closeness_and_analyze_are_analyses_on_the_template():
    from onnx_lineage.analyses.closeness import Closeness
    from onnx_lineage.analyses.context import Analysis
    from onnx_lineage.analyses.determination import Determination
    from onnx_lineage.analysis import Analyze
    for cls in (Determination, Closeness, Analyze):
        assert issubclass(cls, Analysis) and cls.__call__ is Analysis.__call__
