"""Shared foundations: errors, devices and generators, progress callbacks, channel selection, ranks."""
