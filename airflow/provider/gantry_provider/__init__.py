"""Airflow provider for Gantry (hook, deferrable operator and sensor, triggers)."""

from __future__ import annotations

__version__ = "0.2.0"


def get_provider_info() -> dict:
    return {
        "package-name": "gantry-provider",
        "name": "Gantry",
        "description": "Run GPU containers through Gantry, the HTTP sidecar that owns the Docker socket.",
        "versions": [__version__],
        "integrations": [{"integration-name": "Gantry", "tags": ["software"]}],
        "operators": [{"integration-name": "Gantry", "python-modules": ["gantry_provider.operators.gantry"]}],
        "sensors": [{"integration-name": "Gantry", "python-modules": ["gantry_provider.sensors.gantry"]}],
        "hooks": [{"integration-name": "Gantry", "python-modules": ["gantry_provider.hooks.gantry"]}],
        "triggers": [{"integration-name": "Gantry", "python-modules": ["gantry_provider.triggers.gantry"]}],
        "extra-links": ["gantry_provider.operators.gantry.GantryJobLink"],
        "connection-types": [
            {
                "hook-class-name": "gantry_provider.hooks.gantry.GantryHook",
                "hook-name": "Gantry",
                "connection-type": "gantry",
                "ui-field-behaviour": {
                    "hidden-fields": ["login"],
                    "relabeling": {"password": "Token", "schema": "Scheme (http or https)"},
                    "placeholders": {
                        "host": "gantry (or https://gantry.example.com)",
                        "port": "8420",
                        "schema": "http",
                        "password": "a Gantry token",
                    },
                },
                "conn-fields": {
                    "verify": {
                        "label": "Verify TLS",
                        "description": "true, false, or the path of a CA bundle (a private CA) on workers and triggerers.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "proxies": {
                        "label": "Proxy URL",
                        "description": "An HTTP(S) proxy to reach Gantry through.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout": {
                        "label": "Request timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "ui_url": {
                        "label": "Operator page URL",
                        "description": "Gantry's /ui/ as a browser reaches it, for the task's link (default: the base URL + /ui/).",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
    }
