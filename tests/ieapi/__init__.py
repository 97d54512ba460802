"""Tests of the IE Docker API (ieapi)."""
