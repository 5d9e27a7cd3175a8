"""The main job: train -> compress -> export -> report, driven by one YAML config."""

from edgeslim.pipeline.config import PipelineConfig, default_config_text, load_config
from edgeslim.pipeline.runner import PipelineResult, run_pipeline

__all__ = ["PipelineConfig", "PipelineResult", "default_config_text", "load_config", "run_pipeline"]
