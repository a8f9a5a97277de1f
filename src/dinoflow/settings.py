"""Kedro project settings."""

from omegaconf.resolvers import oc

from dinoflow.hooks import MlflowRunHook, ProjectLockHook, RunPageHook, ValidationReportsHook

# pluggy calls the last registered first: reports are cleared before the MLflow run opens. The
# project lock is taken before all and released after all (tryfirst / trylast). A node's outputs
# reach the run page (RunPageHook) before its time is logged and before the run ends.
HOOKS = (MlflowRunHook(), RunPageHook(), ValidationReportsHook(), ProjectLockHook())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `${oc.env:VAR,default}` in parameters: database URLs with passwords stay out of the files.
    "custom_resolvers": {"oc.env": oc.env},
    # A key in conf/local/parameters*.yml, or a `--params data.source=...`, changes that key only.
    # Kedro's default (destructive) replaced the whole top-level section as soon as conf/local held
    # a parameters file, so the rest of `data` went missing and validation failed.
    "merge_strategy": {"parameters": "soft"},
}
