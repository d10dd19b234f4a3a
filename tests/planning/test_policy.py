"""The base policies: the per-task registry behind `--proposer base`."""

import pytest

from actwm.planning import policy
from actwm.planning.policy import TemplateMatchPolicy, base_policy, register_base_policy
from actwm.planning.runner import PlanRunConfig, build_proposer


class _PushPolicy(TemplateMatchPolicy):
    name = "push-base"


def test_base_proposer_is_the_tasks_registered_policy(monkeypatch):
    monkeypatch.setitem(policy.BASE_POLICIES, "push", _PushPolicy)
    assert type(build_proposer(PlanRunConfig(task="push"))) is _PushPolicy
    assert type(build_proposer(PlanRunConfig(task="imagenav"))) is TemplateMatchPolicy
    monkeypatch.delitem(policy.BASE_POLICIES, "push")
    assert type(base_policy("push")) is TemplateMatchPolicy  # fallback: refuses non-nav vocabularies at reset


def test_register_base_policy_refuses_a_non_callable():
    with pytest.raises(ValueError, match="callable factory"):
        register_base_policy("push", None)
