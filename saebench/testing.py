"""Plugin-author kit (pytest plugin). Placeholder until the methods engineer fills it in."""
