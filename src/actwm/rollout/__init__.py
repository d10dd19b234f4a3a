"""actwm.rollout"""
