"""Pure domain logic: states, transitions and policies. No I/O, no imports from the rest."""
