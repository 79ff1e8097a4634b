"""`evaluate` metric modules, one folder each, loaded by path; packages so the scripts ship in the wheel."""
