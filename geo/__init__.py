"""Pure geographic functions: coordinate systems, H3 helpers, jurisdictions. A leaf package."""
