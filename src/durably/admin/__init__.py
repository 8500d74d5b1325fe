"""Admin API (port 9070): deployments and services, Restate-compatible."""

from durably.admin.app import create_admin_app

__all__ = ["create_admin_app"]
