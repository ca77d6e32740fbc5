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
