"""Robot kinematics and Kinematic-to-Visual Action Fields (KVAF, EA-WM): a layer models never import.

`spec` (robot presets), `kinematics` (pybullet FK / IK), `render` (KVAF rasterisation), `recover`
(action recovery from KVAF frames), `episode` (rendering a dataset episode), `cli` (`actwm kvaf`).
"""
