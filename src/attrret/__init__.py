"""attrret."""
