"""The fixtures of tests/cluster (real craftd processes on loopback), shared
by the attack tests here; see tests/cluster/conftest.py."""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "craftd_cluster_conftest",
    os.path.join(os.path.dirname(__file__), "..", "cluster", "conftest.py"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("__")})
