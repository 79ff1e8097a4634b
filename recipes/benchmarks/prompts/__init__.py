"""Judge prompt templates (string.Template, $placeholders); a package so the .txt files ship in the wheel."""
