"""The code's own bookkeeping agrees: one list of architectures."""

from typing import get_args

from facerealism.architectures import ARCHITECTURES, CYCLE_MODELS, NAMES
from facerealism.config import TrainConfig


def test_every_architecture_name_has_a_generator_a_trainer_and_is_a_config_choice():
    from facerealism.models import GENERATORS
    from facerealism.trainers import TRAINERS, CycleGAN

    assert set(GENERATORS) == set(NAMES)
    assert {a.trainer for a in ARCHITECTURES.values()} <= set(TRAINERS)
    assert set(get_args(TrainConfig.model_fields["model"].annotation)) == set(NAMES)
    assert set(CYCLE_MODELS) == {n for n, a in ARCHITECTURES.items() if TRAINERS[a.trainer] is CycleGAN}
