"""Kedro project settings."""

from dinoflow.hooks import MlflowRunHook

HOOKS = (MlflowRunHook(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
