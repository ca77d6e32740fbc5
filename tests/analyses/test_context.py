"""The start every analysis shares: models loaded, data arranged, one generator, the first step."""

import numpy as np

from onnx_lineage.analyses.context import begin
from onnx_lineage.model.loading import LoadedModel, load_model


def test_a_run_loads_paths_arranges_the_digits_and_seeds_its_generator(family):
    said = []
    run = begin(family["parent"], load_model(family["finetuned_light"]), seed=4,
                progress=said.append, first="reading the models")
    assert isinstance(run.a, LoadedModel) and isinstance(run.b, LoadedModel)
    assert said == ["reading the models"]
    assert len(run.data) > 0  # the built-in digits, arranged for both models' inputs
    assert run.rng.random() == np.random.default_rng(4).random()
    assert run.seconds() >= 0


def test_a_run_continues_a_generator_already_in_use(family):
    rng = np.random.default_rng(1)
    rng.random()
    run = begin(family["parent"], family["parent"], rng=rng, seed=99)
    assert run.rng is rng
