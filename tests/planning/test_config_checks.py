"""The planning, simulator and KVAF configs fail with `actwm.checks`' one message: `Owner.field must be ..., got X`."""

import pytest

from actwm.checks import ConfigError
from actwm.models.kvaf import KvafConfig
from actwm.planning.loop import PlannerConfig
from actwm.planning.push_policy import PushPolicyConfig
from actwm.planning.runner import PlanRunConfig
from actwm.planning.tasks import ImageNavConfig, PushConfig
from actwm.sim.manip import ManipConfig


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: PlannerConfig(proposals=0), r"PlannerConfig\.proposals must be >= 1 \(M, plans per batch\), got 0"),
        (lambda: PlannerConfig(horizon=2, execute=3), r"PlannerConfig\.execute must be in 1\.\.horizon=2 \(k\), got 3"),
        (
            lambda: PlannerConfig(base_margin=float("nan")),
            r"PlannerConfig\.base_margin must be finite and >= 0, got nan",
        ),
        (lambda: PlanRunConfig(task="pointnav"), r"PlanRunConfig\.task must be one of \('imagenav', 'push'\), got"),
        (lambda: PlanRunConfig(episodes=0), r"PlanRunConfig\.episodes must be >= 1, got 0"),
        (lambda: PlanRunConfig(stop_metric="psnr"), r"PlanRunConfig\.stop_metric must be 'never' or one with a calib"),
        (lambda: PlanRunConfig(stop_threshold=float("inf")), r"PlanRunConfig\.stop_threshold must be finite or None"),
        (lambda: ImageNavConfig(size=8), r"ImageNavConfig\.size must be >= 16 pixels, got 8"),
        (lambda: ImageNavConfig(forward_range=(3, 2)), r"ImageNavConfig\.forward_range must be \(low, high\) with 1"),
        (lambda: ImageNavConfig(view_turns=9), r"ImageNavConfig\.view_turns must be in 0\.\.8, got 9"),
        (lambda: PushConfig(budget=0), r"PushConfig\.budget must be >= 1, got 0"),
        (lambda: PushConfig(tolerance=0.5), r"PushConfig\.tolerance must be in \[0\.005, 0\.1\] m, got 0\.5"),
        (lambda: PushConfig(push_range=(0.2, 0.1)), r"PushConfig\.push_range must be \(low, high\) m with 0\.02"),
        (lambda: PushPolicyConfig(push_z=0.4, travel_z=0.37), r"PushPolicyConfig\.push_z must be in \[0\.28, travel_z"),
        (lambda: PushPolicyConfig(standoff=0.01), r"PushPolicyConfig\.standoff must be >= contact = 0\.06, got 0\.01"),
        (
            lambda: PushPolicyConfig(push_speed=0.1),
            r"PushPolicyConfig\.push_speed must be <= 0\.05 m per action \(the ee7",
        ),
        (lambda: ManipConfig(n_blocks=9), r"ManipConfig\.n_blocks must be in 1\.\.8, got 9"),
        (lambda: ManipConfig(block_half=(0.05, 0.02)), r"ManipConfig\.block_half must be \(low, high\) with 0\.01"),
        (lambda: ManipConfig(workspace_low=(0.9, -0.35, 0.28)), r"ManipConfig\.workspace_low must be below workspace"),
        (lambda: ManipConfig(substeps=0), r"ManipConfig\.substeps must be >= 1, got 0"),
        (lambda: KvafConfig(source="rgb"), r"KvafConfig\.source must be one of \('kvaf', 'numeric'\), got 'rgb'"),
        (lambda: KvafConfig(layers=()), r"KvafConfig\.layers must be None or non-empty block indices >= 0, got \(\)"),
        (lambda: KvafConfig(dropout=1.0), r"KvafConfig\.dropout must be in \[0\.0, 1\.0\), got 1\.0"),
    ],
)
def test_bad_config_names_owner_field_requirement_and_value(build, message):
    with pytest.raises(ConfigError, match=message):
        build()
