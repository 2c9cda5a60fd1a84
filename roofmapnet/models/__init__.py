"""RoofMapNet network: backbone, heads, junction refinement, line verifier, proposals and sampling."""
