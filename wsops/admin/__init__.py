"""The admin HTTP listener: health, readiness, and (later) metrics and admin endpoints."""

from __future__ import annotations

from wsops.admin.listener import ADMIN_KEY, AdminListener, attach_admin

__all__ = ["ADMIN_KEY", "AdminListener", "attach_admin"]
