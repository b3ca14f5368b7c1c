"""The stages of `calibopt demo` (they solve, so they sit above everything else)."""
