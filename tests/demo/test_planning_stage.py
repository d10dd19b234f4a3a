"""The demo's closed-loop agents use ImageNav's base policy, and their results are keyed by it."""

from actwm.demo import planning_stage
from actwm.demo.config import DemoConfig
from actwm.planning.policy import PoseSearchPolicy


def test_demo_agents_use_imagenavs_base_policy_at_the_demos_renders():
    cfg = DemoConfig.quick()
    agent = planning_stage._agent(planning_stage.make_world("none", cfg), cfg, {"threshold": 0.9, "stay_floor": 0.5}, 3)
    assert isinstance(agent.proposer, PoseSearchPolicy) and agent.proposer.wide is False
    assert agent.proposer.nav.supersample == cfg.data.supersample  # the pose search models the demo's camera
    assert agent.cfg.proposals == 3
    # a result computed with another base policy is not reused on resume
    assert (
        planning_stage.agent_settings(cfg)["base_policy"]
        == planning_stage.BASE_POLICY
        == "PoseSearchPolicy(wide=False)"
    )
