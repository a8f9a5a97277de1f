"""Kedro project settings."""

from omegaconf.resolvers import oc

from dinoflow.hooks import MlflowRunHook, ProjectLockHook, ValidationReportsHook

# pluggy calls the last registered first: reports are cleared before the MLflow run opens. The
# project lock is taken before both and released after both (tryfirst / trylast).
HOOKS = (MlflowRunHook(), ValidationReportsHook(), ProjectLockHook())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `${oc.env:VAR,default}` in parameters: database URLs with passwords stay out of the files.
    "custom_resolvers": {"oc.env": oc.env},
}
