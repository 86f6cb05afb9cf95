"""Adapters to vendors, each with a built-in twin chosen by configuration."""
