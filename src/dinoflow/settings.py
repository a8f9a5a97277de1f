"""Kedro project settings."""

from omegaconf.resolvers import oc

from dinoflow.hooks import MlflowRunHook, ValidationReportsHook

# pluggy calls the last registered first: reports are cleared before the MLflow run opens.
HOOKS = (MlflowRunHook(), ValidationReportsHook())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `${oc.env:VAR,default}` in parameters: database URLs with passwords stay out of the files.
    "custom_resolvers": {"oc.env": oc.env},
}
