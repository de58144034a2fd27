"""PEFT adapters beyond training (export.py): export the adapter alone, or merge it into its base."""

from .export import export_adapter, export_merged

__all__ = ["export_adapter", "export_merged"]
