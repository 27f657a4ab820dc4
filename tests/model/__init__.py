"""Tests for the model package."""
