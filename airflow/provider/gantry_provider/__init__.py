"""Airflow provider for Gantry (hook, deferrable operator, trigger)."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    return {
        "package-name": "gantry-provider",
        "name": "Gantry",
        "description": "Run GPU containers through Gantry, the HTTP sidecar that owns the Docker socket.",
        "versions": [__version__],
        "integrations": [{"integration-name": "Gantry", "tags": ["software"]}],
        "operators": [{"integration-name": "Gantry", "python-modules": ["gantry_provider.operators.gantry"]}],
        "hooks": [{"integration-name": "Gantry", "python-modules": ["gantry_provider.hooks.gantry"]}],
        "triggers": [{"integration-name": "Gantry", "python-modules": ["gantry_provider.triggers.gantry"]}],
    }
