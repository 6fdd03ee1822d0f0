"""Precision drift: capture op/module outputs, compare two runs or one run against a CPU fp64
shadow, and name the op that *introduced* the error."""
